"""UsersPage: loads a model bundle (the selected run's, or one opened from disk) on a worker thread and wires
the user list, history and top-N widgets to it; exports, progress and messages. Also load_task, the load itself."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.engine_job import EngineJob
from app.pages.users.history_view import HistoryView
from app.pages.users.recommendation_table import RecommendationTable
from app.pages.users.user_list import UserList
from app.pages.users.what_if_view import WhatIfView
from app.theme import repolish
from app.widgets import open_error


def candidate_weights_text(weights: dict) -> str:
    return ", ".join(f"k={k}: {w:.3f}" for k, w in sorted(weights.items(), key=lambda kv: int(kv[0])))


def load_task(path=None, sessions=None, run_id: int | None = None):
    """The background task of a load: bundle (from a path, or the run's), user table, candidate weights."""

    def task(observer):
        from engine.serving.bundle import load_bundle
        from engine.serving.recommend import user_table

        weights = {}
        if run_id is not None:
            from engine.cli.model_commands import bundle_for_run
            from engine.data.run_records import run_series

            with sessions() as session:  # this thread's own Session
                source = bundle_for_run(session, run_id)
                series = run_series(session, run_id)
            for name, points in series[series["name"].str.startswith("weight/k=")].groupby("name"):
                weights[name.split("=", 1)[1]] = float(points["value"].iloc[-1])
        else:
            source = Path(path)
        observer.check()
        bundle = load_bundle(source)
        observer.check()
        table = user_table(bundle.model, bundle.data, observer=observer)
        model = bundle.model
        if not weights and len(model.shape.candidate_lengths) > 1:
            values = model.candidate_weights().detach().cpu().tolist()
            weights = {str(k): float(w) for k, w in zip(model.shape.candidate_lengths, values)}
        return bundle, table, weights, run_id

    return task


class UsersPage(QWidget):
    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.bundle = None  # engine.serving.bundle.Bundle being browsed
        self.users = None  # its user_table DataFrame
        self.recommendations = None  # engine.serving.recommend.Recommendations shown
        self.source_run_id: int | None = None
        self._job: EngineJob | None = None
        self._job_kind = ""
        self._load_kind = ""  # "bundle" (opened by path) or "run" (the selected run's): what the load was
        self._pending = None  # a load asked for while another job runs: started when it ends
        # (run id, its status, failed) of the last load of a run. A run's model can appear after it was asked
        # for (it was still training, or resumed): a change of status reloads it, and showing the page
        # retries a load that failed.
        self._run_attempt: tuple[int, str | None, bool] | None = None
        self._build()
        context.run_selected.connect(self._on_run_changed)
        context.store_changed.connect(self._on_store_changed)
        self._set_busy(False)

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        # a bundle is a folder or a .zip: one button, a menu for the two kinds
        self.open_button = QToolButton()
        self.open_button.setText("Open bundle…")
        self.open_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.open_button)
        menu.addAction("Bundle folder…", self._on_open_folder_clicked)
        menu.addAction("Bundle .zip…", self._on_open_zip_clicked)
        self.open_button.setMenu(menu)
        self.source_label = QLabel("No model: select a finished run on the Runs page, or open a bundle.")
        self.info_label = QLabel("")
        self.info_label.setWordWrap(True)  # one line of weights and metrics set the window's minimum width
        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(200)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        top = QHBoxLayout()
        top.addWidget(self.open_button)
        top.addWidget(self.source_label, 1)
        top.addWidget(self.progress)
        top.addWidget(self.cancel_button)

        self.user_list = UserList()
        self.user_list.current_changed.connect(self._on_user_changed)

        self.history_view = HistoryView()

        self.n_spin = QSpinBox()
        self.n_spin.setRange(1, 500)
        self.n_spin.setValue(10)
        self.n_spin.valueChanged.connect(self._on_options_changed)
        self.exclude_check = QCheckBox("Exclude history")
        self.exclude_check.setChecked(True)
        self.exclude_check.toggled.connect(self._on_options_changed)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self._on_export_clicked)
        self.export_all_button = QPushButton("Export all users…")
        self.export_all_button.clicked.connect(self._on_export_all_clicked)
        options = QHBoxLayout()
        for widget in (QLabel("Top N:"), self.n_spin, self.exclude_check):
            options.addWidget(widget)
        options.addStretch(1)
        options.addWidget(self.export_button)
        options.addWidget(self.export_all_button)
        self.top_n = RecommendationTable()
        recommendations = QWidget()
        column = QVBoxLayout(recommendations)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(options)
        column.addWidget(self.top_n, 1)

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.history_view)
        self.what_if_view = WhatIfView()
        self.tabs = QTabWidget()  # the model's top-N, and what each candidate window alone would give
        self.tabs.addTab(recommendations, "Top N")
        self.tabs.addTab(self.what_if_view, "What if")
        right.addWidget(self.tabs)
        right.setStretchFactor(1, 3)
        right.setCollapsible(1, False)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.user_list)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)  # the style's 11 px: at 800x500 the page would scroll for them
        layout.addLayout(top)
        layout.addWidget(self.info_label)
        layout.addWidget(self.message_label)
        layout.addWidget(splitter, 1)

    # ------------------------------------------------------------------ loading

    def open_bundle(self, path: str | Path) -> None:
        """Loads the bundle folder or .zip at `path` on the worker thread (what "Open bundle…" does)."""
        self._load(("bundle", str(path)))

    def open_run(self, run_id: int) -> None:
        """Loads the bundle a run saved (the context's selected run)."""
        self._run_attempt = (run_id, self._run_status(run_id), False)
        self._load(("run", run_id))

    def _run_status(self, run_id: int) -> str | None:
        from engine.data.run_records import get_run
        from engine.data.store_errors import StoreError

        if self.context.sessions is None:
            return None
        try:
            with self.context.sessions() as session:
                return get_run(session, run_id).status
        except StoreError:  # no such run: the load says so
            return None

    def _run_failed(self) -> None:
        if self._load_kind == "run" and self._run_attempt is not None:
            self._run_attempt = (*self._run_attempt[:2], True)

    def _load(self, request) -> None:
        if self._job is not None:  # one task per page: the newest request wins, after the running one ends
            self._pending = request
            self._job.cancel()
            return
        kind, value = request
        if kind == "none":  # a load that was cancelled and not replaced
            return
        if kind == "run":
            if self.context.sessions is None:
                return
            task = load_task(sessions=self.context.sessions, run_id=value)
            what = f"run {value}"
        else:
            task = load_task(path=value)
            what = Path(value).name
        self._show_message(f"Loading {what}…")
        self._load_kind = kind
        self.progress.setRange(0, 0)  # busy: loading reports no steps
        self._start(task, "load", what)

    def _start(self, task, kind: str, what: str) -> None:
        from engine.data.store_errors import StoreError
        from engine.serving.bundle import BundleError
        from engine.serving.recommend import RecommendError

        job = EngineJob(task, (BundleError, StoreError, RecommendError, OSError), self)
        job.progressed.connect(self.progress.setValue)
        job.succeeded.connect(self._on_job_succeeded)
        job.failed.connect(self._on_job_failed)
        job.cancelled.connect(self._on_job_cancelled)
        self._job, self._job_kind, self._job_what = job, kind, what
        self._set_busy(True)
        job.start()

    def _finish_job(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            job.wait()
            job.deleteLater()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self._set_busy(False)
        if self._pending is not None:
            request, self._pending = self._pending, None
            self._load(request)

    @Slot(object)
    def _on_job_succeeded(self, result) -> None:
        kind, what = self._job_kind, self._job_what
        if kind == "load" and self._pending is None:
            self._show_bundle(*result)
            self._show_message("")
        elif kind == "export":
            self._show_message(f"Wrote {result} rows to {what}")
        self._finish_job()

    @Slot(str, str)
    def _on_job_failed(self, message: str, details: str) -> None:
        kind, what = self._job_kind, self._job_what
        if kind == "load" and self._pending is None:
            self._clear()
            self.source_label.setText(f"No model: {what} could not be opened.")
            self._show_message(f"Cannot open {what}: {message}", error=True, details=details)
            self._run_failed()
            if self._load_kind == "bundle":  # asked for by name: say so in a dialog (a run selection only here)
                self.error_box = open_error(self, "Cannot open the model bundle", message,  # names the bundle
                                            details=details or None)
        elif kind == "export":
            self._show_message(f"Cannot export: {message}", error=True, details=details)
        self._finish_job()

    @Slot()
    def _on_job_cancelled(self) -> None:
        if self._pending is None:
            self._show_message("Cancelled.")
            if self._job_kind == "load":
                self._run_failed()
        self._finish_job()

    def is_busy(self) -> bool:
        return self._job is not None

    def _set_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        loaded = self.bundle is not None
        self.export_all_button.setEnabled(loaded and not busy)
        self.export_button.setEnabled(self.recommendations is not None)

    def _show_message(self, text: str, error: bool = False, details: str = "") -> None:
        self.message_label.setText(text)
        self.message_label.setProperty("role", "error" if error else "")  # the theme's error style
        repolish(self.message_label)
        self.message_label.setToolTip(details)

    def restyle(self) -> None:
        """Draws what the page painted itself again in the current theme's colours (the theme was switched)."""
        self.history_view.restyle()
        self.top_n.restyle()
        self.what_if_view.restyle()

    def shutdown(self) -> None:
        """Cancels a running load or export and waits for its thread; does nothing when idle."""
        self._pending = None
        if self._job is not None:
            self._job.cancel()
            self._job.wait(30_000)

    # ------------------------------------------------------------------ the model and its users

    def _clear(self) -> None:
        self.bundle, self.users, self.recommendations, self.source_run_id = None, None, None, None
        self.info_label.setText("")
        self.user_list.clear()
        self._show_recommendations(None)

    def _show_bundle(self, bundle, users, weights: dict, run_id) -> None:
        self._clear()
        self.bundle, self.users, self.source_run_id = bundle, users, run_id
        data = bundle.data
        where = f"run {run_id}" if run_id is not None else str(bundle.path)
        self.source_label.setText(f"<b>{where}</b> · {data.name}: {data.n_users} users, {data.n_items} items")
        parts = [f"chosen short-term length k = {bundle.chosen_length}"]
        if weights:
            parts.append(f"candidate weights {candidate_weights_text(weights)}")
        full = (bundle.metrics or {}).get("test", {}).get("full", {})
        parts += [f"test {name} [full] = {full[name]:.4f}" for name in ("HR@10", "NDCG@10") if name in full]
        self.info_label.setText(" · ".join(parts))
        self.user_list.show_users(users)
        self.n_spin.setMaximum(max(1, data.n_items))
        self._set_busy(self.is_busy())
        if len(users):
            self.select_user(users["user"].iloc[0])

    def user_ids_shown(self) -> list[str]:
        """The external ids of the user table's rows, in their shown (filtered, sorted) order."""
        return self.user_list.user_ids_shown()

    def select_user(self, user_id) -> bool:
        """Selects the user with this external id in the table (which shows their recommendations)."""
        return self.user_list.select(user_id)

    @Slot()
    def _on_user_changed(self) -> None:
        self._show_user()

    @Slot()
    def _on_options_changed(self, *_args) -> None:
        self._show_user()

    def current_user_id(self):
        if self.bundle is None:
            return None
        return self.user_list.current_user_id()

    def _show_user(self) -> None:
        from engine.serving.recommend import RecommendError, recommend

        user = self.current_user_id()
        if user is None:
            self._show_recommendations(None)
            return
        try:  # one user's recommendations take a few ms: on the GUI thread, no job needed
            rec = recommend(self.bundle.model, self.bundle.data, user, self.n_spin.value(),
                            self.exclude_check.isChecked())
        except RecommendError as error:
            self._show_message(str(error), error=True)
            self._show_recommendations(None)
            return
        self._show_recommendations(rec)
        self._show_what_if(user)

    def _show_what_if(self, user) -> None:
        from engine.serving.recommend import RecommendError
        from engine.serving.what_if import what_if

        if self.bundle.what_if is None:
            self.what_if_view.show_unavailable()
            return
        try:  # a forward pass per candidate for one user: a few ms
            self.what_if_view.show_what_if(what_if(self.bundle, self.bundle.data, user, self.n_spin.value()))
        except RecommendError as error:
            self.what_if_view.show_unavailable(str(error))

    # ------------------------------------------------------------------ one user's recommendations

    def _show_recommendations(self, rec) -> None:
        self.recommendations = rec
        self.export_button.setEnabled(rec is not None)
        if rec is None:
            self.history_view.clear()
            self.top_n.clear()
            self.what_if_view.clear()
            return
        self.history_view.show_history(rec)
        self.top_n.show_recommendations(rec)

    # ------------------------------------------------------------------ export

    def export_recommendations(self, path: str | Path) -> int:
        """Writes the shown top-N (Recommendations.to_frame) to a CSV; returns the number of rows."""
        frame = self.recommendations.to_frame()
        frame.to_csv(path, index=False)
        return len(frame)

    def export_all(self, path: str | Path) -> None:
        """Writes every user's top-N to a CSV on the worker thread, with progress and Cancel."""
        if self.bundle is None or self._job is not None:
            return
        from engine.serving.recommend import recommend_all_to_csv

        model, data, n, exclude = self.bundle.model, self.bundle.data, self.n_spin.value(), self.exclude_check.isChecked()
        path = Path(path)
        self._show_message(f"Exporting the top {n} of {data.n_users} users to {path}…")
        self.progress.setRange(0, 100)
        self._start(lambda observer: recommend_all_to_csv(model, data, path, n, exclude, observer), "export",
                    str(path))

    @Slot()
    def _on_export_clicked(self) -> None:
        if self.recommendations is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export recommendations",
                                              f"user-{self.recommendations.user_id}.csv", "CSV (*.csv)")
        if path:
            try:
                rows = self.export_recommendations(path)
            except OSError as error:
                self._show_message(f"Cannot export: {error}", error=True)
                return
            self._show_message(f"Wrote {rows} rows to {path}")

    @Slot()
    def _on_export_all_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export all users' recommendations", "recommendations.csv",
                                              "CSV (*.csv)")
        if path:
            self.export_all(path)

    @Slot()
    def _on_cancel_clicked(self) -> None:
        if self._job is not None:
            self._job.cancel()

    @Slot()
    def _on_open_folder_clicked(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open model bundle folder")
        if path:
            self.open_bundle(path)

    @Slot()
    def _on_open_zip_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model bundle", "", "Model bundles (*.zip);;All files (*)")
        if path:
            self.open_bundle(path)

    # ------------------------------------------------------------------ context

    @Slot(int)
    def _on_run_changed(self, run_id: int) -> None:
        attempt = self._run_attempt
        if attempt is not None and attempt[0] == run_id and (
                self._load_kind == "bundle" or attempt[1] == self._run_status(run_id)):
            return  # selected again (a click, Refresh) unchanged, or a bundle opened by path since replaced it
        self.open_run(run_id)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._load_kind == "run" and self._run_attempt is not None and self._job is None:
            run_id, status, failed = self._run_attempt
            if failed or self._run_status(run_id) != status:
                self.open_run(run_id)

    @Slot()
    def _on_store_changed(self) -> None:
        if self.source_run_id is not None:  # that run belonged to the store just closed
            self._pending = None
            if self._job is not None:
                self._pending = ("none", None)  # discard what the running load returns
                self._job.cancel()
            self._clear()
            self.source_label.setText("No model: select a finished run on the Runs page, or open a bundle.")
        self._run_attempt = None

