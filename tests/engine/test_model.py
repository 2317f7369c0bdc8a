"""The model as DESIGN.md specifies it: mixers, modules, receptive fields, scores and their parts."""

import pytest
import torch
import torch.nn.functional as F

from engine.core.config import ConfigError, RunConfig
from engine.models import automlp
from engine.data.sequences import ItemFeatureTable
from engine.models.automlp import (
    AutoMLP,
    BandedTokenLinear,
    ChannelMixer,
    MaskedTokenLinear,
    ModelShape,
    RelativeTokenLinear,
    SequenceMixer,
    band_mask,
    build_model,
    split_look_back,
)
from engine.models.embedding import ItemEmbedding


def small_shape(mode="causal", candidates=(2, 3, 6), layers=2, features=()) -> ModelShape:
    config = RunConfig(candidate_lengths=list(candidates), max_length=8, num_layers=layers, embedding_dim=4,
                       sequence_hidden=5, channel_hidden=6, dropout=0.0, mode=mode)
    return ModelShape.from_config(config, n_items=12, features=features)


def test_sequence_mixer_equals_equation_1_by_hand():
    torch.manual_seed(0)
    mixer = SequenceMixer(n_positions=3, dim=2, hidden=4, dropout=0.0, look_backs=None)
    x = torch.randn(3, 1, 2)  # (T, B, D): activations are position-major
    expected = torch.empty_like(x)
    normed = F.layer_norm(x, (2,), mixer.norm.weight, mixer.norm.bias)
    for d in range(2):  # Eq. 1 column by column: x^d + W2 g(W1 LayerNorm(x)^d)
        column = normed[:, 0, d]
        hidden = F.gelu(mixer.fc1.weight @ column + mixer.fc1.bias)
        expected[:, 0, d] = x[:, 0, d] + mixer.fc2.weight @ hidden + mixer.fc2.bias
    assert torch.allclose(mixer(x, torch.ones(*x.shape[:2], 1)), expected, atol=1e-6)


def test_channel_mixer_equals_equation_2_by_hand():
    torch.manual_seed(0)
    mixer = ChannelMixer(dim=3, hidden=5, dropout=0.0)
    x = torch.randn(2, 1, 3)  # (T, B, D)
    expected = torch.empty_like(x)
    for t in range(2):  # Eq. 2 row by row: x^t + W4 g(W3 LayerNorm(x^t))
        row = F.layer_norm(x[t, 0], (3,), mixer.norm.weight, mixer.norm.bias)
        expected[t, 0] = x[t, 0] + mixer.fc2.weight @ F.gelu(mixer.fc1.weight @ row + mixer.fc1.bias) + mixer.fc2.bias
    assert torch.allclose(mixer(x, torch.ones(*x.shape[:2], 1)), expected, atol=1e-6)


def test_band_mask_allows_only_the_look_back():
    mask = band_mask(4, 1)
    assert mask.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]


@pytest.mark.parametrize("length,maps", [(1, 2), (2, 4), (5, 4), (50, 4), (7, 8)])
def test_look_backs_add_up_to_the_window(length, maps):
    look_backs = split_look_back(length, maps)
    assert len(look_backs) == maps and sum(look_backs) == length - 1 and min(look_backs) >= 0


@pytest.mark.parametrize("mode", ["causal", "sampled"])
def test_every_module_keeps_its_shape(mode):
    shape = small_shape(mode)
    model = AutoMLP(shape)
    x = torch.randn(8, 3, 4)  # (T, B, D)
    real = torch.ones(8, 3, 1)
    assert model.long_term(x, real).shape == (8, 3, 4)
    assert model.long_term.last(x, real).shape == (3, 4)
    for k, module in zip(shape.candidate_lengths, model.short_term):
        window = x if shape.causal else x[-k:]
        assert module(window, real[-len(window):]).shape == window.shape
    sequences = torch.randint(0, 13, (3, 8))
    assert model.joint(sequences).shape == (3, 8)
    assert model.hidden(sequences).shape == (3, 4)
    assert model(sequences).shape == (3, 13)
    assert model.items.all_items().shape == (13, 4)


@pytest.mark.parametrize("max_length,candidates,layers", [(8, (2, 3, 6), 2), (30, (1, 5, 20, 30), 2),
                                                         (40, (3, 40), 3), (12, (4,), 1)])
def test_last_position_output_equals_the_full_pass(max_length, candidates, layers, token_form):
    config = RunConfig(candidate_lengths=list(candidates), max_length=max_length, num_layers=layers,
                       embedding_dim=8, channel_hidden=8, dropout=0.0)
    model = AutoMLP(ModelShape.from_config(config, n_items=50)).eval()
    sequences = torch.randint(0, 51, (4, max_length))
    sequences[0, : max_length // 2] = 0  # a padded history
    full = model.joint(sequences, all_positions=True)[:, -1]
    torch.testing.assert_close(model.joint(sequences), full, atol=1e-5, rtol=0)


def test_causal_model_predicts_at_every_position():
    model = AutoMLP(small_shape("causal"))
    assert model.hidden(torch.randint(0, 13, (2, 8)), all_positions=True).shape == (2, 8, 4)


def receptive_field(module, inputs, position) -> list[int]:
    """The input positions whose gradient reaches the output at `position` (inputs: (T, 1, D))."""
    inputs = inputs.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(module(inputs)[position, 0].sum(), inputs)
    return torch.nonzero(gradient[:, 0].abs().sum(dim=1) > 0).flatten().tolist()


@pytest.fixture(params=["banded", "masked", "relative"])
def token_form(request, monkeypatch):
    """Runs a test with both storage forms of the positional causal token maps, and with relative maps."""
    if request.param == "masked":
        monkeypatch.setattr("engine.models.automlp.MAX_DIAGONALS", 0)
    if request.param == "relative":
        positional = automlp.causal_token_linear
        monkeypatch.setattr(automlp, "causal_token_linear",
                            lambda n, look_back, relative=False: positional(n, look_back, relative=True))
    return request.param


def test_a_relative_map_reads_what_came_before_not_where():
    torch.manual_seed(0)
    relative = RelativeTokenLinear(look_back=2)
    x = torch.randn(6, 3)
    expected = torch.stack([sum(relative.weight[j] * x[t - j] for j in range(3) if t - j >= 0) + relative.bias
                            for t in range(6)])
    torch.testing.assert_close(relative(x), expected)
    shifted = torch.cat([torch.zeros(1, 3), x[:-1]])  # the same inputs one position later
    torch.testing.assert_close(relative(shifted)[1:], relative(x)[:-1])


def test_relative_token_maps_keep_one_weight_per_look_back():
    config = RunConfig(candidate_lengths=[3, 20], max_length=40, token_maps="relative", embedding_dim=4,
                       channel_hidden=6, dropout=0.0)
    model = AutoMLP(ModelShape.from_config(config, n_items=12))
    first = model.long_term.sequence_mixers[0]  # T = 40: look-backs 20 and 19
    assert first.fc1.weight.shape == (21,) and first.fc2.weight.shape == (20,) and first.fc1.bias.shape == (1,)
    assert model.short_term[0].sequence_mixers[0].fc1.weight.shape == (2,)


def test_relative_token_maps_need_the_causal_mode():
    with pytest.raises(ConfigError, match="token_maps: 'relative'.*causal.*'sampled'"):
        RunConfig(mode="sampled", token_maps="relative")


def test_banded_and_masked_token_maps_are_the_same_function():
    banded, masked = BandedTokenLinear(10, 3), MaskedTokenLinear(10, 3)
    with torch.no_grad():
        dense = torch.zeros(10, 10)
        for t in range(10):
            for j in range(min(t, 3) + 1):
                dense[t, t - j] = banded.weight[t, j]
        masked.weight.copy_(dense)
        masked.bias.copy_(banded.bias)
    x = torch.randn(3, 5, 10)
    assert torch.allclose(banded(x), masked(x), atol=1e-6)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_causal_short_term_module_sees_exactly_its_last_k_positions(layers, token_form):
    torch.manual_seed(0)
    shape = small_shape("causal", candidates=(1, 2, 3, 6, 8), layers=layers)
    model = AutoMLP(shape)
    x = torch.randn(8, 1, 4)
    for k, module in zip(shape.candidate_lengths, model.short_term):
        for position in (7, 5):
            expected = list(range(max(0, position - k + 1), position + 1))
            assert receptive_field(module, x, position) == expected, f"k={k}, position {position}"


@pytest.mark.parametrize("layers", [1, 3])
def test_causal_long_term_module_never_sees_the_future(layers, token_form):
    model = AutoMLP(small_shape("causal", layers=layers))
    x = torch.randn(8, 1, 4)
    for position in range(8):
        assert receptive_field(model.long_term, x, position) == list(range(position + 1))


@pytest.mark.parametrize("layers", [1, 2])
def test_paper_form_short_term_output_depends_on_the_last_k_items_only(layers):
    torch.manual_seed(0)
    shape = small_shape("sampled", candidates=(2, 3, 6), layers=layers)
    model = AutoMLP(shape).eval()
    embedded = torch.randn(8, 1, 4)
    for k, module in zip(shape.candidate_lengths, model.short_term):
        inputs = embedded.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(module(inputs[-k:])[-1, 0].sum(), inputs)
        seen = torch.nonzero(gradient[:, 0].abs().sum(dim=1) > 0).flatten().tolist()
        assert seen == list(range(8 - k, 8))


@pytest.mark.parametrize("mode", ["causal", "sampled"])
def test_long_short_and_bias_parts_sum_to_the_scores(mode):
    torch.manual_seed(1)
    model = AutoMLP(small_shape(mode)).eval()
    sequences = torch.randint(0, 13, (5, 8))
    scores = model(sequences)
    long, short, bias = model.contributions(sequences)
    assert torch.allclose((long + short + bias)[:, 1:], scores[:, 1:], atol=1e-5)
    assert torch.isinf(scores[:, 0]).all()


def test_search_mixture_weights_are_a_softmax_of_alpha():
    model = AutoMLP(small_shape())
    with torch.no_grad():
        model.alpha.copy_(torch.tensor([0.0, 1.0, 2.0]))
    assert torch.allclose(model.candidate_weights(), torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0))
    assert [p is model.alpha for p in model.arch_parameters()] == [True]
    assert all(p is not model.alpha for p in model.network_parameters())


def test_a_single_candidate_has_no_architecture_weights():
    model = AutoMLP(small_shape(candidates=(3,)))
    assert model.alpha is None and model.arch_parameters() == []


def test_item_embeddings_start_small_and_padding_is_zero():
    items = ItemEmbedding(small_shape())
    assert items.ids.weight[1:].std() < 0.05
    assert torch.all(items.all_items()[0] == 0)


def test_item_features_are_fused_with_the_id_embedding():
    genre = ItemFeatureTable("genre", vocabulary=["a", "b", "c"],
                             values=torch.tensor([[0, 0]] + [[1 + i % 3, 0] for i in range(12)]).numpy())
    shape = small_shape(features=[genre])
    model = build_model(shape, [genre])
    vectors = model.items.all_items()
    assert model.items.fuse is not None and model.items.fuse.in_features == 2 * 4
    assert vectors.shape == (13, 4) and torch.all(vectors[0] == 0)
    # the feature takes part: changing a genre embedding changes the fused item vectors
    with torch.no_grad():
        model.items.features[0].weight[1] += 1.0
    assert not torch.allclose(model.items.all_items(), vectors)


def _padded(histories: list[list[int]], width: int) -> torch.Tensor:
    rows = [[0] * (width - len(h)) + h for h in histories]
    return torch.tensor(rows, dtype=torch.long)


HISTORIES = [[3], [5, 7], [1, 2, 3, 4], [9, 8, 7, 6, 5, 4, 3]]


@pytest.mark.parametrize("mode", ["causal", "sampled", "faithful"])
def test_scores_do_not_depend_on_how_much_leading_padding_a_history_has(mode, token_form):
    torch.manual_seed(0)
    model = AutoMLP(small_shape(mode)).eval()  # T = 8
    with torch.no_grad():
        full = model(_padded(HISTORIES, 8))
        assert torch.allclose(model(_padded(HISTORIES, 7)), full, atol=1e-5)  # the longest has 7 items
        for row, history in enumerate(HISTORIES):  # each history alone, cut to its own length
            alone = model(_padded([history], len(history)))
            assert torch.allclose(alone, full[row:row + 1], atol=1e-5)


def test_every_position_of_a_cut_causal_window_is_scored_as_in_the_padded_window(token_form):
    torch.manual_seed(0)
    model = AutoMLP(small_shape("causal")).eval()
    with torch.no_grad():
        full = model.hidden(_padded(HISTORIES, 8), all_positions=True)  # (B, 8, D)
        cut = model.hidden(_padded(HISTORIES, 7), all_positions=True)  # (B, 7, D)
    real = _padded(HISTORIES, 7) > 0
    assert torch.allclose(cut[real], full[:, 1:][real], atol=1e-5)


def test_training_gradients_do_not_depend_on_leading_padding(token_form):
    torch.manual_seed(0)
    model = AutoMLP(small_shape("causal"))  # dropout 0: the two passes see the same function
    losses = []
    for width in (8, 7):
        model.zero_grad()
        hidden = model.hidden(_padded(HISTORIES, width), all_positions=True)
        real = _padded(HISTORIES, width) > 0
        loss = model.score(hidden[real]).log_softmax(-1)[:, 1].sum()
        loss.backward()
        losses.append((loss.item(), model.output.weight.grad.clone()))
    assert losses[0][0] == pytest.approx(losses[1][0], abs=1e-4)
    assert torch.allclose(losses[0][1], losses[1][1], atol=1e-5)


def test_a_history_longer_than_the_model_reads_is_refused():
    model = AutoMLP(small_shape("causal"))
    with pytest.raises(ValueError, match="at most 8"):
        model(torch.ones(1, 9, dtype=torch.long))


@pytest.mark.parametrize("look_back", [1, 3, 7])
@pytest.mark.parametrize("m_in, n_out", [(16, 16), (9, 9), (16, 3), (4, 1)])
def test_a_banded_map_computed_as_a_dense_band_equals_its_sum_of_diagonals(monkeypatch, look_back, m_in, n_out):
    torch.manual_seed(0)
    banded = BandedTokenLinear(16, look_back)
    with torch.no_grad():
        banded.bias.normal_()
    x = torch.randn(m_in, 3, 5)
    monkeypatch.setattr("engine.models.automlp.DIAGONALS_PER_POSITION", 10**6)  # always the dense band
    dense = banded(x, n_out)
    monkeypatch.setattr("engine.models.automlp.DIAGONALS_PER_POSITION", 0)  # always the diagonals
    assert torch.allclose(dense, banded(x, n_out), atol=1e-6)


def test_training_on_real_positions_only_gives_the_padded_computations_outputs_and_gradients(monkeypatch):
    shape = small_shape("causal", candidates=(1, 3, 6))  # dropout 0: both passes see the same function
    inputs = _padded(HISTORIES, 8)  # 15 of 32 positions real
    results = []
    for pack_below in (1.0, 0.0):  # every batch packed, then none
        monkeypatch.setattr("engine.models.automlp.PACK_BELOW", pack_below)
        torch.manual_seed(0)
        model = AutoMLP(shape)
        hidden = model.hidden(inputs, all_positions=True)
        model.score(hidden[inputs > 0]).log_softmax(-1)[:, 1].sum().backward()
        results.append((hidden.detach(), [p.grad.clone() for p in model.network_parameters()]))
    (packed, packed_grads), (padded, padded_grads) = results
    assert torch.allclose(packed, padded, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(packed_grads, padded_grads))
