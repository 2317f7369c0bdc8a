"""Runs page: the store's run history; select several runs to overlay one of their recorded series and to
compare their configurations side by side (only the keys that differ); export the plot to PNG and its
data to CSV. Selecting a single run makes it the context's run (the Users page browses its model).
While a selected run is running and the page is shown, its curves are re-read every POLL_MS.

Every metric column names its protocol ("NDCG@10 [full]", "[popularity-100]"): sampled figures alone
mislead.
"""

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.plots import add_curve, export_csv, export_png, make_plot
from engine.data.run_records import get_run, list_runs, run_series
from engine.data.store_errors import StoreError
from engine.evaluation.metrics import protocol_label
from engine.experiments.stored_run import can_resume

SHOWN_METRICS = ("NDCG@10", "HR@10", "MRR@10")
FIXED_COLUMNS = ("Run", "Started", "Dataset", "Status", "k", "Configuration")
TAIL_COLUMNS = ("Duration", "Device", "Version")
DEFAULT_SERIES = "retrain · NDCG@10"  # a prefix: the protocol label follows
POLL_MS = 2000  # a running run records its points about every second: a faster poll redraws nothing new


def config_summary(config: dict) -> str:
    """One line: the keys a reader compares first."""
    return (f"K={config.get('candidate_lengths')} T={config.get('max_length')} L={config.get('num_layers')} "
            f"D={config.get('embedding_dim')} {config.get('mode')} {config.get('loss')} "
            f"lr={config.get('lr')} seed={config.get('seed')}")


def test_metrics(run) -> dict[str, dict[str, float]]:
    """{protocol label: {metric: value}} of a finished run's test targets (engine.stored_run's record)."""
    return (run.metrics or {}).get("test") or {}


def metric_columns(runs) -> list[tuple[str, str]]:
    """(protocol label, metric) pairs present in any run's test metrics, full ranking first."""
    labels = sorted({label for run in runs for label in test_metrics(run)},
                    key=lambda label: (label != "full", label))
    return [(label, name) for label in labels for name in SHOWN_METRICS]


def series_names(frame, config: dict) -> dict[str, tuple[str, str, str]]:
    """{display name: (phase, name, per)} of a run's recorded series; ranking metrics carry the run's
    protocol label, so that runs measured differently never share a curve name, and a loss recorded per
    step and per epoch gives two curves."""
    label = protocol_label(config.get("protocol", "full"), config.get("eval_negatives", 100))
    names = {}
    for phase, name, per in frame[["phase", "name", "per"]].drop_duplicates().itertuples(index=False):
        if "@" in name:
            display = f"{phase} · {name} [{label}]"
        else:
            display = f"{phase} · {name}" + (" (epoch mean)" if per == "epoch" else "")
        names[display] = (phase, name, per)
    return names


def differing_keys(configs: list[dict]) -> list[str]:
    """The configuration keys whose values differ between the runs (all keys for a single run)."""
    keys = sorted({key for config in configs for key in config})
    if len(configs) < 2:
        return keys
    return [key for key in keys if len({repr(config.get(key)) for config in configs}) > 1]


class RunsPage(QWidget):
    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.runs = []  # engine.data.schema.Run rows, as listed (detached: the session is closed)
        self.resumable: set[int] = set()  # ids of listed runs that ended unfinished with a checkpoint
        self._series_cache = {}  # run id -> DataFrame of run_series; a finished run's series never change
        self.curves = {}  # run id -> PlotDataItem of the chosen series
        self._series_names = {}  # run id -> {display name: (phase, name, per)}
        self.poll_timer = QTimer(self)
        self.poll_timer.setInterval(POLL_MS)
        self.poll_timer.timeout.connect(self._poll)
        self._build()
        context.store_changed.connect(self._on_store_changed)
        context.runs_changed.connect(self.refresh)
        self.refresh()

    def _build(self) -> None:
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.series_combo = QComboBox()
        self.series_combo.setMinimumContentsLength(16)
        self.series_combo.currentTextChanged.connect(self._on_series_changed)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("continue the selected interrupted run from its last checkpoint")
        self.resume_button.clicked.connect(self._on_resume_clicked)
        png, csv = QPushButton("Export PNG…"), QPushButton("Export CSV…")
        png.clicked.connect(self._on_export_png_clicked)
        csv.clicked.connect(self._on_export_csv_clicked)
        top = QHBoxLayout()
        for widget in (self.refresh_button, self.resume_button, QLabel("Series:"), self.series_combo):
            top.addWidget(widget)
        top.addStretch(1)
        top.addWidget(png)
        top.addWidget(csv)

        self.table = QTableWidget()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.itemSelectionChanged.connect(self._on_selection_changed)
        self.table.itemClicked.connect(self._announce_selected_run)
        self.plot = make_plot("Selected runs", "step / epoch", "value")
        self.diff_table = QTableWidget()
        self.diff_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(self.plot)
        lower.addWidget(self.diff_table)
        lower.setStretchFactor(0, 3)
        lower.setStretchFactor(1, 2)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(lower)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)

    # ------------------------------------------------------------------ history

    @Slot()
    def _on_store_changed(self) -> None:
        self._series_cache.clear()
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        """Reloads the run history (one Session for this action), keeping the selection."""
        selected = self.selected_run_ids()
        if self.context.sessions is None:
            self.runs = []
        else:
            with self.context.sessions() as session:
                self.runs = list_runs(session)
        self.resumable = {run.id for run in self.runs if can_resume(self.context.store, run.id, run.status)}
        for run in self.runs:  # a run that is still going (or resumed) may get more points
            if run.status == "running" or run.id in self.resumable:
                self._series_cache.pop(run.id, None)
        for run_id in selected:  # Refresh re-reads what is shown: a run that finished since has more points
            self._series_cache.pop(run_id, None)
        metrics = metric_columns(self.runs)
        headers = list(FIXED_COLUMNS) + [f"{name} [{label}]" for label, name in metrics] + list(TAIL_COLUMNS)
        self.table.blockSignals(True)
        self.table.clear()
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setRowCount(len(self.runs))
        for row, run in enumerate(self.runs):
            status = run.status + (" · resumable" if run.id in self.resumable else "")
            values = [str(run.id), dt.datetime.fromtimestamp(run.started_at).strftime("%Y-%m-%d %H:%M"),
                      run.dataset_name, status, "" if run.chosen_length is None else str(run.chosen_length),
                      config_summary(run.config or {})]
            for label, name in metrics:
                value = test_metrics(run).get(label, {}).get(name)
                values.append("" if value is None else f"{value:.4f}")
            values += ["" if run.seconds is None else f"{run.seconds:.1f} s", run.device, run.version]
            for column, text in enumerate(values):
                item = QTableWidgetItem(text)
                if run.error:
                    item.setToolTip(run.error[-2000:])
                self.table.setItem(row, column, item)
            if run.id in selected:
                self.table.selectRow(row)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.blockSignals(False)
        self._on_selection_changed()
        self._announce_selected_run()

    @Slot()
    def _announce_selected_run(self) -> None:
        """Selects the one selected run in the context again, though it is already the context's run: it
        may have changed state since (finished, saved its model), which the Users page has to see."""
        ids = self.selected_run_ids()
        if len(ids) == 1 and ids[0] == self.context.run_id:  # else the selection change has selected it
            self.context.select_run(ids[0])

    def selected_run_ids(self) -> list[int]:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.runs[row].id for row in rows if row < len(self.runs)]

    def select_runs(self, run_ids: list[int]) -> None:
        self.table.clearSelection()
        mode = self.table.selectionMode()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for row, run in enumerate(self.runs):
            if run.id in run_ids:
                self.table.selectRow(row)
        self.table.setSelectionMode(mode)

    # ------------------------------------------------------------------ selection

    @Slot()
    def _on_selection_changed(self) -> None:
        ids = self.selected_run_ids()
        self.resume_button.setEnabled(len(ids) == 1 and ids[0] in self.resumable)
        if self.context.sessions is not None:
            missing = [run_id for run_id in ids if run_id not in self._series_cache]
            if missing:
                with self.context.sessions() as session:
                    for run_id in missing:
                        self._series_cache[run_id] = run_series(session, run_id)
        configs = {run.id: run.config or {} for run in self.runs}
        self._series_names = {run_id: series_names(self._series_cache[run_id], configs.get(run_id, {}))
                              for run_id in ids}
        names = sorted({name for names in self._series_names.values() for name in names})
        current = self.series_combo.currentText()
        default = next((name for name in names if name.startswith(DEFAULT_SERIES)), names[0] if names else "")
        self.series_combo.blockSignals(True)
        self.series_combo.clear()
        self.series_combo.addItems(names)
        if names:
            self.series_combo.setCurrentText(current if current in names else default)
        self.series_combo.blockSignals(False)
        self._show_curves()
        self._show_config_diff(ids)
        self._update_poll()
        if len(ids) == 1 and ids[0] != self.context.run_id:
            self.context.select_run(ids[0])

    def _selected_running(self) -> list[int]:
        running = {run.id for run in self.runs if run.status == "running"}
        return [run_id for run_id in self.selected_run_ids() if run_id in running]

    def _update_poll(self) -> None:
        if self.isVisible() and self._selected_running():
            if not self.poll_timer.isActive():
                self.poll_timer.start()
        else:
            self.poll_timer.stop()

    @Slot()
    def _poll(self) -> None:
        running = self._selected_running()
        if not running or self.context.sessions is None:
            self.poll_timer.stop()
            return
        try:
            with self.context.sessions() as session:
                ended = any(get_run(session, run_id).status != "running" for run_id in running)
        except StoreError:  # deleted meanwhile
            ended = True
        if ended:  # its row changes too (status, metrics): reload the history
            self.refresh()
            return
        for run_id in running:
            self._series_cache.pop(run_id, None)
        self._on_selection_changed()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._update_poll()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self.poll_timer.stop()

    @Slot(str)
    def _on_series_changed(self, _text: str) -> None:
        self._show_curves()

    def _show_curves(self) -> None:
        # The overlay is rebuilt on selection or series change, Refresh and each poll of a running run.
        for curve in self.curves.values():
            self.plot.removeItem(curve)
        self.curves = {}
        key = self.series_combo.currentText()
        self.plot.getPlotItem().setTitle(key)
        for index, run_id in enumerate(self.selected_run_ids()):
            if key not in self._series_names.get(run_id, {}):
                continue
            phase, name, per = self._series_names[run_id][key]
            frame = self._series_cache[run_id]
            points = frame[(frame["phase"] == phase) & (frame["name"] == name) & (frame["per"] == per)]
            if points.empty:
                continue
            self.curves[run_id] = add_curve(self.plot, f"run {run_id}", index, symbol="o" if len(points) < 50 else None)
            self.curves[run_id].setData(points["step"].to_numpy(float), points["value"].to_numpy(float))

    def _show_config_diff(self, ids: list[int]) -> None:
        runs = [run for run in self.runs if run.id in ids]
        configs = [run.config or {} for run in runs]
        keys = differing_keys(configs)
        self.diff_table.clear()
        self.diff_table.setRowCount(len(keys))
        self.diff_table.setColumnCount(len(runs))
        self.diff_table.setHorizontalHeaderLabels([f"run {run.id}" for run in runs])
        self.diff_table.setVerticalHeaderLabels(keys)
        for row, key in enumerate(keys):
            for column, config in enumerate(configs):
                self.diff_table.setItem(row, column, QTableWidgetItem(str(config.get(key, ""))))

    @Slot()
    def _on_resume_clicked(self) -> None:
        ids = self.selected_run_ids()
        if len(ids) == 1 and ids[0] in self.resumable:
            self.context.resume_requested.emit(ids[0])

    # ------------------------------------------------------------------ export

    def export_png(self, path: str) -> None:
        export_png(self.plot, path)

    def export_csv(self, path: str) -> int:
        return export_csv(self.plot, path)

    @Slot()
    def _on_export_png_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export plot", "runs.png", "PNG (*.png)")
        if path:
            self.export_png(path)

    @Slot()
    def _on_export_csv_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export plot data", "runs.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)


def main() -> None:
    """A quick look: `python -m app.pages.runs_page [store URL]` (default: the user's store)."""
    import sys

    from PySide6.QtWidgets import QApplication

    from app.context import AppContext
    from engine.data.store import default_store_url

    app = QApplication(sys.argv)
    page = RunsPage(AppContext(sys.argv[1] if len(sys.argv) > 1 else default_store_url()))
    page.resize(1200, 800)
    page.show()
    sys.exit(app.exec())


if __name__ == "__main__":
    main()
