"""The training loss's item scores in bfloat16 (RunConfig.precision): what "auto" picks, and that the loss and
its gradients stay those of float32 within bfloat16's rounding."""

import numpy as np
import pytest
import torch

from engine.core.config import ConfigError, RunConfig
from engine.core.events import Message, Observer
from engine.data.sequences import build_sequences
from engine.data.synthetic import planted_log
from engine.models.automlp import AutoMLP, ModelShape
from engine.training.batches import batch_loss, training_batches
from engine.training.device import loss_dtype, native_bf16
from engine.training.fit import fit
from engine.training.runner import fit_to_data

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data():
    return build_sequences(planted_log(n_users=80, n_items=40, min_length=6, max_length=14, seed=2))


def config(**changes) -> RunConfig:
    base = dict(candidate_lengths=[2], max_length=10, embedding_dim=16, sequence_hidden=16, channel_hidden=16,
                batch_size=32, loss="ce", sampled_negatives=10, dropout=0.0)
    return RunConfig(**{**base, **changes})


def loss_and_gradients(data, run_config: RunConfig) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = AutoMLP(ModelShape.from_config(run_config, n_items=data.n_items))
    batch = training_batches(data, run_config, np.random.default_rng(0), CPU)[0]
    loss = batch_loss(model, batch, run_config)
    loss.backward()
    return float(loss.detach()), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_fp32_and_bf16_name_their_number_format_on_any_device():
    assert loss_dtype("fp32", CPU) == torch.float32
    assert loss_dtype("bf16", CPU) == torch.bfloat16


def test_auto_is_bf16_exactly_where_the_device_computes_it_natively():
    assert loss_dtype("auto", CPU) == (torch.bfloat16 if native_bf16(CPU) else torch.float32)


def test_an_unknown_precision_is_refused_naming_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"precision: 'fp16' is not one of auto, fp32, bf16"):
        RunConfig(precision="fp16")


@pytest.mark.parametrize("loss", ["ce", "sampled_softmax"])
@pytest.mark.parametrize("mode", ["causal", "sampled"])
def test_the_bf16_loss_and_its_gradients_agree_with_fp32_within_bf16_rounding(data, loss, mode):
    exact, exact_gradients = loss_and_gradients(data, config(loss=loss, mode=mode, precision="fp32"))
    rounded, rounded_gradients = loss_and_gradients(data, config(loss=loss, mode=mode, precision="bf16"))
    assert rounded != exact  # the scores were rounded: the bf16 path ran
    assert rounded == pytest.approx(exact, rel=1e-2)
    assert rounded_gradients.keys() == exact_gradients.keys()
    for name, gradient in exact_gradients.items():
        # bfloat16 keeps 8 bits of mantissa: about 0.4% per score
        error = (rounded_gradients[name] - gradient).norm() / gradient.norm().clamp_min(1e-12)
        assert error < 0.05, name


def test_the_bf16_loss_is_a_float32_number_not_one_rounded_to_three_digits(data):
    torch.manual_seed(0)
    run_config = config(precision="bf16")
    model = AutoMLP(ModelShape.from_config(run_config, n_items=data.n_items))
    batch = training_batches(data, run_config, np.random.default_rng(0), CPU)[0]
    assert batch_loss(model, batch, run_config).dtype == torch.float32


def test_the_model_keeps_float32_weights_when_trained_in_bf16(data):
    run_config = config(precision="bf16", retrain_epochs=2, patience=2)
    torch.manual_seed(0)
    model = AutoMLP(ModelShape.from_config(run_config, n_items=data.n_items))
    result = fit(model, data, run_config, np.random.default_rng(0), device=CPU)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


class Messages(Observer):
    def __init__(self):
        super().__init__()
        self.texts = []

    def emit(self, event):
        if isinstance(event, Message):
            self.texts.append(event.text)


def test_a_run_resolves_auto_precision_for_its_device_and_says_what_it_became(data):
    messages = Messages()
    fitted = fit_to_data(config(precision="auto"), data, messages, CPU)
    expected = "bf16" if native_bf16(CPU) else "fp32"
    assert fitted.precision == expected
    assert any(f"precision auto -> {expected} (cpu " in text for text in messages.texts)


def test_an_explicit_precision_is_kept_and_not_announced(data):
    messages = Messages()
    assert fit_to_data(config(precision="fp32"), data, messages, CPU).precision == "fp32"
    assert not any("precision" in text for text in messages.texts)


def test_training_caps_onednn_s_cache_of_compiled_products_unless_the_user_set_it():
    # bfloat16 products on AMX keep their buffers in that cache, one entry per shape (device.py)
    import os
    import subprocess
    import sys
    probe = "import engine.training.device, os; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}

    def run(env: dict) -> str:
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert run(env) == "16"
    assert run({**env, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "256"}) == "256"
