"""Runs page: the store's run history as a comparison table (settings and final metrics, sortable), and a
dashboard of the runs selected in it (one plot per recorded series, each run one colour, smoothed), and a
single selected run's test metrics by history length and its length choice (verdict, every seed's
softmax(alpha), validation NDCG@10 per k);
export of the plots to PNG and of their data to CSV. Selecting a single run makes it the context's run
(the Users page browses its model). While a selected run is running and the page is shown, its curves
are re-read every POLL_MS.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QPushButton, QSplitter, QVBoxLayout, QWidget

from app.length_choice_view import LengthChoicePanel
from app.pages.runs.by_length import LengthBucketsTable
from app.pages.runs.comparison import ComparisonTable
from app.pages.runs.dashboard import DashboardRun, RunDashboard
from engine.data.run_records import get_run, list_runs, run_series
from engine.data.store import list_datasets
from engine.data.store_errors import StoreError
from engine.experiments.run_comparison import colour_slots, differing_keys, run_label
from engine.experiments.stored_run import can_resume

POLL_MS = 2000  # a running run records its points about every second: a faster poll redraws nothing new


class RunsPage(QWidget):
    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.runs = []  # engine.data.schema.Run rows, as listed (detached: the session is closed)
        self.resumable: set[int] = set()  # ids of listed runs that ended unfinished with a checkpoint
        self._series_cache = {}  # run id -> DataFrame of run_series; a finished run's series never change
        self.colours: dict[int, int] = {}  # selected run id -> its colour index in every plot
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
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("continue the selected interrupted run from its last checkpoint")
        self.resume_button.clicked.connect(self._on_resume_clicked)
        png, csv = QPushButton("Export PNG…"), QPushButton("Export CSV…")
        png.setToolTip("the plots shown, as one picture")
        csv.setToolTip("the raw points of the plots shown: plot, run, x, y")
        png.clicked.connect(self._on_export_png_clicked)
        csv.clicked.connect(self._on_export_csv_clicked)
        top = QHBoxLayout()
        top.addWidget(self.refresh_button)
        top.addWidget(self.resume_button)
        top.addStretch(1)
        top.addWidget(png)
        top.addWidget(csv)

        self.table = ComparisonTable()
        self.table.itemSelectionChanged.connect(self._on_selection_changed)
        self.table.itemClicked.connect(self._announce_selected_run)
        self.dashboard = RunDashboard()
        self.by_length = LengthBucketsTable()
        self.length_choice = LengthChoicePanel()
        single = QSplitter(Qt.Orientation.Horizontal)  # the one selected run's details, side by side
        single.addWidget(self.by_length)
        single.addWidget(self.length_choice)
        single.setSizes([400, 600])
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(single)
        splitter.addWidget(self.dashboard)
        splitter.setSizes([170, 200, 430])  # in proportion: the table's rows above, most of the height for plots
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
        stored = set()
        if self.context.sessions is None:
            self.runs = []
        else:
            with self.context.sessions() as session:
                self.runs = list_runs(session)
                stored = {dataset.name for dataset in list_datasets(session)}
        # A run whose dataset was deleted has nothing to resume on, checkpoint or not.
        self.resumable = {run.id for run in self.runs
                          if run.dataset_name in stored and can_resume(self.context.store, run.id, run.status)}
        for run in self.runs:  # a run that is still going (or resumed) may get more points
            if run.status == "running" or run.id in self.resumable:
                self._series_cache.pop(run.id, None)
        for run_id in selected:  # Refresh re-reads what is shown: a run that finished since has more points
            self._series_cache.pop(run_id, None)
        self.table.blockSignals(True)
        self.table.show_runs(self.runs, self.resumable)
        self.table.select_runs(selected)
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
        return self.table.selected_run_ids()

    def select_runs(self, run_ids: list[int]) -> None:
        self.table.select_runs(run_ids)

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
        self.colours = colour_slots(self.colours, sorted(ids))  # oldest run first: the order of the legends
        self.table.highlight(self.colours)
        self._show_curves(sorted(ids))
        runs = {run.id: run for run in self.runs}
        single = runs[ids[0]].metrics if len(ids) == 1 and ids[0] in runs else None
        self.by_length.show_run(single)
        self.length_choice.show_run(single)
        self._update_poll()
        if len(ids) == 1 and ids[0] != self.context.run_id:
            self.context.select_run(ids[0])

    def _show_curves(self, ids: list[int]) -> None:
        runs = {run.id: run for run in self.runs}
        selected = [runs[run_id] for run_id in ids if run_id in runs and run_id in self._series_cache]
        keys = differing_keys([run.config or {} for run in selected])
        self.dashboard.set_runs([
            DashboardRun(run.id, f"run {run.id} · {run_label(run.config or {}, keys, run.dataset_name)}",
                         self.colours[run.id], self._series_cache[run.id], run.config or {})
            for run in selected])

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

    @Slot()
    def _on_resume_clicked(self) -> None:
        ids = self.selected_run_ids()
        if len(ids) == 1 and ids[0] in self.resumable:
            self.context.resume_requested.emit(ids[0])

    # ------------------------------------------------------------------ export

    def export_png(self, path: str) -> None:
        self.dashboard.export_png(path)

    def export_csv(self, path: str) -> int:
        return self.dashboard.export_csv(path)

    @Slot()
    def _on_export_png_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export plots", "runs.png", "PNG (*.png)")
        if path:
            self.export_png(path)

    @Slot()
    def _on_export_csv_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export plot data", "runs.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)


def main() -> None:
    """A quick look: `python -m app.pages.runs [store URL]` (default: the user's store)."""
    import sys

    from PySide6.QtWidgets import QApplication

    from app.context import AppContext
    from engine.data.store import default_store_url

    app = QApplication(sys.argv)
    page = RunsPage(AppContext(sys.argv[1] if len(sys.argv) > 1 else default_store_url()))
    page.resize(1280, 800)
    page.show()
    sys.exit(app.exec())
