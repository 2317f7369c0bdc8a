"""The main window: a sidebar of pages (Data, Experiment, Training, Runs, Users), the File and View
menus with their shortcuts, and a status bar with the open store and the selected dataset.

Pages other than Data are built by other modules; a page whose module is not there yet shows a plain
"not available yet" label in its slot, so that the window never depends on unfinished work.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QAction, QActionGroup, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QMessageBox,
    QProgressDialog,
    QScrollArea,
    QStackedWidget,
    QWidget,
)

import engine
from app.engine_job import EngineJob
from app.settings import AppSettings, save_settings
from app.theme import app_icon, apply_theme, restyle_plots
from app.widgets import ElidedLabel, OpenStoreDialog, show_error
from engine.core.config import ConfigError, RunConfig

README = Path(__file__).resolve().parent.parent / "README.md"  # the source tree's, beside app/
# Export's file types for a run with a model bundle (the ONNX ones add model.onnx, checked)
ZIPPED_BUNDLE = "Model bundle, zipped (*.zip)"
BUNDLE_FOLDER = "Model bundle folder (*)"
ZIPPED_BUNDLE_ONNX = "Model bundle with ONNX model, zipped (*.zip)"
BUNDLE_FOLDER_ONNX = "Model bundle folder with ONNX model (*)"

# The smallest window: every page is laid out for it, and it fits a 1024x600 screen with room for a panel.
# A page that needs more (a long label, a wide table) scrolls inside the window instead of widening it.
MINIMUM_SIZE = QSize(800, 500)

# (title, module, class): every page class takes the AppContext as its only argument.
PAGES = (
    ("Data", "app.pages.data_page", "DataPage"),
    ("Experiment", "app.pages.experiment_page", "ExperimentPage"),
    ("Training", "app.pages.training_page", "TrainingPage"),
    ("Runs", "app.pages.runs", "RunsPage"),
    ("Users", "app.pages.users", "UsersPage"),
)


def _placeholder(text: str) -> QLabel:
    label = QLabel(text)
    label.setAlignment(Qt.AlignCenter)
    label.setWordWrap(True)
    return label


def _scrolling(page: QWidget) -> QScrollArea:
    """The page in a frameless scroll area: filling it when there is room, scrolling when the window is
    smaller than the page's minimum size, so that no page sets the window's minimum size."""
    area = QScrollArea()
    area.setWidget(page)
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    return area


def build_page(title: str, module_name: str, class_name: str, context) -> QWidget:
    """The page, or a label saying why it is not there (its module is missing, or fails to import)."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        return _placeholder(f"The {title} page is not available yet.")
    return getattr(module, class_name)(context)


def run_record(run) -> dict:
    """The stored record of a run as plain JSON-ready values: what Export writes for a run."""
    return {"id": run.id, "dataset": run.dataset_name, "status": run.status, "device": run.device,
            "chosen_length": run.chosen_length, "metrics": run.metrics, "config": run.config,
            "started_at": run.started_at, "finished_at": run.finished_at, "seconds": run.seconds,
            "version": run.version, "error": run.error}


class MainWindow(QMainWindow):
    bundle_exported = Signal(str)  # the path a run's model bundle was written to

    def __init__(self, context, settings: AppSettings | None = None) -> None:
        super().__init__()
        self.context = context
        self._jobs: set[EngineJob] = set()  # background exports still running
        self._closing_after_cancel = False  # the user chose "stop and quit": the run is being cancelled
        self.settings = settings or AppSettings()
        # Before the pages: plots take the theme's colours when they are built.
        apply_theme(QApplication.instance(), self.settings.theme)
        self.setWindowTitle(f"AutoMLP Studio {engine.__version__}")
        self.setWindowIcon(app_icon())
        self.resize(1280, 820)

        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")  # styled by the theme's stylesheet
        self.sidebar.setFixedWidth(120)  # the longest title, "Experiment", at the theme's 11pt with padding
        self.stack = QStackedWidget()
        self.pages: dict[str, QWidget] = {}
        for title, module_name, class_name in PAGES:
            page = build_page(title, module_name, class_name, context)
            self.pages[title] = page
            self.stack.addWidget(_scrolling(page))
            self.sidebar.addItem(title)
        self.sidebar.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.sidebar.setCurrentRow(0)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.sidebar)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.setMinimumSize(MINIMUM_SIZE)
        self.store_label = ElidedLabel()  # a long store path must not set the window's width
        self.dataset_label = QLabel()
        self.statusBar().addPermanentWidget(self.dataset_label)
        self.statusBar().addPermanentWidget(self.store_label)
        self._build_menus()

        context.store_changed.connect(self._on_store_changed)
        context.dataset_selected.connect(self._on_dataset_selected)
        context.resume_requested.connect(lambda _run_id: self.show_page("Training"))
        self._on_store_changed()
        self._on_dataset_selected(context.dataset_name or "")
        if self.settings.geometry is not None:
            self.restoreGeometry(self.settings.geometry)

    # ------------------------------------------------------------ construction

    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.open_store_action = self._action(file_menu, "&Open store…", self.choose_store, QKeySequence.Open)
        self.import_action = self._action(file_menu, "&Import…", self.open_import_wizard, "Ctrl+I")
        file_menu.addSeparator()
        self.save_config_action = self._action(file_menu, "&Save configuration…", self.save_configuration,
                                               QKeySequence.Save)
        self.load_config_action = self._action(file_menu, "&Load configuration…", self.load_configuration,
                                               "Ctrl+L")
        self.export_action = self._action(file_menu, "&Export…", self.export_selected_run, "Ctrl+E")
        file_menu.addSeparator()
        self.quit_action = self._action(file_menu, "&Quit", self.close, QKeySequence.Quit)
        self.quit_action.setShortcut(QKeySequence("Ctrl+Q"))  # Quit has no standard key on every platform

        view_menu = self.menuBar().addMenu("&View")
        themes = QActionGroup(self)
        self.theme_actions = {}
        for theme in ("light", "dark"):
            action = self._action(view_menu, f"{theme.title()} theme", lambda _=False, t=theme: self.set_theme(t))
            action.setCheckable(True)
            action.setChecked(theme == self.settings.theme)
            themes.addAction(action)
            self.theme_actions[theme] = action
        view_menu.addSeparator()
        for row, (title, _, _) in enumerate(PAGES):
            self._action(view_menu, f"{title} page", lambda _=False, r=row: self.sidebar.setCurrentRow(r),
                         f"Ctrl+{row + 1}")

        run_menu = self.menuBar().addMenu("&Run")
        # Ctrl+R: run; Ctrl+.: the usual cancel key; F5 stays free for refreshing. From any page.
        self.start_action = self._action(run_menu, "&Start training", self.start_training, "Ctrl+R")
        self.cancel_action = self._action(run_menu, "&Cancel training", self.cancel_training, "Ctrl+.")

        help_menu = self.menuBar().addMenu("&Help")
        self.docs_action = self._action(help_menu, "&Documentation (README)", self.open_documentation,
                                        QKeySequence.HelpContents)
        self.shortcuts_action = self._action(help_menu, "&Keyboard shortcuts", self.show_shortcuts, "Ctrl+/")
        help_menu.addSeparator()
        self._action(help_menu, "&About", lambda: QMessageBox.about(
            self, "AutoMLP Studio", f"AutoMLP Studio {engine.__version__}\n"
            "Automated short-term length search for MLP sequential recommenders (Li et al., WWW 2023)."))

    def start_training(self) -> None:
        """Starts a run on the Training page (shown), as its Start button would; refused the same way."""
        page = self.pages["Training"]
        if hasattr(page, "start"):
            self.show_page("Training")
            page.start()

    def cancel_training(self) -> None:
        page = self.pages["Training"]
        if hasattr(page, "cancel"):
            page.cancel()

    def open_documentation(self) -> bool:
        """Opens the README (the documentation: usage, configuration, architecture) in the system's viewer."""
        readme = README
        if not readme.is_file():
            self.statusBar().showMessage(f"The documentation is README.md of the source tree ({readme} is not "
                                         "there)", 10000)
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(readme)))

    def shortcut_rows(self) -> list[tuple[str, str]]:
        """(action, keys) of every menu action with a shortcut, in menu order: the shortcut list's rows."""
        rows = []
        for menu_action in self.menuBar().actions():
            for action in menu_action.menu().actions():
                if not action.shortcut().isEmpty():
                    rows.append((action.text().replace("&", ""),
                                 action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)))
        return rows

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td>{name}</td><td>&nbsp;&nbsp;<b>{keys}</b></td></tr>"
                       for name, keys in self.shortcut_rows())
        self.shortcuts_box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts",
                                         f"<table>{rows}</table>", QMessageBox.StandardButton.Close, self)
        self.shortcuts_box.open()

    def show_page(self, title: str) -> None:
        self.sidebar.setCurrentRow([t for t, _, _ in PAGES].index(title))

    def current_page_title(self) -> str:
        return PAGES[self.stack.currentIndex()][0]

    # ------------------------------------------------------------ store and status bar

    def choose_store(self) -> None:
        dialog = OpenStoreDialog(self.context.store_url, self)
        if dialog.exec():
            self.open_store(dialog.url())

    def open_store(self, url: str) -> bool:
        """Opens the store at `url`; on failure the previous store stays open and a dialog says why."""
        try:
            self.context.open_store(url)
        except Exception as error:
            show_error(self, "Cannot open the store", str(error), error)
            return False
        self.settings.store_url = url
        return True

    def _on_store_changed(self) -> None:
        read_only = self.context.store is not None and self.context.store.read_only
        self.store_label.setText(f"Store: {self.context.store_url or 'none'}{' (read-only)' if read_only else ''}")
        self.store_label.setToolTip(self.context.store_url or "")
        self._on_dataset_selected(self.context.dataset_name or "")  # a new store has its own selection
        if read_only:
            self.statusBar().showMessage(
                "The store is read-only (write-protected, or opened read-only): its datasets and runs can be "
                "browsed, but importing, training and deleting need a writable store", 30000)
        if self.context.interrupted_runs:
            self.statusBar().showMessage(
                f"{self.context.interrupted_runs} run(s) were interrupted when their process ended: select one "
                "on the Runs page and press Resume to continue it from its last checkpoint", 30000)

    def _on_dataset_selected(self, name: str) -> None:
        self.dataset_label.setText(f"Dataset: {name or 'none'}")

    # ------------------------------------------------------------ file actions

    def open_import_wizard(self) -> None:
        self.show_page("Data")
        self.pages["Data"].open_import_wizard()

    def save_configuration(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save configuration", "automlp.toml", "TOML (*.toml)")
        if not path:
            return
        path = Path(path) if Path(path).suffix else Path(path).with_suffix(".toml")
        try:
            self.context.config.save_toml(path)
        except (OSError, ConfigError) as error:
            show_error(self, "Cannot save the configuration", str(error), error)
            return
        self.statusBar().showMessage(f"Configuration saved to {path}", 5000)

    def load_configuration(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load configuration", "", "TOML (*.toml);;All files (*)")
        if not path:
            return
        try:
            config = RunConfig.load_toml(path)
        except ConfigError as error:  # the message names the key and the problem; the file is named once
            message = str(error) if str(error).startswith(f"{Path(path).name}:") else f"{Path(path).name}: {error}"
            show_error(self, "Cannot load the configuration", message)
            return
        self.context.set_config(config)
        self.statusBar().showMessage(f"Configuration loaded from {path}", 5000)

    def export_selected_run(self) -> None:
        """Exports the selected run: its model bundle (a .zip, or a folder for any other name) when the run
        saved one, or its stored record (configuration, status, chosen length, metrics) as .json."""
        run_id = self.context.run_id
        if run_id is None:
            QMessageBox.information(self, "Export", "Select a run on the Runs page first.")
            return
        from engine.cli.model_commands import bundle_for_run
        from engine.data.run_records import get_run

        try:
            with self.context.sessions() as session:
                record = run_record(get_run(session, run_id))
                try:
                    bundle_for_run(session, run_id)
                    has_bundle = True
                except Exception:  # none saved (failed or cancelled run), moved or changed: summary only
                    has_bundle = False
        except Exception as error:
            show_error(self, "Cannot export the run", str(error), error)
            return
        filters = ["Run summary (*.json)"]
        if has_bundle:
            filters = [ZIPPED_BUNDLE, BUNDLE_FOLDER, ZIPPED_BUNDLE_ONNX, BUNDLE_FOLDER_ONNX] + filters
        name = f"run-{run_id}-bundle.zip" if has_bundle else f"run-{run_id}.json"
        path, chosen = QFileDialog.getSaveFileName(self, f"Export run {run_id}", name, ";;".join(filters))
        if not path:
            return
        if Path(path).suffix.lower() == ".json" or not has_bundle:
            self._write_run_summary(record, Path(path).with_suffix(".json"))
        else:
            self.export_bundle(run_id, Path(path), onnx=chosen in (ZIPPED_BUNDLE_ONNX, BUNDLE_FOLDER_ONNX))

    def _write_run_summary(self, record: dict, path: Path) -> None:
        try:
            path.write_text(json.dumps(record, indent=1, default=str))
        except OSError as error:
            show_error(self, "Cannot export the run", str(error), error)
            return
        self.statusBar().showMessage(f"Run {record['id']} exported to {path}", 5000)

    def export_bundle(self, run_id: int, path: Path, onnx: bool = False) -> EngineJob:
        """Copies the run's bundle (re-checked on loading) to `path` (.zip: one file) on a background
        thread, with a progress dialog that can cancel it; with `onnx`, adds model.onnx, checked against
        onnxruntime as `automlp export --onnx` does. Returns the job."""
        sessions = self.context.sessions

        def task(observer):
            from engine.cli.model_commands import bundle_for_run
            from engine.serving.bundle import load_bundle, save_bundle

            with sessions() as session:
                source = bundle_for_run(session, run_id)
            bundle = load_bundle(source)
            return save_bundle(bundle, bundle.data, path, onnx=onnx, zip=path.suffix.lower() == ".zip",
                               observer=observer)

        from engine.data.store_errors import StoreError
        from engine.serving.bundle import BundleError

        progress = QProgressDialog(f"Exporting run {run_id}…", "Cancel", 0, 100, self)
        progress.setWindowModality(Qt.WindowModal)
        progress.setMinimumDuration(300)  # no flash for a quick copy
        job = EngineJob(task, (BundleError, StoreError, OSError, ImportError), self)  # ImportError: no onnxruntime
        job.progressed.connect(progress.setValue)
        progress.canceled.connect(job.cancel)

        def finish(message: str | None = None, error: str | None = None, details: str = "") -> None:
            progress.reset()
            job.wait()
            self._jobs.discard(job)
            if error:
                show_error(self, "Cannot export the run", error, details=details or None)
            elif message:
                self.statusBar().showMessage(message, 8000)
                self.bundle_exported.emit(str(path))

        with_onnx = " (with model.onnx, checked)" if onnx else ""
        job.succeeded.connect(lambda out: finish(f"Run {run_id}: model bundle written to {out}{with_onnx}"))
        job.failed.connect(lambda message, details: finish(error=message, details=details))
        job.cancelled.connect(lambda: finish())
        self._jobs.add(job)
        job.start()
        return job

    # ------------------------------------------------------------ view and closing

    def set_theme(self, theme: str) -> None:
        apply_theme(QApplication.instance(), theme)
        restyle_plots(self, theme)
        for page in self.pages.values():  # what pages paint themselves (table cells, legends) is not styled
            if hasattr(page, "restyle"):
                page.restyle()
        self.settings.theme = theme
        self.theme_actions[theme].setChecked(True)

    def ask_stop_training(self) -> bool:
        """Whether the user chose to stop the run in progress and quit (else training goes on)."""
        box = QMessageBox(QMessageBox.Icon.Question, "A run is in progress",
                          "Training is still running. Stop it and quit? The run can be resumed later from "
                          "its last checkpoint on the Runs page.", parent=self)
        box.addButton("Keep training", QMessageBox.ButtonRole.RejectRole)
        stop = box.addButton("Stop and quit", QMessageBox.ButtonRole.AcceptRole)
        box.exec()
        return box.clickedButton() is stop

    def closeEvent(self, event) -> None:
        training = self.pages.get("Training")
        if getattr(training, "running", False):
            # A long run is never lost to a stray click; and stopping one takes seconds (the engine ends
            # its step, records the cancel), so the window stays responsive and closes once it has ended.
            event.ignore()
            if self._closing_after_cancel or not self.ask_stop_training():
                return
            self._closing_after_cancel = True
            training.runner.running_changed.connect(self._close_when_idle)
            training.cancel()
            self.statusBar().showMessage("Cancelling the run… the window closes once it has stopped")
            return
        # Pages with background work cancel it and wait for their threads: no orphan thread at exit.
        for page in self.pages.values():
            if hasattr(page, "shutdown"):
                page.shutdown()
        for job in list(self._jobs):
            job.cancel()
            job.wait()
        self.settings.geometry = self.saveGeometry()
        if self.context.store_url:
            self.settings.store_url = self.context.store_url
        save_settings(self.settings)
        super().closeEvent(event)

    def _close_when_idle(self, running: bool) -> None:
        if not running:
            self.close()
