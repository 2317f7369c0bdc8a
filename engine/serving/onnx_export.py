"""ONNX export of a trained model's scores, checked against onnxruntime before it is kept."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from engine.core.events import Message, Observer
from engine.data.sequences import SequenceData
from engine.models.automlp import AutoMLP, build_model

ONNX_TOLERANCE = 1e-5


# torch's ONNX exporter builds its operator registry on every export, and logs a warning for each
# torchvision operator it skips when torchvision is not installed (nms, roi_align, roi_pool, deform_conv2d).
# AutoMLP uses none of them, so these four lines say nothing about the user's export: they are dropped, and
# only they (every other record of that logger, and every other logger, still shows).
REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"
SKIPPED_TORCHVISION = "torchvision is not installed"


class _SkippedTorchvisionOps(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(SKIPPED_TORCHVISION)


@contextlib.contextmanager
def _quiet_exporter():
    """While torch.onnx.export runs: no notices about torchvision's operators, and no FutureWarning (the
    exporter's deprecation notices about its own arguments are not the user's concern)."""
    registry_logger, skipped = logging.getLogger(REGISTRY_LOGGER), _SkippedTorchvisionOps()
    registry_logger.addFilter(skipped)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        registry_logger.removeFilter(skipped)


class OnnxMismatch(ValueError):
    """The exported graph's scores differ from torch's."""


class _Scorer(torch.nn.Module):
    """What model.onnx computes: (B, T) int64 left-padded sequences -> (B, N + 1) scores.

    The model's forward scores, computed at the last position only (AutoMLP.joint prunes the causal form to the last position): the graph
    is a fraction of the full pass's size and cost; the export checks it against the full pass.
    """

    def __init__(self, model: AutoMLP) -> None:
        super().__init__()
        self.model = model

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        return self.model.score(self.model.output(self.model.joint(sequences)))


def export_onnx(model: AutoMLP, data: SequenceData, target: Path, observer: Observer) -> None:
    """torch.onnx.export with a dynamic batch axis, then a parity check against onnxruntime."""
    import onnxruntime  # optional dependency: only needed when asked for

    cpu_model = build_model(model.shape, data.features, "cpu")
    cpu_model.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    scorer = _Scorer(cpu_model).eval()
    T = model.shape.max_length
    example = torch.from_numpy(data.histories("test", T, np.arange(min(4, data.n_users))))
    batch = torch.export.Dim("batch", min=1)
    with _quiet_exporter():
        # dynamo=True: torch's recommended exporter (the TorchScript one warns it is deprecated since 2.9);
        # external_data=False: one self-contained file (the weights are small)
        torch.onnx.export(scorer, (example,), str(target), input_names=["sequences"], output_names=["scores"],
                          dynamic_shapes={"sequences": {0: batch}}, dynamo=True, external_data=False,
                          verbose=False)
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    worst = 0.0
    for users in (np.arange(min(1, data.n_users)), np.arange(min(16, data.n_users))):  # batch 1 and many
        sequences = data.histories("test", T, users)
        got = session.run(None, {"sequences": sequences})[0]
        with torch.no_grad():
            expected = cpu_model(torch.from_numpy(sequences)).numpy()  # the full forward pass
        if not np.all(np.isneginf(got[:, 0])):
            raise OnnxMismatch("ONNX export differs from torch: the padding column is not -inf")
        worst = max(worst, float(np.abs(got[:, 1:] - expected[:, 1:]).max()))
    if not worst < ONNX_TOLERANCE:
        raise OnnxMismatch(f"ONNX export differs from torch by {worst:.3g} (tolerance {ONNX_TOLERANCE})")
    observer.emit(Message(f"model.onnx matches torch within {worst:.2g}"))
