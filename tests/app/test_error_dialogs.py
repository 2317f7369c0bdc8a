"""Hostile and broken input at every entry point of the window: each problem is shown in a dialog that
names it (the file and what is wrong), and the window stays usable.

On the real widgets: MainWindow over an AppContext; imports through the Data page's wizard; bundles
through the Users page; configurations through File > Load configuration; stores through
MainWindow.open_store; resuming through the Runs page's Resume button. Modal dialogs (`show_error`) are
captured; the non-blocking ones that follow a worker's result are read from the widget that opened them.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil

import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWizard

import app.main_window as main_window_module
import app.pages.data_page as data_page_module
from engine.core.config import RunConfig
from engine.data.run_records import create_run, fail_run, get_run
from engine.data.store import list_datasets, open_store
from engine.experiments.stored_run import checkpoint_file
from engine.serving.bundle import save_bundle
from tests.app.store_data import store_planted_dataset
from tests.engine.test_store_faults import fill_up
from tests.engine.tiny_run import tiny_run

TIMEOUT = 20_000


@pytest.fixture
def errors(monkeypatch) -> list[tuple[str, str]]:
    """(title, message) of every modal error dialog the window and the Data page open."""
    shown = []

    def capture(parent, title, message, *args, **kwargs):
        shown.append((title, message))

    monkeypatch.setattr(main_window_module, "show_error", capture)
    monkeypatch.setattr(data_page_module, "show_error", capture)
    return shown


def dataset_names(context) -> list[str]:
    with context.sessions() as session:
        return [d.name for d in list_datasets(session)]


def import_in_wizard(qtbot, window, path, name: str):
    """Imports `path` through File > Import…; returns the wizard once its import has ended."""
    window.import_action.trigger()
    wizard = window.pages["Data"].wizard
    wizard.file_page.path_edit.setText(str(path))
    wizard.next()
    qtbot.waitUntil(wizard.mapping_page.isComplete, timeout=TIMEOUT)
    wizard.next()
    wizard.run_page.name_edit.setText(name)
    wizard.run_page.min_user_spin.setValue(3)
    report_or_error = (lambda: wizard.run_page.report is not None
                       or not wizard.job.is_running() and wizard.run_page.import_button.isEnabled())
    wizard.run_page.import_button.click()
    qtbot.waitUntil(report_or_error, timeout=TIMEOUT)
    return wizard


# ---------------------------------------------------------------- import files


def test_a_malformed_import_file_is_named_before_and_during_the_import(qtbot, window, app_context, planted_csv,
                                                                      tmp_path):
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 20)
    window.import_action.trigger()
    wizard = window.pages["Data"].wizard
    wizard.file_page.path_edit.setText(str(binary))
    wizard.next()
    # the live preview says what is wrong beside the options, and the import cannot start
    assert "binary.csv" in wizard.mapping_page.error_label.text()
    assert not wizard.button(QWizard.NextButton).isEnabled()
    wizard.reject()

    lines = planted_csv.read_text().splitlines()
    lines[400] = "u7,i3,not a time"  # beyond the preview: only the import finds it
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(lines) + "\n")
    wizard = import_in_wizard(qtbot, window, broken, "broken")
    box = wizard.error_box
    assert box.windowTitle() == "Import failed" and box.isVisible()
    assert "broken.csv" in box.text() and "line 401" in box.text() and "store is unchanged" in box.text()
    assert dataset_names(app_context) == []
    box.close()
    wizard.reject()

    wizard = import_in_wizard(qtbot, window, planted_csv, "planted")  # the next import works
    assert wizard.run_page.report is not None and dataset_names(app_context) == ["planted"]
    assert "Imported 'planted'" in window.statusBar().currentMessage()  # the wizard closed itself


def test_a_full_disk_during_an_import_is_named_and_the_store_is_left_as_it_was(qtbot, window, app_context,
                                                                              planted_csv, tmp_path):
    store_planted_dataset(app_context.sessions, tmp_path, name="first")
    free = fill_up(app_context.store, spare_pages=2)  # SQLITE_FULL from here: as a full disk gives
    wizard = import_in_wizard(qtbot, window, planted_csv, "second")
    text = wizard.error_box.text()
    assert "s.sqlite is full" in text and "free some disk space" in text
    assert dataset_names(app_context) == ["first"]
    with app_context.sessions() as session:
        assert session.connection().exec_driver_sql("SELECT count(*) FROM users").scalar() == 60
    wizard.error_box.close()
    wizard.reject()
    free()  # space freed: the same import now goes through
    wizard = import_in_wizard(qtbot, window, planted_csv, "second")
    assert wizard.run_page.report is not None and dataset_names(app_context) == ["first", "second"]


# ---------------------------------------------------------------- configurations


@pytest.mark.parametrize("text, problem", [
    ("version = 1\nlearning_rat = 0.01\n", "learning_rat: unknown configuration key"),
    ('version = 1\nsearch_epochs = "ten"\n', "search_epochs: expected"),
    ("version = 1\ncandidate_lengths = [2, 4\n", "not valid TOML"),
], ids=["unknown key", "wrong type", "syntax error"])
def test_a_broken_configuration_file_is_named_and_the_configuration_kept(monkeypatch, window, app_context,
                                                                        errors, tmp_path, text, problem):
    path = tmp_path / "experiment.toml"
    path.write_text(text)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    before = app_context.config
    window.load_config_action.trigger()
    assert len(errors) == 1
    title, message = errors[0]
    assert title == "Cannot load the configuration"
    assert message.count("experiment.toml") == 1 and problem in message
    assert app_context.config is before
    RunConfig(seed=7).save_toml(path)  # a good file loads
    window.load_config_action.trigger()
    assert app_context.config.seed == 7 and len(errors) == 1


def test_the_experiment_pages_load_button_names_the_file_and_the_problem_inline(window, app_context, tmp_path):
    path = tmp_path / "experiment.toml"
    path.write_text("version = 1\ncandidate_lengths = [2, 4\n")
    page = window.pages["Experiment"]
    assert not page.load_config(str(path))
    assert page.error_label.text().startswith("experiment.toml: not valid TOML")
    path.write_text("version = 1\nlearning_rat = 0.01\n")
    assert not page.load_config(str(path))
    assert page.error_label.text() == "experiment.toml: learning_rat: unknown configuration key"


# ---------------------------------------------------------------- bundles


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory):
    result, data = tiny_run()
    return save_bundle(result, data, tmp_path_factory.mktemp("bundles") / "good")


def _copy(good, tmp_path, name):
    copy = tmp_path / name
    shutil.copytree(good, copy)
    return copy


def truncated(good, tmp_path):
    copy = _copy(good, tmp_path, "truncated")
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return copy, "truncated: truncated/model.safetensors has 1000 of its"


def bit_flipped(good, tmp_path):
    copy = _copy(good, tmp_path, "flipped")
    weights = copy / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0x10
    weights.write_bytes(bytes(blob))
    return copy, "tampered: flipped/model.safetensors does not match the sha256"


def pickle_renamed(good, tmp_path):
    copy = _copy(good, tmp_path, "pickled")
    blob = pickle.dumps({"weights": [1.0, 2.0]})
    (copy / "model.safetensors").write_bytes(blob)
    info = json.loads((copy / "config.json").read_text())  # hashes rewritten to match: the format refuses it
    info["files"]["model.safetensors"] = {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    (copy / "config.json").write_text(json.dumps(info))
    return copy, "corrupt: pickled/model.safetensors is not a safetensors file"


def cut_zip(good, tmp_path):
    archive = shutil.make_archive(str(tmp_path / "cut"), "zip", good)
    data = open(archive, "rb").read()
    path = tmp_path / "cut.zip"
    path.write_bytes(data[: len(data) // 2])
    return path, "corrupt: cut.zip is neither a bundle folder nor a readable zip"


@pytest.mark.parametrize("damage", [truncated, bit_flipped, pickle_renamed, cut_zip],
                         ids=["truncated", "bit-flipped", "pickle renamed", "cut zip"])
def test_a_corrupt_bundle_is_named_in_a_dialog_and_a_good_one_opens_after(qtbot, window, good_bundle, tmp_path,
                                                                         damage):
    page = window.pages["Users"]
    path, problem = damage(good_bundle, tmp_path)
    page.open_bundle(path)
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT)
    assert page.error_box.windowTitle() == "Cannot open the model bundle" and page.error_box.isVisible()
    assert page.error_box.text().startswith(problem)
    assert page.bundle is None
    page.error_box.close()
    page.open_bundle(good_bundle)
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT)
    assert page.bundle is not None and page.top_n.table.rowCount() == 10


# ---------------------------------------------------------------- stores


def test_a_file_that_is_not_a_store_is_named_and_the_open_store_kept(window, app_context, errors, tmp_path):
    before = app_context.store_url
    notes = tmp_path / "notes.sqlite"
    notes.write_text("shopping list: milk, eggs\n")
    assert not window.open_store(f"sqlite:///{notes}")
    assert errors == [("Cannot open the store", f"{notes} is not an SQLite database (it may be another kind "
                                                 "of file); choose another store file with --db or AUTOMLP_DB")]
    assert app_context.store_url == before and before in window.store_label.text()
    assert window.open_store(f"sqlite:///{tmp_path / 'other.sqlite'}")  # a good store opens after


def test_a_store_of_a_newer_release_is_named_and_the_open_store_kept(window, app_context, errors, tmp_path):
    newer = tmp_path / "newer.sqlite"
    store = open_store(f"sqlite:///{newer}")
    with store.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    store.close()
    before = app_context.store_url
    assert not window.open_store(f"sqlite:///{newer}")
    (title, message), = errors
    assert str(newer) in message and "'9999'" in message and "written by a newer release" in message
    assert app_context.store_url == before
    with app_context.sessions() as session:  # the previous store still works
        create_run(session, "any", {}, "cpu")


@pytest.fixture
def read_only_window(window, app_context, tmp_path):
    """The window on a read-only copy of a store holding "planted" (a `mode=ro` URL: read-only even for
    root, whom file permissions do not stop; the engine tests cover write-protected files)."""
    path = tmp_path / "shared.sqlite"
    store = open_store(f"sqlite:///{path}")
    store_planted_dataset(store.session, tmp_path, name="planted")
    store.close()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert window.open_store(f"sqlite:///file:{path}?mode=ro&uri=true")
    yield window, path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # never written


def test_a_read_only_store_opens_for_browsing_and_says_so(read_only_window, app_context):
    window, path = read_only_window
    assert "(read-only)" in window.store_label.text() and "read-only" in window.statusBar().currentMessage()
    assert window.pages["Data"].dataset_names() == ["planted"] and app_context.dataset_name == "planted"


def test_an_import_into_a_read_only_store_is_refused_in_a_dialog(qtbot, read_only_window, app_context,
                                                                planted_csv):
    window, path = read_only_window
    wizard = import_in_wizard(qtbot, window, planted_csv, "more")
    assert f"the store {path} is read-only" in wizard.error_box.text()
    assert dataset_names(app_context) == ["planted"]
    wizard.error_box.close()
    wizard.reject()


def test_deleting_from_a_read_only_store_is_refused_in_a_dialog(monkeypatch, read_only_window, app_context,
                                                               errors):
    window, path = read_only_window
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.Yes))
    window.pages["Data"].delete_button.click()
    assert errors == [("Cannot delete the dataset", errors[0][1])] and f"the store {path} is read-only" in errors[0][1]
    assert dataset_names(app_context) == ["planted"]


def test_a_run_on_a_read_only_store_is_refused_in_a_dialog(qtbot, read_only_window, app_context):
    window, path = read_only_window
    training = window.pages["Training"]
    app_context.set_config(app_context.config.replace(search_epochs=1, retrain_epochs=1, device="cpu"))
    with qtbot.waitSignal(training.runner.running_changed, timeout=TIMEOUT, check_params_cb=lambda r: not r):
        training.start_button.click()
    assert training.error_box.windowTitle() == "Run failed"
    assert training.error_box.text().startswith(f"the store {path} is read-only")
    assert training.phase_label.text() == "failed" and training.start_button.isEnabled()
    training.error_box.close()


# ---------------------------------------------------------------- resuming


@pytest.mark.parametrize("damage, problem", [
    (lambda path: path.write_bytes(b"\x00\x17 not a checkpoint " * 40), "not a readable checkpoint"),
    (lambda path: path.write_bytes(b""), "not a readable checkpoint"),
], ids=["garbage", "empty"])
def test_a_damaged_checkpoint_is_named_when_resuming_and_the_run_left_as_it_was(qtbot, window, app_context,
                                                                               damage, problem, tmp_path):
    store_planted_dataset(app_context.sessions, tmp_path, name="planted")  # a run resumes on its stored dataset
    with app_context.sessions() as session:
        run_id = create_run(session, "planted", app_context.config.to_dict(), "cpu")
        fail_run(session, run_id, "cancelled", "Cancelled")
    path = checkpoint_file(app_context.store, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    damage(path)
    app_context.runs_changed.emit()
    runs, training = window.pages["Runs"], window.pages["Training"]
    runs.select_runs([run_id])
    assert runs.resume_button.isEnabled()
    with qtbot.waitSignal(training.runner.running_changed, timeout=TIMEOUT, check_params_cb=lambda r: not r):
        runs.resume_button.click()
    assert window.current_page_title() == "Training"
    box = training.error_box
    assert box.windowTitle() == "Run failed" and path.name in box.text() and problem in box.text()
    box.close()
    with app_context.sessions() as session:
        assert get_run(session, run_id).status == "cancelled"  # the record is untouched
    assert not training.running
