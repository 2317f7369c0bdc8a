"""How far a 2-process run (torchrun, gloo) is from the 1-process run with the same global batch.

    python benchmarks/ddp_equivalence.py

The run of tests/engine/test_distributed.py (planted data, 100 users; K = 1, 2, 4; 2 search and 2
retraining epochs; no dropout): the largest absolute differences in the per-step losses and softmax(α),
the per-epoch losses and validation metrics, and the test metrics; whether α was bitwise equal across the
ranks at every step. One JSON line in benchmarks/results/ddp_equivalence.jsonl.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import append_result  # noqa: E402
from engine.training.runner import run_automlp  # noqa: E402
from tests.engine.ddp_worker import ddp_data  # noqa: E402
from tests.engine.test_distributed import CONFIG, run_worker, summary_of  # noqa: E402


def largest(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def main() -> None:
    one = summary_of(run_automlp(ddp_data(), CONFIG))
    with tempfile.TemporaryDirectory() as folder:
        two = run_worker(Path(folder))
    metric_names = [name for name in one["epochs"][0] if name not in ("epoch", "train_loss")]
    append_result("ddp_equivalence.jsonl", {
        "steps": one["search"]["steps"],
        "search_train_loss_max_abs": largest(two[0]["search"]["train_losses"], one["search"]["train_losses"]),
        "search_valid_loss_max_abs": largest(two[0]["search"]["valid_losses"], one["search"]["valid_losses"]),
        "softmax_alpha_max_abs": largest(two[0]["search"]["weight_history"], one["search"]["weight_history"]),
        "retrain_epoch_loss_max_abs": largest([e["train_loss"] for e in two[0]["epochs"]],
                                              [e["train_loss"] for e in one["epochs"]]),
        "valid_metric_max_abs": largest([[e[n] for n in metric_names] for e in two[0]["epochs"]],
                                        [[e[n] for n in metric_names] for e in one["epochs"]]),
        "test_metric_max_abs": max(largest(list(two[0]["test_metrics"][label].values()), list(metrics.values()))
                                   for label, metrics in one["test_metrics"].items()),
        "chosen_length_same": two[0]["chosen_length"] == one["chosen_length"],
        "alpha_bitwise_equal_across_ranks": bool(np.array_equal(two[0]["alpha_history"], two[1]["alpha_history"])),
    })


if __name__ == "__main__":
    main()
