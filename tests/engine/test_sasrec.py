"""The SASRec baseline: shapes, causality, padding, and training through the engine's own retraining code."""

import numpy as np
import pytest
import torch
from torch import nn

from engine.core.config import RunConfig
from engine.core.events import (
    Cancelled,
    EpochFinished,
    PhaseStarted,
    RecordingObserver,
    StepFinished,
)
from engine.data.sequences import build_sequences
from engine.data.synthetic import planted_log
from engine.evaluation.metrics import evaluate
from engine.models.sasrec import SASRec, SASRecShape, attention_mask
from engine.training.baseline import run_baseline, train_baseline
from engine.training.batches import Batch, batch_loss


def small_model(heads=2, layers=2, dropout=0.0, T=8) -> SASRec:
    torch.manual_seed(0)
    config = RunConfig(candidate_lengths=[2], max_length=T, num_layers=layers, embedding_dim=8, channel_hidden=12,
                       dropout=dropout)
    return SASRec(SASRecShape.from_config(config, n_items=20, num_heads=heads)).eval()


def left_padded() -> torch.Tensor:
    return torch.tensor([[0, 0, 0, 0, 0, 3, 9, 4], [1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 0, 11]])


@pytest.fixture(scope="module")
def data():
    return build_sequences(planted_log(n_users=200, n_items=60, min_length=10, max_length=20, seed=1))


def tiny(**changes) -> RunConfig:
    values = dict(candidate_lengths=[2], max_length=12, embedding_dim=16, channel_hidden=32, batch_size=64,
                  retrain_epochs=8, patience=8, lr=0.01, dropout=0.1, eval_negatives=20, device="cpu", loss="ce")
    return RunConfig(**{**values, **changes})


def test_outputs_have_the_engine_shapes():
    model = small_model()
    inputs = left_padded()
    assert model.hidden(inputs, all_positions=True).shape == (3, 8, 8)
    assert model.hidden(inputs).shape == (3, 8)
    scores = model(inputs)
    assert scores.shape == (3, 21) and torch.isinf(scores[:, 0]).all()
    assert model.items.all_items().shape == (21, 8)


def test_last_position_inference_equals_the_full_pass():
    model = small_model()
    inputs = left_padded()
    assert torch.allclose(model.hidden(inputs), model.hidden(inputs, all_positions=True)[:, -1], atol=1e-5)


def test_a_change_at_position_t_leaves_earlier_outputs_unchanged():
    model = small_model()
    inputs = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    changed = inputs.clone()
    changed[0, 5] = 19
    before, after = model.hidden(inputs, all_positions=True), model.hidden(changed, all_positions=True)
    assert torch.allclose(before[:, :5], after[:, :5], atol=1e-6)
    assert not torch.allclose(before[:, 5:], after[:, 5:], atol=1e-4)


def test_padding_keys_are_never_attended():
    model = small_model()
    # the same three items behind five padding positions and with none (T = 3; positions count from the end)
    short, long = torch.tensor([[0, 0, 0, 0, 0, 3, 9, 4]]), torch.tensor([[3, 9, 4]])
    assert torch.allclose(model.hidden(short), model.hidden(long), atol=1e-5)


def test_a_fully_padded_row_gives_finite_outputs_and_gradients():
    model = small_model(dropout=0.2).train()
    inputs = torch.zeros(2, 8, dtype=torch.long)
    hidden = model.hidden(inputs, all_positions=True)
    assert torch.isfinite(hidden).all()
    hidden.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_attention_mask_is_causal_and_skips_padding_but_not_itself():
    mask = attention_mask(torch.tensor([[False, True, True]]))[0, 0]
    assert mask.tolist() == [[True, False, False], [False, True, False], [False, True, True]]


def test_it_has_no_architecture_weights():
    model = small_model()
    assert model.alpha is None and model.arch_parameters() == []
    assert len(model.network_parameters()) == len(list(model.parameters()))


def test_batch_loss_trains_every_position_in_causal_mode():
    model = small_model().train()
    inputs = left_padded()
    targets = torch.roll(inputs, -1, dims=1) * (inputs > 0)
    loss = batch_loss(model, Batch(inputs, targets), tiny())
    loss.backward()
    assert torch.isfinite(loss) and model.positions.weight.grad.abs().sum() > 0


class Popularity(nn.Module):
    """Scores every item by its interaction count: the bar a trained sequential model must clear."""

    def __init__(self, data, max_length: int) -> None:
        super().__init__()
        self.shape = SASRecShape(data.n_items, max_length, 1, 1, 1, 1, 0.0)
        self.counts = nn.Parameter(torch.as_tensor(data.item_popularity(), dtype=torch.float32), requires_grad=False)

    def forward(self, sequences):
        scores = self.counts.expand(len(sequences), -1).clone()
        scores[:, 0] = float("-inf")
        return scores


def test_training_on_planted_data_beats_popularity(data):
    config = tiny()
    result = train_baseline(data, config)
    trained = evaluate(result.model, data, "test", "full")
    popular = evaluate(Popularity(data, config.max_length), data, "test", "full")
    assert trained["NDCG@10"] > 2 * popular["NDCG@10"]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_run_baseline_reports_both_protocols_and_the_retraining_events(data):
    observer = RecordingObserver()
    result = run_baseline(data, tiny(retrain_epochs=2), observer)
    assert set(result.test_metrics) == {"full", "popularity-20"}
    assert result.search is None and result.chosen_length is None
    assert [e.epoch for e in observer.of_type(EpochFinished)] == [1, 2]
    assert "SASRec" in observer.of_type(PhaseStarted)[0].description
    assert result.summary()["epochs"][0]["epoch"] == 1


def test_a_cancelled_baseline_stops_within_one_step(data):
    observer = RecordingObserver(cancel_when=lambda e: isinstance(e, StepFinished))
    with pytest.raises(Cancelled):
        train_baseline(data, tiny(), observer)
    assert [e.step for e in observer.of_type(StepFinished)] == [1]


def test_the_same_seed_trains_the_same_weights_on_cpu(data):
    first = train_baseline(data, tiny(retrain_epochs=1))
    second = train_baseline(data, tiny(retrain_epochs=1))
    assert np.allclose(first.model.positions.weight.detach(), second.model.positions.weight.detach())


def test_sasrec_scores_do_not_depend_on_leading_padding():
    import torch

    from engine.models.sasrec import SASRec, SASRecShape
    torch.manual_seed(0)
    model = SASRec(SASRecShape(n_items=12, max_length=8, num_layers=2, embedding_dim=4, ffn_hidden=6,
                               num_heads=1, dropout=0.0)).eval()
    histories = [[3], [5, 7], [9, 8, 7, 6, 5, 4, 3]]
    with torch.no_grad():
        full = model(torch.tensor([[0] * (8 - len(h)) + h for h in histories]))
        for row, history in enumerate(histories):
            assert torch.allclose(model(torch.tensor([history])), full[row:row + 1], atol=1e-5)


def sasrec_plus_model(T=8, layers=2, dropout=0.0) -> SASRec:
    torch.manual_seed(0)
    config = RunConfig(candidate_lengths=[2], max_length=T, num_layers=layers, embedding_dim=8, channel_hidden=12,
                       dropout=dropout)
    return SASRec(SASRecShape.from_config(config, n_items=20, variant="sasrec_plus")).eval()


def sasrec_pytorch_reference(model: SASRec, history: list[int]) -> torch.Tensor:
    """SASRec.pytorch's forward (as SASRec+ runs it), written with torch's MultiheadAttention over the
    model's weights: the history unpadded, positions 0.. from its first item -> (len, D)."""
    D = model.shape.embedding_dim
    ids = torch.tensor(history)
    seqs = model.items.ids.weight[ids] * D ** 0.5 + model.positions.weight[torch.arange(len(ids))]
    causal = ~torch.ones(len(ids), len(ids), dtype=torch.bool).tril()
    seqs = seqs[:, None]  # (len, 1, D): MultiheadAttention's (sequence, batch, D)
    for block in model.blocks:
        attention = nn.MultiheadAttention(D, 1)
        with torch.no_grad():
            attention.in_proj_weight.copy_(block.attention.qkv.weight)
            attention.in_proj_bias.copy_(block.attention.qkv.bias)
            attention.out_proj.weight.copy_(block.attention.out.weight)
            attention.out_proj.bias.copy_(block.attention.out.bias)
        queries = block.attention_norm(seqs)
        seqs = queries + attention(queries, seqs, seqs, attn_mask=causal)[0]
        seqs = block.ffn_norm(seqs)
        seqs = block.ffn(seqs) + seqs
    return model.final_norm(seqs[:, 0])


def test_the_sasrec_plus_variant_computes_what_sasrec_pytorch_computes():
    model = sasrec_plus_model()
    history = [3, 9, 4, 17, 2]
    with torch.no_grad():
        ours = model.hidden(torch.tensor([[0, 0, 0, *history]]), all_positions=True)[0, 3:]
        assert torch.allclose(ours, sasrec_pytorch_reference(model, history), atol=1e-5)
        assert torch.allclose(model.hidden(torch.tensor([[0, 0, 0, *history]]))[0], ours[-1], atol=1e-5)


def test_the_sasrec_plus_variant_has_sasrec_pytorchs_sizes_and_initialisation():
    model = sasrec_plus_model()
    block = model.blocks[0]
    assert block.ffn[0].out_features == model.shape.embedding_dim == 8  # D, not R_c = 12
    assert block.attention_norm.eps == model.final_norm.eps == 1e-8
    assert abs(block.ffn[0].weight.std().item() - 0.02) < 0.01 and block.ffn[0].bias.abs().max() == 0
    assert block.attention.qkv.bias.abs().max() == 0


def test_sasrec_plus_scores_do_not_depend_on_leading_padding():
    model = sasrec_plus_model()
    histories = [[3], [5, 7], [9, 8, 7, 6, 5, 4, 3]]
    with torch.no_grad():
        full = model(torch.tensor([[0] * (8 - len(h)) + h for h in histories]))
        for row, history in enumerate(histories):
            assert torch.allclose(model(torch.tensor([history])), full[row:row + 1], atol=1e-5)


def test_an_unknown_sasrec_variant_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown SASRec variant 'post_norm'.*pre_norm, sasrec_plus"):
        SASRecShape(n_items=5, max_length=4, num_layers=1, embedding_dim=4, ffn_hidden=4, num_heads=1,
                    dropout=0.0, variant="post_norm")


def test_the_sasrec_plus_baseline_trains_on_planted_data(data):
    result = train_baseline(data, tiny(), variant="sasrec_plus")
    trained = evaluate(result.model, data, "test", "full")
    popular = evaluate(Popularity(data, 12), data, "test", "full")
    assert result.model.shape.variant == "sasrec_plus" and trained["NDCG@10"] > 2 * popular["NDCG@10"]
