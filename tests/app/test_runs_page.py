"""The Runs page: the comparison table over a store holding two finished runs, the dashboard of the runs
selected in it, and a run that is still training."""

from __future__ import annotations

import csv

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QImage, QPalette

from app.context import AppContext
from app.pages.runs import RunsPage
from app.pages.runs.comparison import metric_header
from app.plots import colour
from app.theme import palette
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


NDCG = "retrain · NDCG@10 [full]"


def column(page, header):
    table = page.table
    return [table.item(row, table.column_of(header)).text() for row in range(table.rowCount())]


def two_runs(page) -> list[int]:
    """The ids of the module's two runs (seeds 0 and 1), oldest first."""
    return sorted(run.id for run in page.runs if run.config["seed"] in (0, 1))[:2]


def test_the_history_lists_finished_runs_with_protocol_labelled_metrics(page):
    assert column(page, "Status")[-2:] == ["finished", "finished"]
    assert all(k in ("1", "2", "4") for k in column(page, "k"))
    assert all(float(v) >= 0 for v in column(page, metric_header("full", "NDCG@10")))
    assert all(float(v) >= 0 for v in column(page, metric_header("popularity-100", "HR@10")))
    assert all(v == "cpu" for v in column(page, "Device"))


def test_the_table_shows_the_runs_settings_as_columns(page):
    assert sorted(column(page, "seed")[-2:]) == ["0", "1"]
    assert column(page, "candidate_lengths")[-1] == "1,2,4"


def test_selecting_one_run_selects_it_in_the_context(qtbot, page, context):
    run_id = page.runs[1].id
    with qtbot.waitSignal(context.run_selected):
        page.select_runs([run_id])
    assert context.run_id == run_id


def test_one_selected_run_shows_its_test_metrics_by_history_length_against_the_long_term_module(page):
    first, second = two_runs(page)
    page.select_runs([first])
    table = page.by_length
    assert not table.isHidden() and table.rowCount() >= 1
    assert table.item(0, 0).text() in ("1-5", "6-10", "11-20")
    stored = next(run for run in page.runs if run.id == first).metrics["by_length"]
    assert [int(table.item(row, 1).text()) for row in range(table.rowCount())] == [row["users"] for row in stored]
    assert table.item(0, 5).text().startswith(("+", "-"))
    page.select_runs([first, second])
    assert table.isHidden()


def test_two_selected_runs_overlay_two_curves_per_plot_with_a_legend_naming_both(page):
    first, second = two_runs(page)
    page.select_runs([first, second])
    dashboard = page.dashboard
    assert len(dashboard.panels) > 5 and NDCG in dashboard.panels
    for title in dashboard.panels:
        assert dashboard.legend_names(title) == [f"run {first} · seed=0", f"run {second} · seed=1"]
        assert dashboard.curve(title, first) is not None and dashboard.curve(title, second) is not None
    assert list(dashboard.curve(NDCG, first).getData()[0]) == [1, 2]


def test_a_plots_axes_name_its_metric_with_the_protocol_and_the_epoch(page):
    page.select_runs(two_runs(page))
    item = page.dashboard.panels[NDCG].getPlotItem()
    assert item.getAxis("left").labelText == "validation NDCG@10 (full ranking)"
    assert item.getAxis("bottom").labelText == "retrain epoch"


def test_a_run_has_one_colour_in_every_plot_and_in_its_table_row(page):
    first, second = two_runs(page)
    page.select_runs([first, second])
    for run_id in (first, second):
        expected = QColor(colour(page.colours[run_id]))
        for title in page.dashboard.panels:
            assert page.dashboard.curve(title, run_id).opts["pen"].color().rgb() == expected.rgb()
        row = next(row for row in range(page.table.rowCount()) if page.table.run_id_at(row) == run_id)
        assert page.table.item(row, 0).data(Qt.ItemDataRole.DecorationRole).rgb() == expected.rgb()
    assert page.colours[first] != page.colours[second]


def test_the_filter_keeps_only_the_plots_whose_title_matches(page):
    page.select_runs(two_runs(page))
    page.dashboard.filter_edit.setText("ndcg@10|weight")
    assert list(page.dashboard.panels) == ["search · weight/k=1", "search · weight/k=2", "search · weight/k=4", NDCG]
    page.dashboard.filter_edit.setText("NDCG@10 [(")  # not yet a regular expression: read as text
    assert list(page.dashboard.panels) == []


def test_the_comparison_table_highlights_the_key_that_differs_between_the_selected_runs(page):
    first, second = two_runs(page)
    page.select_runs([first])
    assert page.table.differing_headers() == []
    page.select_runs([first, second])
    assert page.table.differing_headers() == ["seed"]
    seed = page.table.column_of("seed")
    assert page.table.horizontalHeaderItem(seed).toolTip() == "differs between the selected runs"
    selected_rows = [row for row in range(page.table.rowCount()) if page.table.run_id_at(row) in (first, second)]
    assert all(page.table.item(row, seed).font().bold() for row in selected_rows)
    assert not any(page.table.item(row, page.table.column_of("lr")).font().bold() for row in selected_rows)


def test_the_highlighted_key_takes_the_link_colour_of_a_theme_chosen_later(page):
    page.select_runs(two_runs(page))
    page.table.setPalette(palette("dark"))  # as View > Dark theme gives the application's palette
    header = page.table.horizontalHeaderItem(page.table.column_of("seed"))
    assert header.foreground().color() == palette("dark").color(QPalette.ColorRole.Link)
    assert page.table.horizontalHeaderItem(page.table.column_of("lr")).data(Qt.ItemDataRole.ForegroundRole) is None


def test_the_plots_export_to_png_and_their_raw_data_to_csv(page, tmp_path):
    page.select_runs(two_runs(page))
    page.dashboard.filter_edit.setText("NDCG@10")
    page.export_png(str(tmp_path / "runs.png"))
    assert not QImage(str(tmp_path / "runs.png")).isNull()
    rows = page.export_csv(str(tmp_path / "runs.csv"))
    with open(tmp_path / "runs.csv", newline="") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["plot", "run", "x", "y"] and rows == 4 and len(lines) == 5  # 2 runs x 2 epochs
    assert {line[0] for line in lines[1:]} == {NDCG}
    assert {line[1] for line in lines[1:]} == set(page.dashboard.legend_names(NDCG))


def test_a_new_run_appears_when_the_context_says_runs_changed(page, context):
    before = page.table.rowCount()
    run_on_dataset(context.store, "planted", quick_demo().replace(seed=2, **TINY), Observer())
    context.runs_changed.emit()
    assert page.table.rowCount() == before + 1
    assert column(page, "seed")[0] == "2"  # newest first


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
    return list(page.dashboard.curve(NDCG, run_id).getData()[0])


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


def test_smoothing_changes_the_drawn_curve_and_leaves_the_raw_one_behind_it(empty_page, app_context):
    run_id = start_run(app_context, epochs=6)  # NDCG@10 rises 0.01 per epoch
    empty_page.refresh()
    empty_page.select_runs([run_id])
    dashboard = empty_page.dashboard
    raw = [0.01 * epoch for epoch in range(1, 7)]
    dashboard.smoothing_slider.setValue(0)
    assert list(dashboard.curve(NDCG, run_id).getData()[1]) == pytest.approx(raw)
    dashboard.smoothing_slider.setValue(90)
    smoothed = list(dashboard.curve(NDCG, run_id).getData()[1])
    assert smoothed[0] == pytest.approx(raw[0])  # debiased: the first point is not pulled towards 0
    assert smoothed[-1] < raw[-1] - 0.01  # a rising curve smoothed lags behind
    assert list(dashboard.curve(NDCG, run_id, raw=True).getData()[1]) == pytest.approx(raw)
    assert dashboard.curve(NDCG, run_id, raw=True).isVisible()


def test_clicking_a_header_sorts_the_runs_by_that_setting_as_numbers(qtbot, empty_page, app_context):
    with app_context.sessions() as session:
        for seed in (9, 10, 2):
            create_run(session, "planted", quick_demo().replace(seed=seed, **TINY).to_dict(), "cpu")
    empty_page.refresh()
    empty_page.show()
    table, seed = empty_page.table, empty_page.table.column_of("seed")
    assert column(empty_page, "seed") == ["2", "10", "9"]  # newest first
    header = table.horizontalHeader()
    position = header.sectionViewportPosition(seed) + header.sectionSize(seed) // 2
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(position, header.height() // 2))
    assert column(empty_page, "seed") == ["2", "9", "10"]
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(position, header.height() // 2))
    assert column(empty_page, "seed") == ["10", "9", "2"]
    run_id = table.run_id_at(0)  # the selection follows the sorted rows
    empty_page.select_runs([run_id])
    assert empty_page.selected_run_ids() == [run_id] and app_context.run_id == run_id


def test_the_plot_of_a_shown_running_run_grows_at_each_poll_until_the_run_ends(qtbot, empty_page, app_context):
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


# ---------------------------------------------------------------- a run's length choice


def test_one_selected_exhaustive_run_shows_its_verdict_and_each_lengths_score_with_error_bars(
        empty_page, app_context, tmp_path):
    name = store_planted_dataset(app_context.sessions, tmp_path)
    run_id, result = run_on_dataset(app_context.store, name,
                                    quick_demo().replace(strategy="exhaustive", seeds=2, **TINY), Observer())
    empty_page.refresh()
    empty_page.select_runs([run_id])
    panel = empty_page.length_choice
    choice = result.length_choice
    assert not panel.isHidden() and choice["verdict"] in panel.verdict_label.text()
    assert panel.verdict_label.property("undecided") is (not choice["decided"])
    bars = panel.scores.error_bars
    assert list(bars.opts["y"]) == pytest.approx([choice["scores"][str(k)]["mean"] for k in (1, 2, 4)])
    assert list(bars.opts["top"]) == pytest.approx([choice["scores"][str(k)]["spread"] for k in (1, 2, 4)])
    assert panel.weights_plot.isHidden()  # no search: no softmax(alpha)
    empty_page.select_runs([])
    assert panel.isHidden()


def _stored_choice(app_context, choice: dict) -> int:
    with app_context.sessions() as session:
        run_id = create_run(session, "planted", quick_demo().replace(**TINY).to_dict(), "cpu")
        finish_run(session, run_id, choice["chosen_length"], {"length_choice": choice}, 1.0)
    return run_id


def test_one_selected_run_searched_under_several_seeds_overlays_their_curves_and_says_it_is_undecided(
        empty_page, app_context):
    searches = [{"seed": seed, "chosen_length": k, "final_weights": {"1": 0.2, "2": 0.3, "4": 0.5},
                 "weight_steps": [1, 11, 21], "weight_history": [[0.3, 0.3, 0.4]] * 3}
                for seed, k in ((0, 4), (1, 2))]
    verdict = "k = 4, undecided: the seeds disagree (k = 4: 1, k = 2: 1 of 2 seeds)"
    run_id = _stored_choice(app_context, {
        "strategy": "search", "chosen_length": 4, "decided": False, "verdict": verdict, "candidates": [1, 2, 4],
        "seeds": [0, 1], "searches": searches})
    empty_page.refresh()
    empty_page.select_runs([run_id])
    panel = empty_page.length_choice
    assert panel.verdict_label.text() == f"chosen length, UNDECIDED: {verdict}"
    assert panel.verdict_label.property("undecided") is True
    assert panel.weights.trials == [0, 1]
    assert all(len(curve.getData()[0]) == 3 for curve in panel.weights.curves.values())
    assert len(panel.weights.curves) == 6  # three lengths, two seeds
    assert panel.scores_plot.isHidden()  # nothing retrained alone: no scores
