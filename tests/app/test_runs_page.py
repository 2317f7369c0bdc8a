"""The Runs page over a store holding two finished runs."""

from __future__ import annotations

import csv

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from app.context import AppContext
from app.pages.runs import RunsPage
from engine.core.events import Observer
from engine.core.presets import quick_demo
from engine.data.run_records import append_series, create_run, finish_run
from engine.data.store import open_store
from engine.experiments.stored_run import run_on_dataset
from tests.app.store_data import store_planted_dataset

TINY = dict(candidate_lengths=[1, 2, 4], max_length=10, embedding_dim=16, sequence_hidden=16,
            channel_hidden=32, search_epochs=1, retrain_epochs=2, device="cpu")


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    """One store with two finished runs (seeds 0 and 1) for the whole module: runs cost seconds."""
    folder = tmp_path_factory.mktemp("runs")
    url = f"sqlite:///{folder}/store.sqlite"
    store = open_store(url)
    name = store_planted_dataset(store.session, folder)
    for seed in (0, 1):
        run_on_dataset(store, name, quick_demo().replace(seed=seed, **TINY), Observer())
    store.close()
    return url


@pytest.fixture
def context(store_url):
    context = AppContext(store_url)
    yield context
    context.store.close()


@pytest.fixture
def page(qtbot, context):
    page = RunsPage(context)
    qtbot.addWidget(page)
    return page


def column(page, header):
    headers = [page.table.horizontalHeaderItem(c).text() for c in range(page.table.columnCount())]
    return [page.table.item(row, headers.index(header)).text() for row in range(page.table.rowCount())]


def test_the_history_lists_finished_runs_with_protocol_labelled_metrics(page):
    assert column(page, "Status")[-2:] == ["finished", "finished"]
    assert all(k in ("1", "2", "4") for k in column(page, "k"))
    assert all(float(v) >= 0 for v in column(page, "NDCG@10 [full]"))
    assert all(float(v) >= 0 for v in column(page, "HR@10 [popularity-100]"))
    assert all(v == "cpu" for v in column(page, "Device"))


def test_selecting_one_run_selects_it_in_the_context(qtbot, page, context):
    run_id = page.runs[1].id
    with qtbot.waitSignal(context.run_selected):
        page.select_runs([run_id])
    assert context.run_id == run_id


def test_two_selected_runs_overlay_their_curves_and_show_the_differing_keys(page):
    ids = [run.id for run in page.runs[-2:]]
    page.select_runs(ids)
    assert page.series_combo.currentText() == "retrain · NDCG@10 [full]"
    assert sorted(page.curves) == sorted(ids)
    for curve in page.curves.values():
        x, y = curve.getData()
        assert list(x) == [1, 2]
    keys = [page.diff_table.verticalHeaderItem(r).text() for r in range(page.diff_table.rowCount())]
    assert keys == ["seed"]
    page.series_combo.setCurrentText("search · weight/k=4")
    assert all(len(curve.getData()[0]) > 0 for curve in page.curves.values())


def test_the_plot_exports_to_png_and_its_data_to_csv(page, tmp_path):
    page.select_runs([run.id for run in page.runs[-2:]])
    page.export_png(str(tmp_path / "runs.png"))
    image = QImage(str(tmp_path / "runs.png"))
    assert image.width() == 1200 and not image.isNull()
    rows = page.export_csv(str(tmp_path / "runs.csv"))
    with open(tmp_path / "runs.csv", newline="") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["curve", "x", "y"] and len(lines) == rows + 1 == 5
    assert {line[0] for line in lines[1:]} == {f"run {run.id}" for run in page.runs[-2:]}


def test_a_new_run_appears_when_the_context_says_runs_changed(page, context):
    before = page.table.rowCount()
    run_on_dataset(context.store, "planted", quick_demo().replace(seed=2, **TINY), Observer())
    context.runs_changed.emit()
    assert page.table.rowCount() == before + 1
    assert page.runs[0].config["seed"] == 2  # newest first


# ---------------------------------------------------------------- a run that is still training

def start_run(context, epochs: int) -> int:
    """A run recorded as running (as a training process leaves it), with `epochs` retrain epochs so far."""
    with context.sessions() as session:
        run_id = create_run(session, "planted", quick_demo().replace(**TINY).to_dict(), "cpu")
    record_epochs(context, run_id, range(1, epochs + 1))
    return run_id


def record_epochs(context, run_id: int, epochs) -> None:
    with context.sessions() as session:
        append_series(session, run_id, [("retrain", epoch, "NDCG@10", 0.01 * epoch, "epoch") for epoch in epochs])


def shown_epochs(page, run_id: int) -> list[float]:
    assert page.series_combo.currentText().startswith("retrain · NDCG@10")
    return list(page.curves[run_id].getData()[0])


@pytest.fixture
def empty_page(qtbot, app_context):
    page = RunsPage(app_context)
    qtbot.addWidget(page)
    return page


def test_refresh_rereads_the_curves_of_a_run_that_finished_since_it_was_shown(empty_page, app_context):
    run_id = start_run(app_context, epochs=2)
    empty_page.refresh()
    empty_page.select_runs([run_id])
    assert shown_epochs(empty_page, run_id) == [1, 2]
    record_epochs(app_context, run_id, range(3, 11))
    with app_context.sessions() as session:
        finish_run(session, run_id, 2, {}, 1.0)
    empty_page.refresh_button.click()
    assert shown_epochs(empty_page, run_id) == list(range(1, 11))
    assert column(empty_page, "Status") == ["finished"]


def test_a_shown_running_run_redraws_by_itself_until_it_ends(qtbot, empty_page, app_context):
    empty_page.poll_timer.setInterval(50)  # the test's patience, not the page's 2 s
    empty_page.show()
    run_id = start_run(app_context, epochs=2)
    empty_page.refresh()
    empty_page.select_runs([run_id])
    assert empty_page.poll_timer.isActive()
    record_epochs(app_context, run_id, range(3, 6))
    qtbot.waitUntil(lambda: shown_epochs(empty_page, run_id) == [1, 2, 3, 4, 5], timeout=5000)
    with app_context.sessions() as session:
        finish_run(session, run_id, 2, {}, 1.0)
    qtbot.waitUntil(lambda: column(empty_page, "Status") == ["finished"], timeout=5000)
    assert not empty_page.poll_timer.isActive()


def test_a_hidden_page_does_not_poll(empty_page, app_context):
    run_id = start_run(app_context, epochs=1)
    empty_page.show()
    empty_page.refresh()
    empty_page.select_runs([run_id])
    assert empty_page.poll_timer.isActive()
    empty_page.hide()
    assert not empty_page.poll_timer.isActive()


def test_refresh_and_a_click_on_the_selected_run_select_it_again_in_the_context(qtbot, empty_page, app_context):
    run_id = start_run(app_context, epochs=1)
    empty_page.refresh()
    empty_page.select_runs([run_id])
    assert app_context.run_id == run_id
    with qtbot.waitSignal(app_context.run_selected) as selected:  # it may have finished since: others reload
        empty_page.refresh_button.click()
    assert selected.args == [run_id]
    empty_page.show()
    rect = empty_page.table.visualItemRect(empty_page.table.item(0, 0))
    with qtbot.waitSignal(app_context.run_selected) as selected:
        qtbot.mouseClick(empty_page.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert selected.args == [run_id]
