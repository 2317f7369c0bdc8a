"""Data-parallel training under torchrun, with 2 real CPU processes (gloo): the run equals the
1-process run with the same global batch, alpha is the same on every rank at every step, checkpoints
pass between 2 processes and 1, and rank 0 alone records a stored run.

Tolerances (float reduction order is all that differs): per-step and per-epoch losses within 1e-5,
validation and test metrics within 1e-6 (RELIABILITY.md, Distributed training).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.core.config import RunConfig
from engine.core.events import Cancelled, EpochFinished, RecordingObserver
from engine.data.run_records import list_runs
from engine.experiments.stored_run import bundle_folder, checkpoint_file, run_on_dataset
from engine.training.checkpoint import load_checkpoint
from engine.training.baseline import run_baseline
from engine.training.distributed import without_nproc
from engine.training.runner import run_automlp
from tests.engine.ddp_worker import ddp_data

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")
LOSS_TOLERANCE, METRIC_TOLERANCE = 1e-5, 1e-6
# No dropout: each rank draws its own masks, so with dropout the runs agree in distribution only. float32 loss
# scores: bfloat16 rounds a rank's slice of the batch apart from the whole batch's (test_precision.py)
CONFIG = RunConfig(candidate_lengths=[1, 2, 4], max_length=10, embedding_dim=16, sequence_hidden=16,
                   channel_hidden=32, batch_size=32, search_epochs=2, retrain_epochs=2, patience=10,
                   eval_negatives=20, dropout=0.0, device="cpu", seed=5, precision="fp32")


def this_checkout_env() -> dict:
    """The environment for processes that must run this checkout's code, on one thread each."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def torchrun(*args: str, nproc: int = 2, timeout: int = 120) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=this_checkout_env())


def run_worker(out: Path, *options: str, nproc: int = 2, config: RunConfig = CONFIG) -> list[dict]:
    """The summaries of every rank of a worker run (ddp_worker.py)."""
    done = torchrun(str(WORKER), str(out), json.dumps(config.to_dict()), *options, nproc=nproc)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((out / f"rank-{rank}.json").read_text()) for rank in range(nproc)]


def summary_of(result) -> dict:
    summary = result.summary()
    summary["alpha_history"] = result.search.alpha_history.tolist()
    return summary


def assert_equivalent(run: dict, reference: dict) -> None:
    """The same run up to float reduction order: losses, alpha, the choice and every metric."""
    for name in ("train_losses", "valid_losses", "weight_history"):
        np.testing.assert_allclose(run["search"][name], reference["search"][name], rtol=0, atol=LOSS_TOLERANCE)
    assert run["chosen_length"] == reference["chosen_length"]
    assert [e["epoch"] for e in run["epochs"]] == [e["epoch"] for e in reference["epochs"]]
    for epoch, expected in zip(run["epochs"], reference["epochs"]):
        assert epoch["train_loss"] == pytest.approx(expected["train_loss"], abs=LOSS_TOLERANCE)
        assert {k: v for k, v in epoch.items() if k != "train_loss"} == pytest.approx(
            {k: v for k, v in expected.items() if k != "train_loss"}, abs=METRIC_TOLERANCE)
    for label, metrics in reference["test_metrics"].items():
        assert run["test_metrics"][label] == pytest.approx(metrics, abs=METRIC_TOLERANCE)


@pytest.fixture(scope="module")
def one_process() -> dict:
    return summary_of(run_automlp(ddp_data(), CONFIG))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[dict]:
    return run_worker(tmp_path_factory.mktemp("two"))


def test_two_processes_train_as_one_process_with_the_same_global_batch(two_processes, one_process):
    assert two_processes[0]["search"]["steps"] == one_process["search"]["steps"]  # the batch is split, not repeated
    assert_equivalent(two_processes[0], one_process)


def test_a_second_order_search_with_a_sampled_softmax_in_two_processes_matches_one_process(tmp_path):
    # every gradient of the unrolled step and of the Hessian-vector product is reduced; the sampled
    # softmax scores the global batch's items on every rank
    config = CONFIG.replace(search_order="second", loss="sampled_softmax", sampled_negatives=20,
                            search_epochs=1, retrain_epochs=1)
    assert_equivalent(run_worker(tmp_path, config=config)[0], summary_of(run_automlp(ddp_data(), config)))


def test_the_sasrec_baseline_in_two_processes_matches_one_process(tmp_path):
    config = CONFIG.replace(candidate_lengths=[4], retrain_epochs=1)
    two = run_worker(tmp_path, "--baseline", config=config)[0]
    one = run_baseline(ddp_data(), config).summary()
    for epoch, expected in zip(two["epochs"], one["epochs"], strict=True):
        assert epoch == pytest.approx(expected, abs=LOSS_TOLERANCE)
    for label, metrics in one["test_metrics"].items():
        assert two["test_metrics"][label] == pytest.approx(metrics, abs=METRIC_TOLERANCE)


def test_alpha_is_identical_on_every_rank_at_every_step(two_processes):
    rank0, rank1 = (np.array(summary["alpha_history"]) for summary in two_processes)
    assert len(rank0) == two_processes[0]["search"]["steps"] > 0
    np.testing.assert_array_equal(rank0, rank1)
    assert not np.array_equal(rank0[0], rank0[-1])  # alpha moved


def test_every_rank_returns_the_same_final_result(two_processes):
    assert two_processes[0]["test_metrics"] == two_processes[1]["test_metrics"]
    assert two_processes[0]["epochs"] == two_processes[1]["epochs"]


def test_a_killed_two_process_run_resumes_in_one_process(tmp_path, one_process):
    checkpoint = tmp_path / "run.safetensors"
    killed = torchrun(str(WORKER), str(tmp_path / "out"), json.dumps(CONFIG.to_dict()),
                      "--checkpoint", str(checkpoint), "--kill-after", "search:2")
    assert killed.returncode != 0 and not (tmp_path / "out").exists()  # it died before any rank finished
    saved = load_checkpoint(checkpoint)
    assert (saved.phase, saved.epoch) == ("search", 1)
    assert_equivalent(summary_of(run_automlp(ddp_data(), CONFIG, resume=saved)), one_process)


def test_a_one_process_checkpoint_resumes_in_two_processes(tmp_path, one_process):
    checkpoint = tmp_path / "run.safetensors"
    cancel = RecordingObserver(cancel_when=lambda e: isinstance(e, EpochFinished) and (e.phase, e.epoch) == ("search", 1))
    with pytest.raises(Cancelled):
        run_automlp(ddp_data(), CONFIG, cancel, checkpoint_path=checkpoint)
    resumed = run_worker(tmp_path / "out", "--checkpoint", str(checkpoint), "--resume")
    assert_equivalent(resumed[0], one_process)


def test_automlp_run_nproc_records_one_run_from_rank_0(store):
    done = subprocess.run([sys.executable, "-m", "engine.cli", "run", "--dataset", "planted", "--db", store.url,
                           "--nproc", "2", "--quiet", "--set", "search_epochs=1", "--set", "retrain_epochs=1",
                           "--set", "candidate_lengths=[1,2]", "--set", "embedding_dim=16"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=this_checkout_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("recorded in the store") == 1 and done.stdout.count("test metrics") == 1
    with store.session() as session:
        runs = list_runs(session)
    assert [(run.id, run.status) for run in runs] == [(1, "finished")]
    assert (bundle_folder(store) / "run-1").exists()
    assert not list(bundle_folder(store).glob("*.checkpoint.*"))


def test_automlp_resume_nproc_continues_a_stored_run_in_its_record(store):
    config = CONFIG.replace(candidate_lengths=[1, 2], search_epochs=2, retrain_epochs=1)
    with pytest.raises(Cancelled):
        run_on_dataset(store, "planted", config, RecordingObserver(
            cancel_when=lambda e: isinstance(e, EpochFinished) and (e.phase, e.epoch) == ("search", 1)))
    assert checkpoint_file(store, 1).exists()
    done = subprocess.run([sys.executable, "-m", "engine.cli", "resume", "1", "--db", store.url, "--nproc", "2",
                           "--quiet"], capture_output=True, text=True, timeout=120, cwd=ROOT, env=this_checkout_env())
    assert done.returncode == 0, done.stderr[-3000:]
    with store.session() as session:
        runs = list_runs(session)
    assert [(run.id, run.status) for run in runs] == [(1, "finished")]
    assert not checkpoint_file(store, 1).exists()  # the bundle replaces it


def test_nproc_is_taken_off_the_command_line_torchrun_runs():
    assert without_nproc(["run", "--nproc", "2", "--synthetic", "--nproc=3", "--quiet"]) == ["run", "--synthetic",
                                                                                           "--quiet"]
