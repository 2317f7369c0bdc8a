"""The main window on the real widgets: pages, menus, configuration files, export, settings, screenshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QFileDialog, QLabel

import app.main_window as main_window_module
from app.main_window import PAGES, MainWindow
from app.screenshots import render_pages
from app.settings import AppSettings, load_settings
from engine.core.config import RunConfig
from engine.data.run_records import create_run, finish_run


def answer_file_dialogs(monkeypatch, path, file_type: str = ""):
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), file_type)))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))


def test_has_a_page_for_each_part_of_the_workflow(window):
    assert [window.sidebar.item(i).text() for i in range(window.sidebar.count())] == [t for t, _, _ in PAGES]
    assert type(window.pages["Data"]).__name__ == "DataPage"
    for title, page in window.pages.items():  # pages not written yet say so instead of failing
        if isinstance(page, QLabel):
            assert "not available yet" in page.text()
    window.show_page("Training")
    assert window.current_page_title() == "Training"


def test_opens_on_an_empty_store_with_the_demo_offered(window, app_context):
    assert window.current_page_title() == "Data"
    data_page = window.pages["Data"]
    assert data_page.empty_panel.isVisible() and data_page.demo_button.isEnabled()
    assert app_context.store_url in window.store_label.text()
    assert window.dataset_label.text() == "Dataset: none"


def test_status_bar_follows_the_selected_dataset(window, app_context):
    app_context.select_dataset("ml-1m")
    assert window.dataset_label.text() == "Dataset: ml-1m"


def test_shortcuts_are_the_usual_ones(window):
    shortcuts = {a.text(): a.shortcut().toString() for a in (
        window.open_store_action, window.import_action, window.save_config_action, window.load_config_action,
        window.export_action, window.quit_action)}
    assert shortcuts == {"&Open store…": "Ctrl+O", "&Import…": "Ctrl+I", "&Save configuration…": "Ctrl+S",
                         "&Load configuration…": "Ctrl+L", "&Export…": "Ctrl+E", "&Quit": "Ctrl+Q"}


def test_save_and_load_a_configuration_through_the_menu(monkeypatch, window, app_context, tmp_path):
    path = tmp_path / "experiment.toml"
    saved = app_context.config.replace(candidate_lengths=[2, 3, 7], seed=42)
    app_context.set_config(saved)
    answer_file_dialogs(monkeypatch, path)
    window.save_config_action.trigger()
    assert path.exists()
    app_context.set_config(RunConfig())
    window.load_config_action.trigger()
    assert app_context.config == saved


def test_a_bad_configuration_file_shows_the_problem(monkeypatch, window, app_context, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("version = 1\ncandidate_lengths = [0, 4]\n")
    errors = []
    monkeypatch.setattr(main_window_module, "show_error", lambda parent, title, message, *a, **k:
                        errors.append(message))
    answer_file_dialogs(monkeypatch, path)
    before = app_context.config
    window.load_config_action.trigger()
    assert len(errors) == 1 and "bad.toml" in errors[0] and "candidate_lengths" in errors[0]
    assert app_context.config is before


def test_export_writes_the_selected_runs_record(monkeypatch, window, app_context, tmp_path):
    with app_context.sessions() as session:
        run_id = create_run(session, "planted", app_context.config.to_dict(), "cpu")
        finish_run(session, run_id, 4, {"NDCG@10": 0.31}, 12.5)
    app_context.select_run(run_id)
    path = tmp_path / "run.json"
    answer_file_dialogs(monkeypatch, path)
    window.export_action.trigger()
    record = json.loads(path.read_text())
    assert record["id"] == run_id and record["chosen_length"] == 4 and record["metrics"] == {"NDCG@10": 0.31}


def test_open_store_switches_and_a_bad_store_keeps_the_current_one(monkeypatch, window, app_context, tmp_path):
    assert window.open_store(f"sqlite:///{tmp_path}/other.sqlite")
    assert "other.sqlite" in window.store_label.text()
    not_a_store = tmp_path / "notes.sqlite"
    not_a_store.write_text("these are notes, not a database")
    errors = []
    monkeypatch.setattr(main_window_module, "show_error", lambda parent, title, message, *a, **k:
                        errors.append(message))
    assert not window.open_store(f"sqlite:///{not_a_store}")
    assert errors and "not an SQLite database" in errors[0]
    assert "other.sqlite" in app_context.store_url


def test_closing_remembers_the_store_geometry_and_theme(qtbot, app_context):
    window = MainWindow(app_context, AppSettings())
    qtbot.addWidget(window)
    window.resize(760, 540)  # inside the offscreen screen (800 x 600)
    window.show()
    size = (window.width(), window.height())  # as the pages' minimum sizes allow
    window.set_theme("dark")
    window.close()
    settings = load_settings()
    assert settings.store_url == app_context.store_url and settings.theme == "dark"
    reopened = MainWindow(app_context, settings)
    qtbot.addWidget(reopened)
    assert (reopened.width(), reopened.height()) == size
    reopened.set_theme("light")
    reopened.close()


def test_dark_theme_darkens_the_palette(qtbot, window):
    from PySide6.QtWidgets import QApplication

    window.set_theme("dark")
    assert QApplication.palette().color(QPalette.Window).lightness() < 80
    window.set_theme("light")
    assert QApplication.palette().color(QPalette.Window).lightness() > 200


def test_a_screenshot_of_each_page_is_rendered_and_not_blank(window, app_context, planted_csv, tmp_path):
    from engine.data.importers import import_file

    with app_context.sessions() as session:
        import_file(session, planted_csv, name="planted", min_user_interactions=3)
    app_context.datasets_changed.emit()
    paths = render_pages(window, tmp_path / "shots", size=(1000, 700))
    assert [p.name for p in paths] == [f"{n}-{t.lower()}.png" for n, (t, _, _) in enumerate(PAGES, start=1)]
    for path in paths:
        image = QImage(str(path))
        assert image.width() >= 1000 and image.height() >= 600
        colours = {image.pixel(x, y) for x in range(0, image.width(), 37) for y in range(0, image.height(), 29)}
        assert len(colours) > 3, f"{path.name} looks blank"


def test_ctrl_i_opens_the_import_wizard_on_the_data_page(window):
    window.show_page("Runs")
    window.import_action.trigger()
    assert window.current_page_title() == "Data"
    wizard = window.pages["Data"].wizard
    assert wizard.isVisible() and wizard.currentPage() is wizard.file_page
    wizard.reject()


def test_an_error_box_carries_the_full_traceback_in_its_details():
    from app.widgets import error_box

    try:
        raise ValueError("the engine's message")
    except ValueError as error:
        box = error_box(None, "Title", str(error), error)
    assert box.text() == "the engine's message"
    assert "Traceback" in box.detailedText() and "ValueError" in box.detailedText()


def test_main_opens_the_store_given_with_db(monkeypatch, qtbot, tmp_path):
    from PySide6.QtWidgets import QApplication

    from app.main import main

    monkeypatch.setattr(QApplication, "exec", lambda self: 0)  # return instead of running the event loop
    path = tmp_path / "given.sqlite"
    assert main(["--db", str(path)]) == 0
    windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
    assert windows and windows[-1].context.store_url == f"sqlite:///{path}"
    for window in windows:
        window.close()
    windows[-1].context.store.close()


def test_a_store_given_with_db_is_used_for_this_session_only(monkeypatch, qtbot, tmp_path):
    from PySide6.QtWidgets import QApplication

    from app.main import main
    from app.settings import AppSettings, load_settings, save_settings

    remembered = f"sqlite:///{tmp_path}/remembered.sqlite"
    save_settings(AppSettings(store_url=remembered))
    monkeypatch.setattr(QApplication, "exec", lambda self: 0)
    path = tmp_path / "once.sqlite"
    assert main(["--db", str(path)]) == 0
    windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
    assert windows[-1].context.store_url == f"sqlite:///{path}"
    for window in windows:
        window.close()  # closing saves the settings
    windows[-1].context.store.close()
    assert load_settings().store_url == remembered


def select_a_run_with_a_bundle(app_context, planted_csv, tmp_path):
    """An untrained model saved as a run's bundle, as a finished run leaves it (training is not under test);
    the run selected. Returns the data it was saved with."""
    from types import SimpleNamespace

    from engine.cli.model_commands import record_bundle
    from engine.data.importers import import_file
    from engine.data.sequences import build_sequences
    from engine.data.store import load_log
    from engine.models.automlp import ModelShape, build_model
    from engine.serving.bundle import save_bundle

    config = app_context.config.replace(candidate_lengths=[1, 2], max_length=8, embedding_dim=8)
    with app_context.sessions() as session:
        import_file(session, planted_csv, name="planted", min_user_interactions=3)
        data = build_sequences(load_log(session, "planted"), 3)
        run_id = create_run(session, "planted", config.to_dict(), "cpu")
        model = build_model(ModelShape.from_config(config, data.n_items))
        source = save_bundle(SimpleNamespace(model=model, config=config, chosen_length=2, metrics={}), data,
                             tmp_path / "runs" / f"run-{run_id}")
        record_bundle(session, run_id, source)
        finish_run(session, run_id, 2, {}, 1.0)
    app_context.select_run(run_id)
    return data


def test_export_copies_the_selected_runs_model_bundle(monkeypatch, qtbot, window, app_context, planted_csv,
                                                      tmp_path):
    from engine.serving.bundle import load_bundle

    data = select_a_run_with_a_bundle(app_context, planted_csv, tmp_path)
    path = tmp_path / "exported.zip"
    answer_file_dialogs(monkeypatch, path)
    with qtbot.waitSignal(window.bundle_exported, timeout=20_000):
        window.export_action.trigger()
    exported = load_bundle(path)
    assert exported.chosen_length == 2 and exported.data.fingerprint() == data.fingerprint()


def test_export_with_the_onnx_file_type_adds_a_checked_onnx_model(monkeypatch, qtbot, window, app_context,
                                                                  planted_csv, tmp_path):
    import zipfile

    from app.main_window import ZIPPED_BUNDLE_ONNX

    pytest.importorskip("onnxruntime")
    select_a_run_with_a_bundle(app_context, planted_csv, tmp_path)
    path = tmp_path / "exported.zip"
    answer_file_dialogs(monkeypatch, path, ZIPPED_BUNDLE_ONNX)
    with qtbot.waitSignal(window.bundle_exported, timeout=60_000):
        window.export_action.trigger()
    assert "model.onnx" in {Path(name).name for name in zipfile.ZipFile(path).namelist()}
    assert "model.onnx" in window.statusBar().currentMessage()


def test_open_store_accepts_a_file_path_or_a_url(monkeypatch, window, app_context, tmp_path):
    from app.widgets import OpenStoreDialog, store_url_from_text

    assert store_url_from_text("postgresql://me@db/automlp") == "postgresql://me@db/automlp"
    typed = tmp_path / "typed.sqlite"

    def accept_typed(dialog):
        dialog.url_edit.setText(str(typed))
        return 1

    monkeypatch.setattr(OpenStoreDialog, "exec", accept_typed)
    window.open_store_action.trigger()
    assert app_context.store_url == f"sqlite:///{typed}" and typed.exists()
    assert window.settings.store_url == app_context.store_url


def test_opening_a_store_marks_runs_of_dead_processes_interrupted_and_says_so(qtbot, tmp_path):
    from app.context import AppContext
    from engine.data.run_records import create_run, get_run
    from engine.data.store import open_store

    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    store = open_store(url)
    with store.session() as session:
        run_id = create_run(session, "any", {}, "cpu")
        get_run(session, run_id).pid = 2**22 + 12345  # no such process
        session.commit()
    store.close()
    context = AppContext(url)
    with context.sessions() as session:
        assert get_run(session, run_id).status == "interrupted"
    assert context.interrupted_runs == 1
    window = MainWindow(context, AppSettings())
    qtbot.addWidget(window)
    assert "1 run(s) were interrupted" in window.statusBar().currentMessage()
    context.store.close()


def test_the_window_has_the_app_icon_at_every_window_manager_size(window):
    icon = window.windowIcon()
    assert not icon.isNull()
    assert {size.width() for size in icon.availableSizes()} >= {16, 24, 32, 48, 64, 128, 256}


def test_the_users_page_shows_the_model_of_a_run_that_finished_after_it_was_selected(qtbot, window, app_context,
                                                                                     tmp_path):
    from engine.data.run_records import add_artifact, create_run
    from engine.serving.bundle import bundle_digest, save_bundle
    from tests.engine.tiny_run import tiny_run

    with app_context.sessions() as session:
        run_id = create_run(session, "planted", {}, "cpu")
    runs, users = window.pages["Runs"], window.pages["Users"]
    window.show_page("Runs")
    runs.refresh()
    runs.select_runs([run_id])  # while it trains: no bundle yet
    qtbot.waitUntil(lambda: not users.is_busy(), timeout=20_000)
    assert "has no saved bundle" in users.message_label.text()
    result, data = tiny_run()
    path = save_bundle(result, data, tmp_path / "bundle")
    with app_context.sessions() as session:
        add_artifact(session, run_id, str(path), "bundle", bundle_digest(path))
        finish_run(session, run_id, result.chosen_length, {}, 1.0)
    runs.refresh_button.click()
    window.show_page("Users")
    qtbot.waitUntil(lambda: not users.is_busy() and users.bundle is not None, timeout=20_000)
    assert users.source_run_id == run_id and users.message_label.text() == ""


# ---------------------------------------------------------------- themes


@pytest.fixture
def light_afterwards():
    """The theme is the application's: put the light one back for the next tests."""
    from PySide6.QtWidgets import QApplication

    from app.theme import apply_theme

    yield
    apply_theme(QApplication.instance(), "light")


def is_dark(color) -> bool:
    return QColor(color).lightness() < 80


def is_light(color) -> bool:
    return QColor(color).lightness() > 180


def plots_of(window):
    import pyqtgraph as pg

    plots = window.findChildren(pg.PlotWidget)
    assert len(plots) >= 5  # the Training page's four and the Runs page's
    return plots


def legend_colours(plot) -> list[str]:
    legend = plot.getPlotItem().legend
    return [QColor(label.opts["color"]).name() for _sample, label in (legend.items if legend else [])]


def assert_plots_follow(window, dark: bool) -> None:
    background, ink = (is_dark, is_light) if dark else (is_light, is_dark)
    for plot in plots_of(window):
        item = plot.getPlotItem()
        assert background(plot.backgroundBrush().color())
        for name in ("left", "bottom"):
            assert ink(item.getAxis(name).pen().color()) and ink(item.getAxis(name).textPen().color())
        assert all(ink(colour) for colour in legend_colours(plot))
        if item.legend is not None:  # the legend's own background follows the plot's
            assert background(item.legend.brush().color())


def pixel(widget, x: int = 2, y: int = 2) -> QColor:
    return widget.grab().toImage().pixelColor(x, y)


def show_a_run_curve(window, app_context) -> None:
    """A run with a recorded curve, selected on the Runs page: its plot has a legend entry."""
    from engine.data.run_records import append_series, create_run

    with app_context.sessions() as session:
        run_id = create_run(session, "planted", {}, "cpu")
        append_series(session, run_id, [("retrain", 1, "NDCG@10", 0.1, "epoch")])
    window.pages["Runs"].refresh()
    window.pages["Runs"].select_runs([run_id])
    assert legend_colours(window.pages["Runs"].dashboard.panels["retrain · NDCG@10 [full]"]) != []


def test_the_remembered_theme_colours_every_plot_at_start(qtbot, app_context, light_afterwards):
    window = MainWindow(app_context, AppSettings(theme="dark"))  # as a relaunch after choosing Dark
    qtbot.addWidget(window)
    show_a_run_curve(window, app_context)
    assert_plots_follow(window, dark=True)
    assert window.theme_actions["dark"].isChecked()


def test_switching_the_theme_recolours_plots_legends_and_sidebar(qtbot, window, app_context, light_afterwards):
    show_a_run_curve(window, app_context)
    assert_plots_follow(window, dark=False)
    window.set_theme("dark")
    assert_plots_follow(window, dark=True)
    assert is_dark(pixel(window.sidebar, y=window.sidebar.height() - 3))
    window.set_theme("light")
    assert_plots_follow(window, dark=False)
    assert is_light(pixel(window.sidebar, y=window.sidebar.height() - 3))


def test_switching_the_theme_recolours_the_users_pages_window_banner_rows_and_legend(qtbot, window, tmp_path,
                                                                                     light_afterwards):
    from app.theme import colour
    from engine.serving.bundle import save_bundle
    from tests.engine.tiny_run import tiny_run

    result, data = tiny_run()
    users = window.pages["Users"]
    users.open_bundle(save_bundle(result, data, tmp_path / "bundle"))
    qtbot.waitUntil(lambda: not users.is_busy() and users.recommendations is not None, timeout=20_000)
    window.show_page("Users")
    banner, history = users.history_view.window_label, users.history_view.table
    for theme in ("dark", "light"):
        window.set_theme(theme)
        window_colour = colour("short_term_window", theme)
        assert pixel(banner) == window_colour  # the banner's background, under its text's start
        assert banner.palette().windowText().color().lightness() > 180 if theme == "dark" else \
            banner.palette().windowText().color().lightness() < 80  # readable on it
        marked = history.item(history.rowCount() - 1, 0)
        assert marked.background().color() == window_colour
        legend = users.top_n.legend.text()
        assert colour("score_long", theme).name() in legend and colour("test_item", theme).name() in legend


def _start_a_long_run(qtbot, window, app_context, tmp_path):
    from engine.core.presets import quick_demo
    from tests.app.store_data import store_planted_dataset

    app_context.select_dataset(store_planted_dataset(app_context.sessions, tmp_path))
    app_context.set_config(quick_demo().replace(
        candidate_lengths=[1, 2, 4], max_length=10, embedding_dim=16, sequence_hidden=16, channel_hidden=32,
        search_epochs=200, retrain_epochs=200, device="cpu"))
    page = window.pages["Training"]
    page.start_button.click()
    qtbot.waitUntil(lambda: page.phase_label.text() == "search", timeout=20000)
    return page


def test_closing_during_training_asks_and_keep_training_keeps_the_window_and_the_run(
        monkeypatch, qtbot, window, app_context, tmp_path):
    page = _start_a_long_run(qtbot, window, app_context, tmp_path)
    asked = []
    monkeypatch.setattr(window, "ask_stop_training", lambda: asked.append(1) or False)
    window.close()
    assert asked and window.isVisible() and page.running
    monkeypatch.setattr(window, "ask_stop_training", lambda: True)  # lets the fixture close the window
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=20000)


def test_stop_and_quit_says_cancelling_keeps_the_window_responsive_and_closes_once_the_run_ended(
        monkeypatch, qtbot, window, app_context, tmp_path):
    from engine.data.run_records import list_runs

    page = _start_a_long_run(qtbot, window, app_context, tmp_path)
    monkeypatch.setattr(window, "ask_stop_training", lambda: True)
    window.close()  # returns at once: the window waits for the run without blocking the event loop
    assert "Cancelling" in window.statusBar().currentMessage()
    assert window.isVisible()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=20000)
    assert not page.running
    with app_context.sessions() as session:
        assert [run.status for run in list_runs(session)] == ["cancelled"]


def test_the_help_menu_opens_the_readme_and_lists_every_shortcut(monkeypatch, qtbot, window):
    from PySide6.QtGui import QDesktopServices

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    window.docs_action.trigger()
    assert opened and opened[0].toLocalFile().endswith("README.md")
    rows = dict(window.shortcut_rows())
    assert rows["Start training"] == "Ctrl+R" and rows["Cancel training"] == "Ctrl+."
    assert rows["Import…"] == "Ctrl+I" and "Keyboard shortcuts" in rows
    window.shortcuts_action.trigger()
    assert window.shortcuts_box.isVisible() and "Ctrl+R" in window.shortcuts_box.text()
    window.shortcuts_box.close()


def test_ctrl_r_starts_a_run_from_any_page_and_the_status_leaves_idle(qtbot, window, app_context, tmp_path):
    from tests.app.store_data import store_planted_dataset

    app_context.select_dataset(store_planted_dataset(app_context.sessions, tmp_path))
    app_context.set_config(app_context.config.replace(
        candidate_lengths=[1, 2], max_length=8, embedding_dim=8, sequence_hidden=8, channel_hidden=8,
        search_epochs=1, retrain_epochs=1, device="cpu"))
    window.show_page("Runs")
    page = window.pages["Training"]
    window.start_action.trigger()
    assert window.current_page_title() == "Training"
    assert page.running and page.phase_label.text() != "idle"
    with qtbot.waitSignal(page.runner.running_changed, timeout=30_000, check_params_cb=lambda r: not r):
        window.cancel_action.trigger()
    assert not page.running
