"""Checkpoints: written after every epoch, atomically; a run cancelled or killed between epochs and resumed
ends exactly as the uninterrupted run; damaged or foreign checkpoints are refused without running anything."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from engine.core.config import RunConfig
from engine.core.events import Cancelled, EpochFinished, RecordingObserver
from engine.data.sequences import build_sequences
from engine.data.synthetic import planted_log
from engine.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from engine.training.runner import run_automlp

CONFIG = RunConfig(candidate_lengths=[1, 2, 4], max_length=10, embedding_dim=16, sequence_hidden=16,
                   channel_hidden=32, batch_size=32, search_epochs=3, retrain_epochs=4, patience=10,
                   eval_negatives=20, device="cpu", seed=5)


@pytest.fixture(scope="module")
def data():
    return build_sequences(planted_log(n_users=100, n_items=60, min_length=8, max_length=14, seed=2))


@pytest.fixture(scope="module")
def uninterrupted(data):
    return run_automlp(data, CONFIG)


def cancelled_after(phase: str, epoch: int, data, path, config=CONFIG):
    """Runs until `epoch` of `phase` has finished (and its checkpoint is written), then cancels."""
    observer = RecordingObserver(cancel_when=lambda e: isinstance(e, EpochFinished) and e.phase == phase
                                 and e.epoch == epoch)
    with pytest.raises(Cancelled):
        run_automlp(data, config, observer, checkpoint_path=path)
    return load_checkpoint(path)


def assert_same_run(resumed, uninterrupted):
    assert resumed.chosen_length == uninterrupted.chosen_length
    assert resumed.test_metrics == uninterrupted.test_metrics
    assert resumed.retrain.history == uninterrupted.retrain.history
    if uninterrupted.search is not None:
        np.testing.assert_array_equal(resumed.search.alpha_history, uninterrupted.search.alpha_history)
        assert resumed.search.train_losses == uninterrupted.search.train_losses
        for name, tensor in uninterrupted.search.supernet.state_dict().items():  # what the what-if view reads
            assert torch.equal(resumed.search.supernet.state_dict()[name], tensor), name
    for name, tensor in uninterrupted.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name


def test_a_run_with_a_checkpoint_path_leaves_the_state_of_its_last_epoch(data, tmp_path):
    path = tmp_path / "run.safetensors"
    run_automlp(data, CONFIG, checkpoint_path=path)
    checkpoint = load_checkpoint(path)
    assert (checkpoint.phase, checkpoint.epoch) == ("retrain", CONFIG.retrain_epochs)
    assert checkpoint.fingerprint == data.fingerprint()
    assert checkpoint.config["seed"] == CONFIG.seed
    assert "search.alpha" in checkpoint.tensors and "rng.torch" in checkpoint.tensors


def test_a_run_resumed_during_the_search_ends_as_the_uninterrupted_run(data, uninterrupted, tmp_path):
    checkpoint = cancelled_after("search", 2, data, tmp_path / "run.safetensors")
    assert (checkpoint.phase, checkpoint.epoch) == ("search", 2)
    assert_same_run(run_automlp(data, CONFIG, resume=checkpoint), uninterrupted)


def test_a_run_resumed_during_the_retraining_ends_as_the_uninterrupted_run(data, uninterrupted, tmp_path):
    checkpoint = cancelled_after("retrain", 2, data, tmp_path / "run.safetensors")
    assert (checkpoint.phase, checkpoint.epoch) == ("retrain", 2)
    resumed = run_automlp(data, CONFIG, resume=checkpoint)
    assert_same_run(resumed, uninterrupted)
    assert resumed.search.decisive == uninterrupted.search.decisive


def test_a_run_without_a_search_resumes_its_retraining(data, tmp_path):
    config = CONFIG.replace(candidate_lengths=[2])
    checkpoint = cancelled_after("retrain", 1, data, tmp_path / "run.safetensors", config)
    assert_same_run(run_automlp(data, config, resume=checkpoint), run_automlp(data, config))


def test_a_resumed_run_keeps_writing_checkpoints(data, tmp_path):
    path = tmp_path / "run.safetensors"
    checkpoint = cancelled_after("search", 1, data, path)
    run_automlp(data, CONFIG, resume=checkpoint, checkpoint_path=path)
    assert load_checkpoint(path).epoch == CONFIG.retrain_epochs


def test_resuming_with_other_settings_is_refused_naming_them(data, tmp_path):
    checkpoint = cancelled_after("search", 1, data, tmp_path / "run.safetensors")
    with pytest.raises(CheckpointError, match="lr, seed"):
        run_automlp(data, CONFIG.replace(lr=0.01, seed=9), resume=checkpoint)


def test_resuming_on_other_data_is_refused(data, tmp_path):
    checkpoint = cancelled_after("search", 1, data, tmp_path / "run.safetensors")
    other = build_sequences(planted_log(n_users=100, n_items=60, min_length=8, max_length=14, seed=7))
    with pytest.raises(CheckpointError, match="other data"):
        run_automlp(other, CONFIG, resume=checkpoint)


# ---------------------------------------------------------------- the file


def small_checkpoint() -> Checkpoint:
    return Checkpoint("search", 1, 3, 1.5, {"seed": 0}, "abc", {"model.w": torch.arange(6.0)}, {"rng": {"a": 1}})


def test_a_checkpoint_reads_back_as_written(tmp_path):
    path = save_checkpoint(small_checkpoint(), tmp_path / "c.safetensors")
    loaded = load_checkpoint(path)
    assert (loaded.phase, loaded.epoch, loaded.step, loaded.seconds) == ("search", 1, 3, 1.5)
    assert loaded.state == {"rng": {"a": 1}} and torch.equal(loaded.tensors["model.w"], torch.arange(6.0))


def test_a_failed_write_leaves_the_previous_checkpoint_and_no_stray_file(tmp_path, monkeypatch):
    path = save_checkpoint(small_checkpoint(), tmp_path / "c.safetensors")

    def full_disk(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("engine.training.checkpoint.os.fsync", full_disk)
    later = small_checkpoint()
    later.epoch = 2
    with pytest.raises(CheckpointError, match="c.safetensors: the checkpoint could not be written .the disk is full"):
        save_checkpoint(later, path)
    assert load_checkpoint(path).epoch == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_a_missing_checkpoint_is_refused_with_a_message(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint there"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_a_truncated_checkpoint_is_refused(tmp_path):
    path = save_checkpoint(small_checkpoint(), tmp_path / "c.safetensors")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_a_bit_flipped_header_is_refused(tmp_path):
    path = save_checkpoint(small_checkpoint(), tmp_path / "c.safetensors")
    blob = bytearray(path.read_bytes())
    blob[12] ^= 0xFF  # inside the JSON header
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


class Explosive:
    def __reduce__(self):
        return (exec, ("raise SystemExit('a pickle was executed')",))


def test_a_pickle_renamed_to_safetensors_is_refused_and_never_executed(tmp_path):
    path = tmp_path / "c.safetensors"
    path.write_bytes(pickle.dumps({"model": Explosive()}))
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_a_safetensors_file_of_another_kind_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an AutoMLP checkpoint"):
        load_checkpoint(path)


def test_a_checkpoint_from_a_newer_release_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.training.checkpoint.SCHEMA_VERSION", 99)
    path = save_checkpoint(small_checkpoint(), tmp_path / "c.safetensors")
    monkeypatch.setattr("engine.training.checkpoint.SCHEMA_VERSION", 1)
    with pytest.raises(CheckpointError, match="newer release"):
        load_checkpoint(path)
