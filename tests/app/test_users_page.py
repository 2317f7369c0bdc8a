"""The Users page over a tiny trained model: history with its window mark, the top-N with its parts and
bars, the test item, CSV export, refused bundles, and a run selected through the store."""

from __future__ import annotations

import pandas as pd
import pytest
from PySide6.QtCore import QRect, Qt

from app.pages.users import UsersPage
from app.pages.users.cells import MARK_ROLE
from app.pages.users.recommendation_table import (
    BAR_COLUMN,
    MOVED_COLUMN,
    PARTS_ROLE,
    TOP_COLUMNS,
    bar_segments,
)
from engine.core.config import RunConfig
from engine.core.events import Observer
from engine.data.run_records import add_artifact, create_run, finish_run
from engine.experiments.stored_run import run_on_dataset
from engine.serving.bundle import bundle_digest, save_bundle
from tests.app.store_data import store_planted_dataset
from tests.engine.tiny_run import tiny_run

LOAD_TIMEOUT = 20_000


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    result, data = tiny_run()
    return save_bundle(result, data, tmp_path_factory.mktemp("bundle") / "b")


@pytest.fixture
def page(qtbot, app_context):
    page = UsersPage(app_context)
    qtbot.addWidget(page)
    yield page
    page.shutdown()


def open_and_wait(qtbot, page, path) -> None:
    page.open_bundle(path)
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=LOAD_TIMEOUT)


def column(table, name: str) -> list[str]:
    index = TOP_COLUMNS.index(name)
    return [table.item(row, index).text() for row in range(table.rowCount())]


def test_opening_a_bundle_lists_its_users_and_shows_k(qtbot, page, bundle_path):
    open_and_wait(qtbot, page, bundle_path)
    assert page.bundle is not None
    assert page.user_list.model.rowCount() == page.bundle.data.n_users
    assert f"k = {page.bundle.chosen_length}" in page.info_label.text()
    assert page.message_label.text() == ""


def test_typing_filters_the_users_and_enter_selects(qtbot, page, bundle_path):
    open_and_wait(qtbot, page, bundle_path)
    user = str(page.bundle.data.user_ids[5])
    qtbot.keyClicks(page.user_list.filter_edit, user)
    assert user in page.user_ids_shown()
    assert all(user.lower() in shown.lower() for shown in page.user_ids_shown())
    page.user_list.filter_edit.returnPressed.emit()
    assert str(page.recommendations.user_id) == user


def test_the_history_marks_exactly_the_last_k_items(qtbot, page, bundle_path):
    open_and_wait(qtbot, page, bundle_path)
    assert page.select_user(page.bundle.data.user_ids[3])
    rec = page.recommendations
    table = page.history_view.table
    assert table.rowCount() == len(rec.history_ids)
    assert [table.item(row, 1).text() for row in range(table.rowCount())] == [str(i) for i in rec.history_ids]
    marked = [row for row in range(table.rowCount()) if table.item(row, 0).data(MARK_ROLE)]
    h = table.rowCount()
    assert marked == list(range(max(0, h - rec.window), h))
    assert f"k = {rec.window}" in page.history_view.window_label.text()


def test_the_top_n_has_n_rows_whose_parts_sum_to_the_score_each_with_a_bar(qtbot, page, bundle_path):
    open_and_wait(qtbot, page, bundle_path)
    page.n_spin.setValue(7)
    page.select_user(page.bundle.data.user_ids[0])
    table = page.top_n.table
    assert table.rowCount() == 7
    for row, item in enumerate(page.recommendations.items):
        assert item.long + item.short + item.bias == pytest.approx(item.score, abs=1e-5)
        long, short = table.item(row, BAR_COLUMN).data(PARTS_ROLE)
        assert (long, short) == (item.long, item.short)
        shown = [float(table.item(row, TOP_COLUMNS.index(name)).text()) for name in ("Long", "Short", "Bias")]
        assert sum(shown) == pytest.approx(float(table.item(row, TOP_COLUMNS.index("Score")).text()), abs=2e-4)
    assert column(table, "Rank") == [str(r) for r in range(1, 8)]


def test_bar_segments_stack_short_on_the_end_of_long():
    rect = QRect(0, 0, 104, 20)
    (long_rect, long_name), (short_rect, short_name) = bar_segments(2.0, -1.0, rect, scale=3.0)
    assert (long_name, short_name) == ("long", "short")
    assert long_rect.left() == 52 and long_rect.right() > 52
    assert short_rect.right() == pytest.approx(long_rect.right(), abs=1) and short_rect.left() > 52


def test_the_test_item_is_marked_when_it_is_in_the_top_n(qtbot, page, bundle_path):
    open_and_wait(qtbot, page, bundle_path)
    page.n_spin.setValue(page.bundle.data.n_items)  # every candidate: the test item is listed
    page.select_user(page.bundle.data.user_ids[2])
    rec = page.recommendations
    assert rec.hit
    marked = [row for row in range(page.top_n.table.rowCount()) if page.top_n.table.item(row, 0).data(MARK_ROLE)]
    assert marked == [rec.target_rank]
    assert page.top_n.table.item(rec.target_rank, 1).text() == str(rec.target.item_id)
    assert f"ranked {rec.target_rank + 1}" in page.top_n.target_label.text() and "hit" in page.top_n.target_label.text()
    assert f"shares {rec.overlap} of" in page.top_n.summary_label.text()
    assert page.top_n.long_table.rowCount() == len(rec.long_term_items)


def test_the_shown_recommendations_export_to_csv(qtbot, page, bundle_path, tmp_path):
    open_and_wait(qtbot, page, bundle_path)
    page.select_user(page.bundle.data.user_ids[1])
    assert page.export_recommendations(tmp_path / "one.csv") == 10
    frame = pd.read_csv(tmp_path / "one.csv")
    assert list(frame["rank"]) == list(range(1, 11))
    assert [str(i) for i in frame["item"]] == [str(r.item_id) for r in page.recommendations.items]


def test_export_all_users_writes_every_users_top_n_on_the_worker(qtbot, page, bundle_path, tmp_path):
    open_and_wait(qtbot, page, bundle_path)
    page.n_spin.setValue(5)
    page.export_all(tmp_path / "all.csv")
    assert page.is_busy()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=LOAD_TIMEOUT)
    frame = pd.read_csv(tmp_path / "all.csv")
    assert len(frame) == 5 * page.bundle.data.n_users
    assert "Wrote" in page.message_label.text()


def test_a_corrupt_bundle_is_refused_and_the_page_stays_usable(qtbot, page, bundle_path, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in bundle_path.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "config.json").write_text("{ not json")
    open_and_wait(qtbot, page, broken)
    assert "corrupt" in page.message_label.text() and page.bundle is None
    assert page.top_n.table.rowCount() == 0 and page.user_list.model.rowCount() == 0
    open_and_wait(qtbot, page, bundle_path)
    assert page.bundle is not None and page.top_n.table.rowCount() == 10


def test_selecting_a_stored_run_loads_its_bundle(qtbot, page, app_context, tmp_path):
    name = store_planted_dataset(app_context.sessions, tmp_path, n_users=40, n_items=60, min_length=8,
                                 max_length=12)
    config = RunConfig(candidate_lengths=[1, 2, 4], max_length=10, embedding_dim=16, sequence_hidden=16,
                       channel_hidden=16, batch_size=32, search_epochs=1, retrain_epochs=1, eval_negatives=20,
                       device="cpu")
    run_id, result = run_on_dataset(app_context.store, name, config, Observer())
    app_context.select_run(run_id)
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=LOAD_TIMEOUT)
    assert page.source_run_id == run_id and f"run {run_id}" in page.source_label.text()
    assert f"k = {result.chosen_length}" in page.info_label.text()
    assert "candidate weights" in page.info_label.text()
    assert page.top_n.table.rowCount() == 10


def test_a_run_without_a_bundle_shows_why(qtbot, page, app_context):
    app_context.select_run(999)
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=LOAD_TIMEOUT)
    assert "run 999" in page.message_label.text() and page.bundle is None
    assert page.message_label.property("role") == "error"  # the theme's error style (light.qss, dark.qss)


def test_a_second_load_while_one_runs_replaces_it(qtbot, page, bundle_path, tmp_path):
    page.open_bundle(tmp_path / "missing")
    page.open_bundle(bundle_path)  # asked while the first is still loading: the newest wins
    qtbot.waitUntil(lambda: not page.is_busy() and page.bundle is not None, timeout=LOAD_TIMEOUT)
    assert page.message_label.text() == "" and page.top_n.table.rowCount() == 10


def test_changing_n_and_exclusion_recomputes_the_top_n(qtbot, page, bundle_path):
    open_and_wait(qtbot, page, bundle_path)
    page.select_user(page.bundle.data.user_ids[0])
    page.n_spin.setValue(4)
    assert page.top_n.table.rowCount() == 4
    page.exclude_check.setChecked(False)
    assert page.recommendations.exclude_history is False and page.top_n.table.rowCount() == 4


def test_users_sort_naturally_and_by_history_length(qtbot, page, bundle_path):
    open_and_wait(qtbot, page, bundle_path)
    shown = page.user_ids_shown()
    assert shown.index("u3") < shown.index("u29")
    page.user_list.view.sortByColumn(1, Qt.SortOrder.DescendingOrder)
    lengths = [int(page.user_list.proxy.index(row, 1).data()) for row in range(page.user_list.proxy.rowCount())]
    assert lengths == sorted(lengths, reverse=True)


def start_run(context) -> int:
    """A run recorded as running: it has saved no bundle yet."""
    with context.sessions() as session:
        return create_run(session, "planted", {}, "cpu")


def save_run_bundle(context, run_id: int, path, finish: bool = True) -> None:
    """What the end of a run records: its bundle, then (with `finish`) its status."""
    with context.sessions() as session:
        add_artifact(session, run_id, str(path), "bundle", bundle_digest(path))
        session.commit()
        if finish:
            finish_run(session, run_id, 2, {}, 1.0)


def test_a_run_selected_while_it_trains_loads_its_bundle_when_selected_again_after_it_finished(
        qtbot, page, app_context, bundle_path):
    run_id = start_run(app_context)
    app_context.select_run(run_id)
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=LOAD_TIMEOUT)
    assert "has no saved bundle" in page.message_label.text()
    save_run_bundle(app_context, run_id, bundle_path)
    app_context.select_run(run_id)  # the Runs page's Refresh, or a click on its row
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=LOAD_TIMEOUT)
    assert page.bundle is not None and page.source_run_id == run_id
    assert page.message_label.text() == ""


def test_selecting_the_loaded_run_again_does_not_reload_it(qtbot, page, app_context, bundle_path):
    run_id = start_run(app_context)
    save_run_bundle(app_context, run_id, bundle_path)
    app_context.select_run(run_id)
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=LOAD_TIMEOUT)
    loaded = page.bundle
    app_context.select_run(run_id)
    assert not page.is_busy() and page.bundle is loaded


def test_showing_the_page_retries_a_run_whose_load_failed(qtbot, page, app_context, bundle_path):
    run_id = start_run(app_context)
    app_context.select_run(run_id)  # while the page is hidden (another page is shown)
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=LOAD_TIMEOUT)
    assert page.bundle is None
    save_run_bundle(app_context, run_id, bundle_path, finish=False)  # status unchanged: only the retry sees it
    page.show()
    qtbot.waitUntil(lambda: not page.is_busy() and page.bundle is not None, timeout=LOAD_TIMEOUT)
    assert page.source_run_id == run_id


def test_showing_the_page_reloads_a_run_whose_status_changed(qtbot, page, app_context, bundle_path):
    run_id = start_run(app_context)
    save_run_bundle(app_context, run_id, bundle_path, finish=False)
    app_context.select_run(run_id)
    qtbot.waitUntil(lambda: not page.is_busy() and page.bundle is not None, timeout=LOAD_TIMEOUT)
    loaded = page.bundle
    with app_context.sessions() as session:
        finish_run(session, run_id, 2, {}, 1.0)
    page.show()
    qtbot.waitUntil(lambda: not page.is_busy() and page.bundle is not loaded, timeout=LOAD_TIMEOUT)
    assert page.bundle is not None


def test_a_bundle_opened_by_path_stays_when_the_selected_run_is_selected_again(qtbot, page, app_context,
                                                                                bundle_path):
    run_id = start_run(app_context)
    app_context.select_run(run_id)
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=LOAD_TIMEOUT)
    open_and_wait(qtbot, page, bundle_path)
    with app_context.sessions() as session:
        finish_run(session, run_id, 2, {}, 1.0)
    app_context.select_run(run_id)  # the Runs page's Refresh
    page.show()
    assert not page.is_busy() and page.bundle is not None and page.source_run_id is None


def test_at_1280_px_the_top_n_fits_without_a_sideways_scrollbar_and_explains_its_bars_and_moved(
        qtbot, window, bundle_path):
    from PySide6.QtWidgets import QApplication

    from app.theme import apply_theme

    apply_theme(QApplication.instance(), "light")  # the app's style and stylesheet: wider headers than bare Qt
    window.resize(1280, 820)
    window.show_page("Users")
    page = window.pages["Users"]
    open_and_wait(qtbot, page, bundle_path)
    for item in page.bundle.data.item_titles:  # long titles must not push the bars out of sight
        page.bundle.data.item_titles[item] = f"A very long item title that goes on and on, {item}"
    page.select_user(page.bundle.data.user_ids[4])
    qtbot.wait(50)
    table = page.top_n.table
    assert table.horizontalScrollBar().maximum() == 0
    assert page.top_n.long_table.horizontalScrollBar().maximum() == 0
    assert table.columnWidth(BAR_COLUMN) >= 100
    scale = page.top_n.parts_delegate.scale
    header = table.horizontalHeaderItem(BAR_COLUMN).text()
    assert f"{scale:.3g}" in header and f"{scale:.3g}" in page.top_n.scale_label.text()
    assert "long-term part alone" in table.horizontalHeaderItem(MOVED_COLUMN).toolTip()


def test_the_what_if_view_has_a_column_per_k_headed_by_its_weight_with_the_chosen_k_marked(qtbot, page,
                                                                                           bundle_path):
    from engine.serving.what_if import what_if

    open_and_wait(qtbot, page, bundle_path)
    view, bundle = page.what_if_view, page.bundle
    shown = what_if(bundle, bundle.data, page.current_user_id(), page.n_spin.value())
    table = view.table
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers[0].startswith("no short-term")
    assert len(headers) == 1 + len(bundle.what_if.candidate_lengths)
    for header, window in zip(headers[1:], shown.windows):
        assert header.startswith(f"k = {window.length}")
        assert f"softmax(α) {bundle.what_if.weights[window.length]:.3f}" in header
        assert ("(chosen)" in header) == (window.length == bundle.chosen_length)


def test_the_what_if_view_marks_brought_in_items_and_lists_pushed_out_ones(qtbot, page, bundle_path):
    from engine.serving.what_if import what_if

    open_and_wait(qtbot, page, bundle_path)
    bundle, table = page.bundle, page.what_if_view.table
    shown = what_if(bundle, bundle.data, page.current_user_id(), page.n_spin.value())
    for index, window in enumerate(shown.windows, start=1):
        cells = [table.item(r, index) for r in range(table.rowCount()) if table.item(r, index) is not None]
        marked = [c.text()[1:] for c in cells if c.data(MARK_ROLE)]
        pushed = [c.text()[1:] for c in cells if c.text().startswith("−")]
        assert marked == [str(i) for i in window.brought_in]
        assert pushed == [str(i) for i in window.pushed_out]


def test_a_bundle_without_what_if_models_says_so_instead_of_a_table(qtbot, page, bundle_path, tmp_path):
    import json
    import shutil

    copy = shutil.copytree(bundle_path, tmp_path / "old")
    info = json.loads((copy / "config.json").read_text())
    for name in list(info["files"]):
        if name.startswith("what_if."):
            del info["files"][name]
            (copy / name).unlink()
    del info["what_if"]
    (copy / "config.json").write_text(json.dumps(info))
    open_and_wait(qtbot, page, copy)
    assert page.bundle.what_if is None
    assert "no what-if models" in page.what_if_view.note.text()
    assert page.what_if_view.table.isHidden()
