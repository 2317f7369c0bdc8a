"""The search phase: DARTS's architecture step, alternating updates, and a choice that means something."""

import copy

import numpy as np
import pytest
import torch

from engine.core.config import RunConfig
from engine.data.sequences import build_sequences
from engine.data.synthetic import planted_log
from engine.models.automlp import ModelShape, build_model
from engine.training.batches import batch_loss, training_batches, validation_batches
from engine.training.search import (
    DECISIVE,
    WINNER_CHANGED,
    WITHIN_NOISE,
    Architect,
    decide,
    search,
    search_outcome,
    weight_step,
)


@pytest.fixture(scope="module")
def data():
    return build_sequences(planted_log(n_users=80, n_items=60, min_length=8, max_length=14, seed=3))


def tiny_config(**changes) -> RunConfig:
    base = dict(candidate_lengths=[1, 2, 4], max_length=10, embedding_dim=8, sequence_hidden=8, channel_hidden=8,
                dropout=0.0, batch_size=16, arch_lr=0.1, xi=0.05, search_order="second", loss="ce")
    return RunConfig(**{**base, **changes})


def fresh(data, config, seed=0):
    torch.manual_seed(seed)
    model = build_model(ModelShape.from_config(config, data.n_items), device="cpu")
    rng = np.random.default_rng(seed)
    train = training_batches(data, config, rng, torch.device("cpu"))[0]
    valid = validation_batches(data, config, rng, torch.device("cpu"))
    return model, train, next(valid), next(valid)


def alpha_after_step(data, config, use_second_valid_batch=False) -> torch.Tensor:
    model, train, valid, other_valid = fresh(data, config)
    Architect(model, config).step(train, other_valid if use_second_valid_batch else valid)
    return model.alpha.detach().clone()


def test_second_order_step_moves_alpha_using_validation_data(data):
    config = tiny_config()
    before = fresh(data, config)[0].alpha.detach().clone()
    after = alpha_after_step(data, config)
    assert not torch.allclose(after, before)
    assert not torch.allclose(after, alpha_after_step(data, config, use_second_valid_batch=True))


def test_first_order_step_equals_xi_zero(data):
    first = alpha_after_step(data, tiny_config(search_order="first", xi=0.05))
    xi_zero = alpha_after_step(data, tiny_config(search_order="second", xi=0.0))
    second = alpha_after_step(data, tiny_config(search_order="second", xi=0.05))
    assert torch.equal(first, xi_zero)
    assert not torch.equal(first, second)


@pytest.mark.parametrize("order", ["first", "second"])
def test_architecture_step_leaves_network_weights_untouched(data, order):
    config = tiny_config(search_order=order)
    model, train, valid, _ = fresh(data, config)
    before = [w.detach().clone() for w in model.network_parameters()]
    Architect(model, config).step(train, valid)
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, model.network_parameters()))


def test_finite_difference_hessian_vector_product_matches_autograd(data):
    # in float64 and with a small step: the test checks the finite difference itself, whose error
    # at DARTS's step (0.01) depends on the curvature of the particular model
    config = tiny_config()
    model, train, valid, _ = fresh(data, config)
    model.double().eval()
    weights = model.network_parameters()
    vector = [torch.randn_like(w) * 1e-2 for w in weights]
    architect = Architect(model, config)
    backup = [w.detach().clone() for w in weights]
    estimate = architect._hessian_vector_product(train, weights, backup, vector, scale=1e-4)
    with torch.no_grad():
        for w, b in zip(weights, backup):
            w.copy_(b)
    # exact: d/d alpha of <grad_W L_train, v>
    grads = torch.autograd.grad(batch_loss(model, train, config), weights, create_graph=True, allow_unused=True)
    inner = sum((g * v).sum() for g, v in zip(grads, vector) if g is not None)
    (exact,) = torch.autograd.grad(inner, model.alpha)
    assert torch.allclose(estimate, exact, rtol=0.05, atol=1e-5)


def test_weight_step_moves_network_weights_from_the_training_batch_and_never_alpha(data):
    config = tiny_config()
    model, train, _, _ = fresh(data, config)
    twin = copy.deepcopy(model)
    alpha = model.alpha.detach().clone()
    weight_step(model, torch.optim.Adam(model.network_parameters(), lr=config.lr), train, config)
    assert torch.equal(model.alpha.detach(), alpha)
    # the same Adam step computed by hand from the training loss alone
    optimizer = torch.optim.Adam(twin.network_parameters(), lr=config.lr)
    batch_loss(twin, train, config).backward()
    optimizer.step()
    assert all(torch.allclose(a, b) for a, b in zip(model.network_parameters(), twin.network_parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(model.network_parameters(), fresh(data, config)[0].network_parameters()))


def test_search_records_alpha_and_its_softmax_at_every_step(data):
    result = search(data, tiny_config(search_epochs=1))
    assert result.alpha_history.shape == (len(result.train_losses), 3)
    assert np.allclose(result.weight_history.sum(axis=1), 1.0)
    assert np.allclose(result.weight_history[-1], torch.softmax(torch.tensor(result.alpha_history[-1]), 0).numpy())


def test_a_clear_lasting_lead_is_decisive():
    history = np.tile([0.1, 0.7, 0.2], (40, 1))
    chosen, margin, noise, decisive, reason = decide([1, 2, 4], history)
    assert (chosen, decisive, reason) == (2, True, DECISIVE) and margin == pytest.approx(0.5)


def test_near_uniform_weights_are_flagged_as_noise():
    rng = np.random.default_rng(0)
    history = 1 / 3 + rng.normal(0, 0.003, size=(200, 3))
    assert decide([1, 2, 4], history)[3] is False


def test_a_leader_that_changed_late_is_not_decisive():
    history = np.tile([0.45, 0.55, 0.0], (40, 1))
    history[-3:] = [0.6, 0.4, 0.0]
    assert decide([1, 2, 4], history)[3] is False


def test_a_wide_margin_whose_winner_changed_late_names_that_reason_not_the_noise():
    history = np.tile([0.0, 0.55, 0.45], (40, 1))
    history[-10] = [0.5, 0.3, 0.2]  # k=1 led early in the last quarter; the gap of k=2 over k=4 never moved
    chosen, margin, noise, decisive, reason = decide([1, 2, 4], history)
    assert margin > noise and not decisive
    assert reason == WINNER_CHANGED


def test_a_stable_winner_within_the_noise_names_the_noise():
    history = np.tile([0.33, 0.34, 0.33], (40, 1))  # ahead all along, by less than MARGIN_FLOOR
    assert decide([1, 2, 4], history)[3:] == (False, WITHIN_NOISE)


def test_a_search_result_carries_the_reason():
    result = search_outcome([1, 2], np.tile([0.0, 2.0], (8, 1)), [0.0] * 8, [0.0] * 8, 1.0)
    assert (result.decisive, result.reason) == (True, DECISIVE)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_search_prefers_windows_that_contain_the_planted_dependency(seed):
    data = build_sequences(planted_log(lag=3, seed=seed))
    config = RunConfig(candidate_lengths=[1, 2, 4, 8], max_length=20, embedding_dim=32, sequence_hidden=32,
                       channel_hidden=64, dropout=0.1, batch_size=64, lr=0.01, arch_lr=0.03, search_epochs=12,
                       search_order="first", seed=seed)
    weights = search(data, config).final_weights
    containing = weights[4] + weights[8]  # windows of at least 3 items see the cue
    assert containing > 0.75, weights
    assert containing - (weights[1] + weights[2]) > 0.5, weights


def test_training_on_the_cpu_flushes_subnormal_floats_and_restores_them_after():
    from engine.training.device import subnormals_flushed
    subnormal = 1e-39  # below float32's smallest normal number, 1.18e-38
    with subnormals_flushed(torch.device("cpu")):
        assert float(torch.tensor([subnormal])[0]) == 0.0
    assert float(torch.tensor([subnormal])[0]) == pytest.approx(subnormal, rel=1e-3)
