"""Bundles: a round trip gives the same model and data; damaged bundles are refused, each with its reason."""

import hashlib
import json
import os
import pickle
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.core.events import Cancelled, RecordingObserver, StepFinished
from engine.serving.bundle import BundleError, load_bundle, save_bundle
from engine.serving.recommend import recommend


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    """One bundle with ONNX, written once; tests that damage it work on copies."""
    result, data = trained
    return save_bundle(result, data, tmp_path_factory.mktemp("bundles") / "tiny", onnx=True)


@pytest.fixture
def copy(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "copy")


def scores(model, data):
    with torch.no_grad():
        return model(torch.from_numpy(data.histories("test", model.shape.max_length)))


def rewrite_config(folder, change):
    info = json.loads((folder / "config.json").read_text())
    change(info)
    (folder / "config.json").write_text(json.dumps(info))


def test_round_trip_gives_identical_scores(trained, saved):
    result, data = trained
    bundle = load_bundle(saved)
    assert torch.equal(scores(bundle.model, bundle.data), scores(result.model, data))


def test_round_trip_restores_the_data_and_the_run(trained, saved):
    result, data = trained
    bundle = load_bundle(saved)
    assert bundle.data.fingerprint() == data.fingerprint()
    assert list(bundle.data.user_ids) == list(data.user_ids)
    assert bundle.data.item_titles == data.item_titles
    assert bundle.config == result.config
    assert bundle.chosen_length == result.chosen_length
    assert bundle.test_metrics == result.test_metrics


def test_a_bundle_alone_recommends_as_the_trained_model(trained, saved):
    result, data = trained
    from_bundle = recommend(load_bundle(saved).model, load_bundle(saved).data, "u4", n=5)
    direct = recommend(result.model, data, "u4", n=5)
    assert from_bundle.items == direct.items and from_bundle.target == direct.target


def test_config_records_what_the_issue_asks_for(saved):
    info = json.loads((saved / "config.json").read_text())
    assert info["schema_version"] == 1
    assert {"engine", "torch", "numpy", "python"} <= set(info["libraries"])
    assert info["vocabulary"]["item_ids"][:1] and info["dataset"]["fingerprint"]
    for name in ("model.safetensors", "data.safetensors", "model.onnx"):
        assert info["files"][name]["sha256"] == hashlib.sha256((saved / name).read_bytes()).hexdigest()


def test_onnx_scores_match_torch(trained, saved):
    import onnxruntime

    result, data = trained
    session = onnxruntime.InferenceSession(str(saved / "model.onnx"), providers=["CPUExecutionProvider"])
    sequences = data.histories("test", result.model.shape.max_length)  # every user: a batch the export never saw
    got = session.run(None, {"sequences": sequences})[0]
    expected = scores(result.model, data).numpy()
    assert np.abs(got[:, 1:] - expected[:, 1:]).max() < 1e-5
    assert np.isneginf(got[:, 0]).all()


def test_item_features_travel_with_the_bundle(tmp_path):
    from engine.core.config import RunConfig
    from engine.data.sequences import build_sequences
    from engine.data.synthetic import planted_log
    from engine.models.automlp import ModelShape, build_model
    from engine.serving.bundle import Bundle

    log = planted_log(n_users=30, n_items=20, min_length=5, max_length=8)
    log.item_features = {"genre": {f"i{i}": [f"g{i % 3}", f"g{i % 5}"][: 1 + i % 2] for i in range(1, 21)}}
    data = build_sequences(log)
    config = RunConfig(candidate_lengths=[2], max_length=6, embedding_dim=8, sequence_hidden=8, channel_hidden=8)
    model = build_model(ModelShape.from_config(config, data.n_items, [2], data.features), data.features).eval()
    path = save_bundle(Bundle(model, data, config, 2), data, tmp_path / "features")
    loaded = load_bundle(path)
    assert np.array_equal(loaded.data.features[0].values, data.features[0].values)
    assert list(loaded.data.features[0].vocabulary) == list(data.features[0].vocabulary)
    assert torch.equal(scores(loaded.model, loaded.data), scores(model, data))


def test_a_model_with_relative_token_maps_round_trips_and_exports_to_onnx(tmp_path):
    import onnxruntime

    from engine.core.config import RunConfig
    from engine.data.sequences import build_sequences
    from engine.data.synthetic import planted_log
    from engine.models.automlp import ModelShape, build_model
    from engine.serving.bundle import Bundle

    data = build_sequences(planted_log(n_users=30, n_items=20, min_length=5, max_length=8))
    config = RunConfig(candidate_lengths=[2], max_length=6, embedding_dim=8, sequence_hidden=8, channel_hidden=8,
                       token_maps="relative")
    model = build_model(ModelShape.from_config(config, data.n_items, [2]), data.features).eval()
    path = save_bundle(Bundle(model, data, config, 2), data, tmp_path / "relative", onnx=True)
    loaded = load_bundle(path)
    assert loaded.model.shape.token_maps == "relative"
    assert torch.equal(scores(loaded.model, loaded.data), scores(model, data))
    session = onnxruntime.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"sequences": data.histories("test", 6)})[0]
    assert np.abs(got[:, 1:] - scores(model, data).numpy()[:, 1:]).max() < 1e-5


def test_a_shape_with_unknown_token_maps_is_refused_as_corrupt(copy):
    rewrite_config(copy, lambda info: info["shape"].update(token_maps="sideways"))
    with pytest.raises(BundleError, match="corrupt.*token_maps: 'sideways'"):
        load_bundle(copy)


def test_zip_bundle_round_trips(trained, tmp_path):
    result, data = trained
    path = save_bundle(result, data, tmp_path / "tiny.zip", zip=True)
    assert zipfile.is_zipfile(path)
    assert torch.equal(scores(load_bundle(path).model, data), scores(result.model, data))


def test_existing_destination_is_not_overwritten_unless_asked(trained, saved):
    result, data = trained
    with pytest.raises(BundleError, match="already exists"):
        save_bundle(result, data, saved)


def test_cancelled_export_leaves_nothing(trained, tmp_path):
    result, data = trained
    observer = RecordingObserver(cancel_when=lambda e: isinstance(e, StepFinished))
    with pytest.raises(Cancelled):
        save_bundle(result, data, tmp_path / "b", observer=observer)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_config_is_refused(copy):
    (copy / "config.json").write_text("{not json")
    with pytest.raises(BundleError, match="^corrupt: .*not valid JSON"):
        load_bundle(copy)


def test_corrupt_zip_is_refused(tmp_path):
    (tmp_path / "b.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(BundleError, match="^corrupt: .*readable zip"):
        load_bundle(tmp_path / "b.zip")


def test_truncated_weights_are_refused(copy):
    blob = (copy / "model.safetensors").read_bytes()
    (copy / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BundleError, match="^truncated: .*model.safetensors"):
        load_bundle(copy)


def test_tampered_weights_are_refused(copy):
    blob = bytearray((copy / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="^tampered: .*model.safetensors.*sha256"):
        load_bundle(copy)


def test_tampered_vocabulary_is_refused(copy):
    rewrite_config(copy, lambda info: info["vocabulary"]["user_ids"].reverse())
    with pytest.raises(BundleError, match="^tampered: .*fingerprint"):
        load_bundle(copy)


def test_newer_schema_is_refused(copy):
    rewrite_config(copy, lambda info: info.update(schema_version=99))
    with pytest.raises(BundleError, match="^newer schema: .*schema 99"):
        load_bundle(copy)


def test_weights_that_do_not_fit_the_shape_are_refused(copy):
    rewrite_config(copy, lambda info: info["shape"].update(embedding_dim=8))
    with pytest.raises(BundleError, match="^mismatched: .*do not fit"):
        load_bundle(copy)


def test_a_shape_that_does_not_fit_the_vocabulary_is_refused(copy):
    rewrite_config(copy, lambda info: info["shape"].update(n_items=info["shape"]["n_items"] + 1))
    with pytest.raises(BundleError, match="^mismatched: .*items"):
        load_bundle(copy)


def test_a_pickle_renamed_to_safetensors_is_refused_without_unpickling(copy, tmp_path):
    marker = tmp_path / "unpickled"

    class Trap:  # unpickling this would create the marker file
        def __reduce__(self):
            return (open, (str(marker), "w"))

    blob = pickle.dumps({"weights": Trap()})
    (copy / "model.safetensors").write_bytes(blob)
    # an attacker who also rewrites the hashes: the format itself must still refuse it
    rewrite_config(copy, lambda info: info["files"].update({"model.safetensors": {
        "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}}))
    with pytest.raises(BundleError, match="^corrupt: .*model.safetensors is not a safetensors file"):
        load_bundle(copy)
    assert not marker.exists()


def test_a_folder_without_config_is_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="^corrupt: .*no config.json"):
        load_bundle(tmp_path)


def test_a_deeply_nested_config_is_refused_as_corrupt(copy):
    (copy / "config.json").write_text("[" * 200_000)
    with pytest.raises(BundleError, match="^corrupt: .*config.json .*nested too deeply"):
        load_bundle(copy)


def test_unlisted_files_in_a_bundle_folder_are_never_read(copy, trained):
    (copy / "README").write_text("notes")
    (copy / "README").chmod(0)  # unreadable (for any user but root)
    (copy / "memory").symlink_to("/proc/self/mem")  # reading it fails with EIO
    os.mkfifo(copy / "pipe")  # opening it would block
    result, data = trained
    assert torch.equal(scores(load_bundle(copy).model, data), scores(result.model, data))


def test_an_unlisted_zip_entry_is_never_read(saved, trained, tmp_path):
    bundle = tmp_path / "b.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for file in saved.iterdir():
            archive.write(file, file.name)
        archive.writestr("extra.bin", b"UNREAD" * 1000)
    blob = bytearray(bundle.read_bytes())
    at = blob.index(b"UNREAD")
    blob[at:at + 6] = b"BROKEN"  # the entry's CRC no longer matches: reading it raises BadZipFile
    bundle.write_bytes(bytes(blob))
    result, data = trained
    assert torch.equal(scores(load_bundle(bundle).model, data), scores(result.model, data))


def test_a_listed_file_larger_than_recorded_is_refused_before_it_is_read(copy):
    with open(copy / "data.safetensors", "ab") as file:
        file.write(b"\0" * 1000)
    with pytest.raises(BundleError, match="^tampered: .*data.safetensors has [0-9]+ bytes, not the [0-9]+"):
        load_bundle(copy)


def test_a_zip_entry_larger_than_recorded_is_refused_before_it_is_read(saved, tmp_path):
    bundle = tmp_path / "b.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in saved.iterdir():
            data = file.read_bytes() + (b"\0" * (1 << 28) if file.name == "model.safetensors" else b"")
            archive.writestr(file.name, data)  # 256 MiB of zeros deflate to 256 KB
    with pytest.raises(BundleError, match="^tampered: .*model.safetensors has [0-9]+ bytes, not the"):
        load_bundle(bundle)


def test_a_fifo_under_a_listed_name_is_refused_without_blocking(copy):
    (copy / "model.onnx").unlink()
    os.mkfifo(copy / "model.onnx")
    with pytest.raises(BundleError, match="^corrupt: .*model.onnx: not a regular file .a FIFO."):
        load_bundle(copy)


# ---------------------------------------------------------------- the command line


@pytest.fixture
def stored_run(trained, saved, tmp_path):
    """A store with one run whose "bundle" artifact is the saved bundle: (store URL, run id)."""
    from engine.cli.model_commands import record_bundle
    from engine.data.run_records import create_run
    from engine.data.store import open_store

    result, _ = trained
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store = open_store(url)
    with store.session() as session:
        run_id = create_run(session, "synthetic", result.config.to_dict(), "cpu")
        record_bundle(session, run_id, saved)
    store.close()
    return url, run_id


def test_cli_recommend_from_a_bundle_prints_the_table(saved, capsys):
    from engine.cli.main import main

    assert main(["recommend", "--bundle", str(saved), "--user", "u4", "-n", "5"]) == 0
    out = capsys.readouterr().out
    assert "rank  item" in out and "long" in out and "short" in out and "bias" in out
    assert "held-out item" in out
    expected = recommend(load_bundle(saved).model, load_bundle(saved).data, "u4", n=5)
    assert [line.split()[1] for line in out.splitlines()[2:7]] == [r.item_id for r in expected.items]


def test_cli_recommend_unknown_user_is_an_error_line(saved, capsys):
    from engine.cli.main import main

    assert main(["recommend", "--bundle", str(saved), "--user", "nobody"]) == 2
    assert "unknown user 'nobody'" in capsys.readouterr().err


def test_cli_recommend_all_writes_the_csv(saved, tmp_path):
    from engine.cli.main import main

    out = tmp_path / "recs.csv"
    assert main(["recommend", "--bundle", str(saved), "--all", "--out", str(out), "-n", "3", "--quiet"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "user,rank,item,score,long,short,bias"
    assert len(lines) == 1 + 3 * load_bundle(saved).data.n_users


def test_cli_recommend_finds_a_runs_bundle_in_the_store(stored_run, capsys):
    from engine.cli.main import main

    url, run_id = stored_run
    assert main(["recommend", "--run", str(run_id), "--user", "u4", "--db", url]) == 0
    assert "held-out item" in capsys.readouterr().out


def test_cli_recommend_for_a_run_without_bundle_says_so(stored_run, capsys):
    from engine.cli.main import main
    from engine.data.run_records import create_run
    from engine.data.store import open_store

    url, _ = stored_run
    store = open_store(url)
    with store.session() as session:
        bare = create_run(session, "synthetic", {}, "cpu")
    store.close()
    assert main(["recommend", "--run", str(bare), "--user", "u4", "--db", url]) == 2
    assert f"run {bare} has no saved bundle" in capsys.readouterr().err


def test_cli_export_writes_a_loadable_zip(stored_run, trained, tmp_path):
    from engine.cli.main import main

    url, run_id = stored_run
    out = tmp_path / "exported.zip"
    assert main(["export", str(run_id), "--out", str(out), "--zip", "--quiet", "--db", url]) == 0
    result, data = trained
    assert torch.equal(scores(load_bundle(out).model, data), scores(result.model, data))


@pytest.mark.parametrize("place, message", [
    ("folder", "is a directory; give the CSV a file name"),
    ("missing/recs.csv", "the folder .*missing does not exist"),
    ("plain.txt/recs.csv", "could not be written to .*Not a directory; nothing was changed"),
    ("/dev/full", r"/dev/full is not a regular file \(a character device\)"),
])
def test_cli_recommend_all_to_a_place_that_cannot_hold_the_csv_is_one_error_line(place, message, saved, tmp_path,
                                                                                  capsys):
    from engine.cli.main import main

    (tmp_path / "folder").mkdir()
    (tmp_path / "plain.txt").write_text("a file, not a folder")
    out = place if place.startswith("/") else str(tmp_path / place)
    before = sorted(tmp_path.rglob("*"))
    assert main(["recommend", "--bundle", str(saved), "--all", "--out", out, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err)
    assert sorted(tmp_path.rglob("*")) == before  # no temporary file left behind


def test_cli_recommend_all_on_a_full_disk_is_one_error_line_and_leaves_no_file(saved, tmp_path):
    # a real process whose files cannot grow past 4 KB: the CSV's writes fail as on a full disk
    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "recs.csv"
    result = subprocess.run([sys.executable, "-m", "engine.cli", "recommend", "--bundle", str(saved), "--all",
                             "--out", str(out), "--quiet"], cwd=root, capture_output=True, text=True, timeout=120,
                            preexec_fn=limited, env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"the recommendations could not be written to {out}" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_recommend_all_gives_the_csv_the_permissions_of_the_umask(saved, tmp_path):
    from engine.cli.main import main

    out = tmp_path / "recs.csv"
    previous = os.umask(0o027)
    try:
        assert main(["recommend", "--bundle", str(saved), "--all", "--out", str(out), "--quiet"]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
