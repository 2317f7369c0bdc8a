"""The import wizard: choose a file (and optional item metadata), check the detected format and column
mapping against a live preview, set the filters, then import on a background thread with progress and
cancel. Every parse is the engine's (`engine.importers`); the wizard only collects the options."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from app.import_job import ImportJob
from app.widgets import open_error
from engine.data.importers import FORMATS, ImportFailed, ImportReport, Preview, preview

SEPARATORS = (("detect", None), ("comma ,", ","), ("tab", "\t"), ("semicolon ;", ";"), ("pipe |", "|"),
              ("space", " "), ("double colon ::", "::"))
NO_COLUMN = "(none)"
PREVIEW_DELAY_MS = 150  # coalesces typing into one preview


def time_text(seconds) -> str:
    """A parsed timestamp (Unix seconds) as the UTC date and time it stands for."""
    try:
        return datetime.fromtimestamp(float(seconds), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):  # NaN, or beyond what a date can hold
        return str(seconds)


def _row(*widgets: QWidget) -> QWidget:
    holder = QWidget()
    layout = QHBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return holder


class ImportFilePage(QWizardPage):
    """Step 1: the interaction file, optional item metadata files and an optional timestamps file."""

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Choose a file")
        self.setSubTitle("An interaction log: MovieLens .dat, CSV/TSV, RecBole .inter, 'user item' pairs, "
                         "'user i1 i2 ...' sequences or Parquet.")
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("path of the interaction file")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._on_browse_clicked)
        self.metadata_list = QListWidget()
        self.metadata_list.setMaximumHeight(90)
        add_metadata = QPushButton("Add…")
        add_metadata.clicked.connect(self._on_add_metadata_clicked)
        remove_metadata = QPushButton("Remove")
        remove_metadata.clicked.connect(lambda: [self.metadata_list.takeItem(self.metadata_list.row(i))
                                                 for i in self.metadata_list.selectedItems()])
        self.times_edit = QLineEdit()
        self.times_edit.setPlaceholderText("optional: 'user t1 t2 ...' timestamps of a sequences file")
        form = QFormLayout(self)
        form.addRow("Interactions:", _row(self.path_edit, browse))
        form.addRow("Item metadata:", self.metadata_list)
        form.addRow("", _row(add_metadata, remove_metadata, QLabel("movies.dat, .item, item2attributes.json")))
        form.addRow("Timestamps file:", self.times_edit)
        self.path_edit.textChanged.connect(self.completeChanged)

    def path(self) -> Path:
        return Path(self.path_edit.text().strip())

    def metadata_files(self) -> list[str]:
        return [self.metadata_list.item(i).text() for i in range(self.metadata_list.count())]

    def times_file(self) -> str | None:
        return self.times_edit.text().strip() or None

    def isComplete(self) -> bool:
        return bool(self.path_edit.text().strip()) and self.path().is_file()

    def _on_browse_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Interaction file")
        if path:
            self.path_edit.setText(path)

    def _on_add_metadata_clicked(self) -> None:
        # metadata usually sits beside the interactions (movies.dat by ratings.dat): start there
        folder = str(self.path().parent) if self.path_edit.text().strip() else ""
        paths, _ = QFileDialog.getOpenFileNames(self, "Item metadata files", folder)
        self.metadata_list.addItems(paths)


class ImportMappingPage(QWizardPage):
    """Step 2: the detected format, separator and column mapping, each overridable, with a live preview."""

    preview_updated = Signal()  # a preview attempt finished (successfully or with an error message)

    def __init__(self, file_page: ImportFilePage) -> None:
        super().__init__()
        self.setTitle("Format and columns")
        self.setSubTitle("Check the preview: change the format, separator or column roles if the guess is wrong.")
        self._file_page = file_page
        self.last_preview: Preview | None = None
        self._mapping_chosen = False  # the user picked columns: stop re-detecting them
        self.format_combo = QComboBox()
        self.format_combo.addItem("detect", None)
        for name in FORMATS:
            self.format_combo.addItem(name, name)
        self.separator_combo = QComboBox()
        for label, separator in SEPARATORS:
            self.separator_combo.addItem(label, separator)
        self.role_combos = {role: QComboBox() for role in ("user", "item", "time", "rating")}
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.error_label.setStyleSheet("color: #d0021b")
        self.detected_label = QLabel()
        self.preview_model = QStandardItemModel(self)
        table = QTableView()
        table.setModel(self.preview_model)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        table.verticalHeader().setVisible(False)
        self.preview_table = table
        self._timer = QTimer(self, singleShot=True, interval=PREVIEW_DELAY_MS)
        self._timer.timeout.connect(self.refresh_preview)

        form = QFormLayout()
        form.addRow("Format:", self.format_combo)
        form.addRow("Separator:", self.separator_combo)
        form.addRow("Columns:", _row(*[_row(QLabel(role), combo) for role, combo in self.role_combos.items()]))
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.detected_label)
        layout.addWidget(self.error_label)
        layout.addWidget(table, 1)
        self.format_combo.currentIndexChanged.connect(self._on_format_changed)
        self.separator_combo.currentIndexChanged.connect(self._on_format_changed)
        for combo in self.role_combos.values():
            combo.activated.connect(self._on_mapping_changed)

    def initializePage(self) -> None:
        self._mapping_chosen = False
        self.refresh_preview()

    def isComplete(self) -> bool:
        return self.last_preview is not None

    def options(self) -> dict:
        """`import_file` keyword arguments for the format, separator and mapping chosen here."""
        return {"format": self.format_combo.currentData(), "separator": self.separator_combo.currentData(),
                "mapping": self._chosen_mapping()}

    def _chosen_mapping(self) -> dict | None:
        if not self._mapping_chosen:
            return None
        return {role: (None if combo.currentText() == NO_COLUMN else combo.currentText())
                for role, combo in self.role_combos.items()}

    def _on_format_changed(self) -> None:
        self._mapping_chosen = False  # other columns: detect them again
        self._timer.start()

    def _on_mapping_changed(self) -> None:
        self._mapping_chosen = True
        self._timer.start()

    def refresh_preview(self) -> None:
        """Parses the first rows with the current options (fast: the engine reads only the file's head)."""
        self._timer.stop()
        try:
            result = preview(self._file_page.path(), **self.options())
        except ImportFailed as error:
            self.last_preview = None
            self.error_label.setText(str(error))
            self.preview_model.clear()
        else:
            self.last_preview = result
            self.error_label.clear()
            self._show(result)
        self.completeChanged.emit()
        self.preview_updated.emit()

    def _show(self, result: Preview) -> None:
        detected = result.detected
        separator = {"\t": "tab", " ": "space", None: "none"}.get(detected.separator, detected.separator)
        self.detected_label.setText(
            f"Read as <b>{detected.format}</b>, separator <b>{separator}</b>, "
            f"{'with' if detected.has_header else 'no'} header, encoding {detected.encoding}.")
        for role, combo in self.role_combos.items():
            combo.blockSignals(True)
            combo.clear()
            if role in ("time", "rating"):
                combo.addItem(NO_COLUMN)
            combo.addItems(detected.columns)
            combo.setCurrentText(detected.mapping.get(role, NO_COLUMN))
            combo.setEnabled(bool(detected.columns))  # a sequences file has no columns to map
            combo.blockSignals(False)
        frame = result.frame
        self.preview_model.clear()
        self.preview_model.setHorizontalHeaderLabels([str(c) for c in frame.columns])
        times = list(frame.columns).index("timestamp") if "timestamp" in frame.columns else None
        for values in frame.itertuples(index=False):
            cells = [QStandardItem(str(v)) for v in values]
            if times is not None:  # parsed to Unix seconds: a date reads better than 978300760
                cells[times] = QStandardItem(time_text(values[times]))
                cells[times].setToolTip(f"{values[times]} (Unix seconds, UTC)")
            self.preview_model.appendRow(cells)


class ImportRunPage(QWizardPage):
    """Step 3: name and filters, then the import itself with a progress bar and a Cancel button.

    It reaches its wizard through `wizard()`, never an attribute: a page <-> wizard reference cycle was
    collected by Python's gc at any later moment, deleting the wizard's widgets under Qt's feet (a
    SIGSEGV in a later test's QApplication.setStyle)."""

    def __init__(self, wizard: "ImportWizard") -> None:
        super().__init__()
        self.setTitle("Filters and import")
        self.setSubTitle("The paper keeps users with at least 10 interactions. Import closes the wizard once "
                         "the dataset is stored; the import is one transaction: an error or a cancel leaves the "
                         "store as it was.")
        self.report: ImportReport | None = None
        self.name_edit = QLineEdit()
        self.min_user_spin = QSpinBox(minimum=1, maximum=10_000, value=10)
        self.min_item_spin = QSpinBox(minimum=0, maximum=10_000, value=0)
        self.progress_bar = QProgressBar(minimum=0, maximum=100, value=0)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.cancel_button = QPushButton("Cancel import")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(wizard.cancel_import)
        self._running = False
        form = QFormLayout(self)
        form.addRow("Dataset name:", self.name_edit)
        form.addRow("Min interactions per user:", self.min_user_spin)
        form.addRow("Min interactions per item:", self.min_item_spin)
        form.addRow(_row(self.cancel_button))
        form.addRow(self.progress_bar)
        form.addRow(self.status_label)

    def initializePage(self) -> None:
        if not self.name_edit.text():
            self.name_edit.setText(self.wizard().file_page.path().stem)

    @property
    def import_button(self):
        """The wizard's last button, labelled Import: one click imports and, once stored, closes."""
        return self.wizard().button(QWizard.WizardButton.FinishButton)

    def isComplete(self) -> bool:
        return not self._running

    def validatePage(self) -> bool:
        if self.report is not None:
            return True  # imported: the wizard may close
        self.wizard().start_import()
        return False  # closes when the import has succeeded (ImportWizard._on_import_succeeded)

    def set_running(self, running: bool) -> None:
        self._running = running
        for widget in (self.name_edit, self.min_user_spin, self.min_item_spin):
            widget.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.completeChanged.emit()


class ImportWizard(QWizard):
    """Imports one file into the context's store; on success the new dataset is announced and selected."""

    dataset_imported = Signal(str)

    def __init__(self, context, parent: QWidget | None = None, path: str | Path | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import interactions")
        self.setOption(QWizard.NoBackButtonOnLastPage, False)
        self.setButtonText(QWizard.WizardButton.FinishButton, "Import")  # one step: no Import, then Finish
        self.resize(820, 560)
        self.context = context
        self.job: ImportJob | None = None
        self.file_page = ImportFilePage()
        self.mapping_page = ImportMappingPage(self.file_page)
        self.run_page = ImportRunPage(self)
        for page in (self.file_page, self.mapping_page, self.run_page):
            self.addPage(page)
        if path is not None:
            self.file_page.path_edit.setText(str(path))

    def import_options(self) -> dict:
        options = dict(self.mapping_page.options())
        options.update(name=self.run_page.name_edit.text().strip() or None,
                       metadata_files=self.file_page.metadata_files(),
                       times_file=self.file_page.times_file(),
                       min_user_interactions=self.run_page.min_user_spin.value(),
                       min_item_interactions=self.run_page.min_item_spin.value())
        return options

    def start_import(self) -> None:
        if self.job is not None and self.job.is_running():
            return  # one import at a time
        page = self.run_page
        page.report = None
        page.progress_bar.setValue(0)
        page.status_label.setStyleSheet("")
        page.status_label.setText("Importing…")
        page.set_running(True)
        self.button(QWizard.BackButton).setEnabled(False)
        self.job = ImportJob(self.context.sessions, self.file_page.path(), self.import_options(), self)
        self.job.progressed.connect(page.progress_bar.setValue)
        self.job.described.connect(page.status_label.setText)
        self.job.succeeded.connect(self._on_import_succeeded)
        self.job.failed.connect(self._on_import_failed)
        self.job.cancelled.connect(self._on_import_cancelled)
        self.job.start()

    def cancel_import(self) -> None:
        if self.job is not None and self.job.is_running():
            self.run_page.status_label.setText("Cancelling…")
            self.job.cancel()

    def _on_import_succeeded(self, report: ImportReport) -> None:
        page = self.run_page
        page.report = report
        page.set_running(False)
        filtered = (f"; filtered out {report.users_filtered} users, {report.items_filtered} items"
                    if report.users_filtered or report.items_filtered else "")
        titles = f", {report.titles:,} titles" if report.titles else ""
        page.status_label.setText(
            f"Imported {report.name!r}: {report.interactions:,} interactions, {report.users:,} users, "
            f"{report.items:,} items{titles} in {report.seconds:.1f} s{filtered}.")
        self.context.datasets_changed.emit()
        self.context.select_dataset(report.name)
        self.dataset_imported.emit(report.name)
        window = self.parentWidget().window() if self.parentWidget() is not None else None
        if isinstance(window, QMainWindow):  # the wizard closes: the summary stays in the status bar
            window.statusBar().showMessage(page.status_label.text(), 15000)
        self.accept()

    def _on_import_failed(self, message: str, details: str) -> None:
        self._show_stopped(message if not details else f"{message}\n\n{details}", error=True)
        # The page keeps the message; the dialog makes sure it is seen. Open, not exec: this is a queued slot.
        self.error_box = open_error(self, "Import failed", f"{message}\n\nThe store is unchanged.",
                                    details=details or None)

    def _on_import_cancelled(self) -> None:
        self._show_stopped("Import cancelled; the store is unchanged.", error=False)

    def _show_stopped(self, text: str, error: bool) -> None:
        page = self.run_page
        page.set_running(False)
        page.progress_bar.setValue(0)
        page.status_label.setStyleSheet("color: #d0021b" if error else "")
        page.status_label.setText(text)
        self.button(QWizard.BackButton).setEnabled(True)

    def shutdown(self) -> None:
        """Cancels a running import and waits for its thread: no orphan thread after the wizard closes."""
        if self.job is not None and self.job.is_running():
            self.job.cancel()
            self.job.wait()

    def reject(self) -> None:
        self.shutdown()
        super().reject()

    def done(self, result: int) -> None:
        self.shutdown()
        super().done(result)
