"""The Data page: the store's datasets with their statistics, a sequence-length histogram and the most
popular items; import (wizard, or the generated demo on an empty store) and delete with confirmation.

`python -m app.pages.data_page [--db URL]` opens the page on its own for a quick look.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.demo import demo_import_options, write_demo_csv
from app.import_job import ImportJob
from app.theme import colour
from app.widgets import show_error
from engine.data.store import (
    dataset_stats,
    delete_dataset,
    list_datasets,
    sequence_lengths,
)

DATASET_COLUMNS = ("Name", "Users", "Items", "Interactions", "Density", "Time span")
POPULAR_COLUMNS = ("Item", "Title", "Interactions")


def _date(seconds: int | None) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d") if seconds is not None else ""


def time_span_text(span: dict) -> str:
    if span.get("first") is None:
        return "no timestamps (file order)"
    return f"{_date(span['first'])} – {_date(span['last'])}"


def _cell(value, sort_value=None) -> QStandardItem:
    item = QStandardItem(str(value))
    item.setEditable(False)
    if sort_value is not None:
        item.setData(sort_value, Qt.UserRole)
        item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
    return item


def length_histogram(lengths: np.ndarray, max_bins: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """(edges (n+1,), counts (n,)) of sequence lengths: one bin per length when they span few values."""
    if len(lengths) == 0:
        return np.array([0.0, 1.0]), np.array([0])
    low, high = int(lengths.min()), int(lengths.max())
    if high - low + 1 <= max_bins:
        edges = np.arange(low, high + 2) - 0.5
    else:
        edges = np.linspace(low, high + 1, max_bins + 1)
    counts, edges = np.histogram(lengths, bins=edges)
    return edges, counts


class DataPage(QWidget):
    def __init__(self, context) -> None:
        super().__init__()
        self.context = context
        self.stats: dict[str, dict] = {}  # dataset name -> dataset_stats(...)
        self._demo_job: ImportJob | None = None
        self._demo_folder: tempfile.TemporaryDirectory | None = None

        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Import an interaction file (Ctrl+I)")
        # a lambda: clicked(bool) would otherwise pass its checked flag as the path
        self.import_button.clicked.connect(lambda: self.open_import_wizard())
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self.delete_selected)
        self.demo_button = QPushButton("Import the demo dataset")
        self.demo_button.setToolTip("400 generated users whose next item depends on the item 3 steps back")
        self.demo_button.clicked.connect(self.import_demo)
        self.demo_progress = QProgressBar(minimum=0, maximum=100)
        self.demo_progress.hide()
        self.empty_label = QLabel(
            "<b>The store has no datasets yet.</b> Import an interaction file, or start with a generated "
            "demo dataset: it trains in about a minute on a laptop CPU.")
        self.empty_label.setWordWrap(True)
        self.empty_panel = QWidget()
        empty_layout = QHBoxLayout(self.empty_panel)
        empty_layout.addWidget(self.empty_label, 1)
        empty_layout.addWidget(self.demo_button)
        empty_layout.addWidget(self.demo_progress)

        self.datasets_model = QStandardItemModel(0, len(DATASET_COLUMNS), self)
        self.datasets_model.setHorizontalHeaderLabels(DATASET_COLUMNS)
        self.datasets_model.setSortRole(Qt.UserRole)
        self.datasets_view = QTableView()
        self.datasets_view.setModel(self.datasets_model)
        self.datasets_view.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.datasets_view.setSelectionMode(QAbstractItemView.SingleSelection)
        self.datasets_view.verticalHeader().setVisible(False)
        self.datasets_view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.datasets_view.horizontalHeader().setStretchLastSection(True)
        self.datasets_view.selectionModel().selectionChanged.connect(self._on_row_selection_changed)

        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.histogram = pg.PlotWidget(title="Sequence lengths")
        self.histogram.setLabel("bottom", "interactions per user")
        self.histogram.setLabel("left", "users")
        self.histogram.setMouseEnabled(x=True, y=False)
        # Created once and fed with setData: the histogram curve of the selected dataset.
        self.histogram_curve = self.histogram.plot(stepMode="center", fillLevel=0, brush=(47, 111, 209, 150),
                                                   pen=pg.mkPen((47, 111, 209), width=1))
        # without data, 0-1 axes would read as a dataset of nothing: say so instead
        self.histogram_empty = pg.TextItem("no data: select or import a dataset", colour("plot_foreground"),
                                           anchor=(0.5, 0.5))
        self.histogram.addItem(self.histogram_empty, ignoreBounds=True)
        self.popular_model = QStandardItemModel(0, len(POPULAR_COLUMNS), self)
        self.popular_model.setHorizontalHeaderLabels(POPULAR_COLUMNS)
        popular_view = QTableView()
        popular_view.setModel(self.popular_model)
        popular_view.verticalHeader().setVisible(False)
        popular_view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        popular_view.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)  # long titles elide

        buttons = QHBoxLayout()
        buttons.addWidget(QLabel("<b>Datasets</b>"))
        buttons.addStretch(1)
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.delete_button)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addLayout(buttons)
        top_layout.addWidget(self.empty_panel)
        top_layout.addWidget(self.datasets_view)
        popular = QWidget()
        popular_layout = QVBoxLayout(popular)
        popular_layout.setContentsMargins(0, 0, 0, 0)
        popular_layout.addWidget(QLabel("<b>Most popular items</b>"))
        popular_layout.addWidget(popular_view)
        details = QSplitter(Qt.Horizontal)
        details.addWidget(self.histogram)
        details.addWidget(popular)
        details.setSizes([600, 400])
        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addWidget(self.summary_label)
        bottom_layout.addWidget(details, 1)
        splitter = QSplitter(Qt.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(bottom)
        splitter.setSizes([260, 440])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        self.setAcceptDrops(True)  # a file dropped on the page opens the import wizard with it
        context.store_changed.connect(self.reload)
        context.datasets_changed.connect(self.reload)
        context.dataset_selected.connect(self._on_dataset_selected)
        self.reload()

    # ------------------------------------------------------------ reading the store

    def dataset_names(self) -> list[str]:
        return [self.datasets_model.item(row, 0).text() for row in range(self.datasets_model.rowCount())]

    def reload(self) -> None:
        """Re-reads the datasets and their statistics from the store (one Session for this action)."""
        self.stats = {}
        if self.context.sessions is not None:
            try:
                with self.context.sessions() as session:
                    for dataset in list_datasets(session):
                        self.stats[dataset.name] = dataset_stats(session, dataset.name)
            except Exception as error:  # a broken or locked store: say so, keep the window usable
                show_error(self, "Cannot read the store", str(error), error)
        self.datasets_model.removeRows(0, self.datasets_model.rowCount())
        for name, stats in self.stats.items():
            self.datasets_model.appendRow([
                _cell(name),
                _cell(f"{stats['users']:,}", stats["users"]),
                _cell(f"{stats['items']:,}", stats["items"]),
                _cell(f"{stats['interactions']:,}", stats["interactions"]),
                _cell(f"{stats['density']:.4%}", stats["density"]),
                _cell(time_span_text(stats["time_span"])),
            ])
        self.datasets_view.resizeColumnsToContents()
        empty = not self.stats
        self.empty_panel.setVisible(empty)
        self.demo_button.setEnabled(empty and self._demo_job is None)
        self.delete_button.setEnabled(not empty)
        selected = self.context.dataset_name
        if selected not in self.stats:
            selected = next(iter(self.stats), None)
            if selected != self.context.dataset_name:
                self.context.select_dataset(selected)  # its signal selects the row
                return
        self._select_row(selected)
        self._show_details(selected)

    def _select_row(self, name: str | None) -> None:
        names = self.dataset_names()
        if name in names:
            self.datasets_view.selectRow(names.index(name))
        else:
            self.datasets_view.clearSelection()

    def _show_details(self, name: str | None) -> None:
        self.popular_model.removeRows(0, self.popular_model.rowCount())
        stats = self.stats.get(name)
        if stats is None:
            self.summary_label.setText("")
            self._show_histogram(None, None)
            return
        lengths = stats["sequence_length"]
        report = stats.get("import_report") or {}
        self.summary_label.setText(
            f"<b>{name}</b> — sequence length min {lengths['min']}, median {lengths['median']:g}, "
            f"mean {lengths['mean']:.1f}, max {lengths['max']}; {time_span_text(stats['time_span'])}; "
            f"format {report.get('format', '?')}, from {stats.get('source') or '?'}")
        for popular in stats["popular_items"]:
            self.popular_model.appendRow([_cell(popular["item"]), _cell(popular["title"] or ""),
                                          _cell(f"{popular['interactions']:,}", popular["interactions"])])
        try:
            with self.context.sessions() as session:
                edges, counts = length_histogram(sequence_lengths(session, name))
        except Exception as error:
            show_error(self, "Cannot read the store", str(error), error)
            return
        self._show_histogram(edges, counts)

    def _show_histogram(self, edges, counts) -> None:
        """The sequence-length histogram, or "no data" without axes when there are no lengths to show."""
        empty = counts is None or not np.any(counts)
        item = self.histogram.getPlotItem()
        for axis in ("bottom", "left"):
            item.showAxis(axis, not empty)
        self.histogram_empty.setVisible(empty)
        if empty:
            self.histogram_curve.clear()
            self.histogram.setRange(xRange=(0, 1), yRange=(0, 1))
            self.histogram_empty.setPos(0.5, 0.5)
        else:
            self.histogram_curve.setData(edges, counts)
            self.histogram.enableAutoRange()

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and event.mimeData().urls()[0].isLocalFile():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        self.open_import_wizard(event.mimeData().urls()[0].toLocalFile())

    def _on_row_selection_changed(self) -> None:
        rows = self.datasets_view.selectionModel().selectedRows()
        if rows:
            name = self.datasets_model.item(rows[0].row(), 0).text()
            if name != self.context.dataset_name:
                self.context.select_dataset(name)

    def _on_dataset_selected(self, name: str) -> None:
        self._select_row(name or None)
        self._show_details(name or None)

    # ------------------------------------------------------------ actions

    def open_import_wizard(self, path=None) -> None:
        """Opens the import wizard (non-modal, so the rest of the window stays usable)."""
        from app.import_wizard import ImportWizard

        self.wizard = ImportWizard(self.context, self, path=path)
        self.wizard.setAttribute(Qt.WA_DeleteOnClose)
        self.wizard.show()

    def delete_selected(self) -> None:
        name = self.context.dataset_name
        if not name or name not in self.stats:
            return
        answer = QMessageBox.question(
            self, "Delete dataset",
            f"Delete the dataset {name!r} with its {self.stats[name]['interactions']:,} interactions?\n"
            "Runs trained on it keep their records.",
            QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        if answer != QMessageBox.Yes:
            return
        try:
            with self.context.sessions() as session:
                delete_dataset(session, name)
        except Exception as error:
            show_error(self, "Cannot delete the dataset", str(error), error)
            return
        self.context.select_dataset(None)
        self.context.datasets_changed.emit()

    def import_demo(self) -> None:
        """Imports the generated demo dataset on the import thread, then selects it."""
        if self._demo_job is not None or self.context.sessions is None:
            return
        self._demo_folder = tempfile.TemporaryDirectory(prefix="automlp-demo-")
        path = write_demo_csv(self._demo_folder.name)
        self.demo_button.setEnabled(False)
        self.demo_progress.setValue(0)
        self.demo_progress.show()
        self._demo_job = ImportJob(self.context.sessions, path, demo_import_options(path), self)
        self._demo_job.progressed.connect(self.demo_progress.setValue)
        self._demo_job.succeeded.connect(self._on_demo_imported)
        self._demo_job.failed.connect(self._on_demo_failed)
        self._demo_job.cancelled.connect(self._end_demo)
        self._demo_job.start()

    def _on_demo_imported(self, report) -> None:
        self._end_demo()
        self.context.datasets_changed.emit()
        self.context.select_dataset(report.name)

    def _on_demo_failed(self, message: str, details: str) -> None:
        self._end_demo()
        show_error(self, "The demo dataset could not be imported", message, details=details or None)

    def _end_demo(self) -> None:
        if self._demo_job is not None:
            self._demo_job.wait()
        self._demo_job = None
        if self._demo_folder is not None:
            self._demo_folder.cleanup()
            self._demo_folder = None
        self.demo_progress.hide()
        self.demo_button.setEnabled(not self.stats)

    def shutdown(self) -> None:
        """Cancels a running demo import and waits for its thread (the window is closing)."""
        if self._demo_job is not None:
            self._demo_job.cancel()
            self._demo_job.wait()
        wizard = getattr(self, "wizard", None)
        try:
            if wizard is not None:
                wizard.shutdown()
        except RuntimeError:  # the wizard was closed and deleted already
            pass


def main() -> int:
    import argparse
    import sys

    from PySide6.QtWidgets import QApplication

    from app.context import AppContext
    from engine.data.store import default_store_url

    parser = argparse.ArgumentParser(description="The Data page on its own")
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    page = DataPage(AppContext(args.db or default_store_url()))
    page.resize(1000, 700)
    page.show()
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
