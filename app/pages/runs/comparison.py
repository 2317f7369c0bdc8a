"""The Runs page's comparison table: one row per run with its status, final test metrics (each column names
its protocol: sampled figures alone mislead) and settings, sortable by any column. The rows selected in it
are the runs the dashboard overlays; the settings that differ between them are highlighted, and each
selected run's Run cell carries its colour in the plots."""

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from app.plots import colour
from engine.experiments.run_comparison import (
    differing_keys,
    metric_columns,
    setting_keys,
    setting_text,
    test_metrics,
)

FIXED_COLUMNS = ("Run", "Started", "Dataset", "Status", "k")
TAIL_COLUMNS = ("Duration", "Device", "Version")
RUN_ID = Qt.ItemDataRole.UserRole
SORT_KEY = Qt.ItemDataRole.UserRole + 1
DIFFERS_TIP = "differs between the selected runs"


def metric_header(label: str, name: str) -> str:
    """A metric column's header: the metric over its protocol, on two lines to keep the column narrow."""
    return f"{name}\n[{label}]"


class SortableItem(QTableWidgetItem):
    """A cell that sorts by its SORT_KEY: numbers as numbers (not "10" before "9"), blanks last."""

    def __lt__(self, other) -> bool:
        return _order(self.data(SORT_KEY)) < _order(other.data(SORT_KEY))


def _order(key) -> tuple:
    if key is None or key == "":
        return (2, 0.0, "")
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return (0, float(key), "")
    return (1, 0.0, str(key))


def _cell(text: str, sort_key=None) -> SortableItem:
    item = SortableItem(text)
    item.setData(SORT_KEY, text if sort_key is None else sort_key)
    return item


def _setting_sort_key(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else setting_text(value)


class ComparisonTable(QTableWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.runs_by_id = {}  # run id -> engine.data.schema.Run row (detached)
        self.settings: list[str] = []  # the configuration keys shown as columns
        self._colours: dict[int, int] = {}  # the last highlight's, for a change of theme
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setToolTip("click a header to sort; select rows (Ctrl, Shift) to plot them")
        self.setSortingEnabled(True)
        self.sortItems(0, Qt.SortOrder.DescendingOrder)  # newest first until the reader sorts otherwise

    def headers(self) -> list[str]:
        return [self.horizontalHeaderItem(column).text() for column in range(self.columnCount())]

    def show_runs(self, runs, resumable: set[int]) -> None:
        """Fills the table with `runs` (the caller keeps or restores the selection)."""
        self.runs_by_id = {run.id: run for run in runs}
        metrics = metric_columns([run.metrics for run in runs])
        self.settings = setting_keys([run.config or {} for run in runs])
        # the settings (the differing first) right after the full-ranking metrics: both in view at 1280 px
        full = [(label, name) for label, name in metrics if label == "full"]
        sampled = [(label, name) for label, name in metrics if label != "full"]
        headers = (list(FIXED_COLUMNS) + [metric_header(label, name) for label, name in full] + self.settings
                   + [metric_header(label, name) for label, name in sampled] + list(TAIL_COLUMNS))
        sorting = self.horizontalHeader().sortIndicatorSection(), self.horizontalHeader().sortIndicatorOrder()
        self.setSortingEnabled(False)  # rows are filled in place; sorted once at the end
        self.clear()
        self.setColumnCount(len(headers))
        self.setHorizontalHeaderLabels(headers)
        self.setRowCount(len(runs))
        for row, run in enumerate(runs):
            config = run.config or {}
            status = run.status + (" · resumable" if run.id in resumable else "")
            cells = [_cell(str(run.id), run.id),
                     _cell(dt.datetime.fromtimestamp(run.started_at).strftime("%Y-%m-%d %H:%M"), run.started_at),
                     _cell(run.dataset_name), _cell(status),
                     _cell("" if run.chosen_length is None else str(run.chosen_length), run.chosen_length)]
            cells += [self._metric_cell(run, label, name) for label, name in full]
            cells += [_cell(setting_text(config.get(key)), _setting_sort_key(config.get(key)))
                      for key in self.settings]
            cells += [self._metric_cell(run, label, name) for label, name in sampled]
            cells += [_cell("" if run.seconds is None else f"{run.seconds:.1f} s", run.seconds),
                      _cell(run.device), _cell(run.version)]
            tip = run.error[-2000:] if run.error else "\n".join(f"{k} = {setting_text(v)}" for k, v in config.items())
            for column, item in enumerate(cells):
                item.setData(RUN_ID, run.id)
                item.setToolTip(tip)
                self.setItem(row, column, item)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.setSortingEnabled(True)
        self.sortItems(*sorting)

    @staticmethod
    def _metric_cell(run, label: str, name: str) -> SortableItem:
        value = test_metrics(run.metrics).get(label, {}).get(name)
        return _cell("" if value is None else f"{value:.4f}", value)

    def column_of(self, header: str) -> int:
        return self.headers().index(header)

    def run_id_at(self, row: int) -> int:
        return self.item(row, 0).data(RUN_ID)

    def selected_run_ids(self) -> list[int]:
        """The selected runs, top to bottom."""
        rows = sorted({index.row() for index in self.selectionModel().selectedRows()})
        return [self.run_id_at(row) for row in rows]

    def select_runs(self, run_ids) -> None:
        self.clearSelection()
        mode = self.selectionMode()
        self.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for row in range(self.rowCount()):
            if self.run_id_at(row) in run_ids:
                self.selectRow(row)
        self.setSelectionMode(mode)

    def highlight(self, colours: dict[int, int]) -> list[str]:
        """Marks the selected runs (`colours`: run id -> colour index in the plots): their Run cell takes
        the colour, and the settings that differ between them are bold, header and cells, in the theme's
        link colour. Returns the differing keys."""
        self._colours = dict(colours)
        selected = [self.runs_by_id[run_id].config or {} for run_id in colours if run_id in self.runs_by_id]
        differing = set(differing_keys(selected))
        accent = self.palette().color(QPalette.ColorRole.Link)
        self.setSortingEnabled(False)  # else each change in the sorted column sorts the rows again
        for column, key in enumerate(self.headers()):
            header = self.horizontalHeaderItem(column)
            marked = key in self.settings and key in differing
            font = header.font()
            font.setBold(marked)
            header.setFont(font)
            header.setData(Qt.ItemDataRole.ForegroundRole, accent if marked else None)  # None: the theme's
            header.setToolTip(DIFFERS_TIP if marked else "")
        for row in range(self.rowCount()):
            run_id = self.run_id_at(row)
            self.item(row, 0).setData(Qt.ItemDataRole.DecorationRole,
                                      QColor(colour(colours[run_id])) if run_id in colours else None)
            for key in self.settings:
                item = self.item(row, self.column_of(key))
                font = item.font()
                font.setBold(key in differing and run_id in colours)
                item.setFont(font)
        self.setSortingEnabled(True)
        return sorted(differing, key=self.settings.index)

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and self.rowCount():  # another theme: its link colour
            self.highlight(self._colours)

    def differing_headers(self) -> list[str]:
        """The headers now highlighted (bold)."""
        return [text for column, text in enumerate(self.headers()) if self.horizontalHeaderItem(column).font().bold()]
