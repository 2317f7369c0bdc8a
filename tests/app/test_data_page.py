"""The Data page on the real widgets: the datasets with statistics and histogram, demo, delete."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.demo import DEMO_NAME
from app.pages.data_page import DataPage, length_histogram
from engine.data.importers import import_file
from engine.data.store import list_datasets


def import_csv(context, path, name, min_user=3):
    with context.sessions() as session:
        return import_file(session, path, name=name, min_user_interactions=min_user)


@pytest.fixture
def page(qtbot, app_context):
    page = DataPage(app_context)
    qtbot.addWidget(page)
    page.show()
    yield page
    page.shutdown()


def test_lists_each_dataset_with_its_statistics(page, app_context, planted_csv):
    import_csv(app_context, planted_csv, "b")
    import_csv(app_context, planted_csv, "a", min_user=30)
    app_context.datasets_changed.emit()
    model = page.datasets_model
    assert page.dataset_names() == ["a", "b"]
    header = [model.horizontalHeaderItem(c).text() for c in range(model.columnCount())]
    assert header == ["Name", "Users", "Items", "Interactions", "Density", "Time span"]
    assert model.item(1, 1).text() == "60"
    assert int(model.item(0, 1).text()) < 60
    assert model.item(1, 5).text() == "1970-01-12 – 1970-01-12"


def test_the_histogram_counts_every_user_of_the_selected_dataset(page, app_context, planted_csv):
    import_csv(app_context, planted_csv, "planted")
    app_context.datasets_changed.emit()
    assert app_context.dataset_name == "planted"  # the only dataset is selected
    x, y = page.histogram_curve.getData()
    assert y.sum() == 60 and len(x) == len(y) + 1
    assert x[0] == 19.5 and x[-1] == 40.5  # one bin per length, 20..40
    assert page.popular_model.rowCount() == 10


def test_selecting_a_row_selects_the_dataset_in_the_context(qtbot, page, app_context, planted_csv):
    import_csv(app_context, planted_csv, "a")
    import_csv(app_context, planted_csv, "b")
    app_context.datasets_changed.emit()
    with qtbot.waitSignal(app_context.dataset_selected) as signal:
        page.datasets_view.selectRow(1)
    assert signal.args == ["b"] and app_context.dataset_name == "b"
    assert "<b>b</b>" in page.summary_label.text()


def test_an_empty_store_offers_the_demo_dataset_and_imports_it(qtbot, page, app_context):
    assert page.empty_panel.isVisible() and page.demo_button.isEnabled()
    page.demo_button.click()
    qtbot.waitUntil(lambda: page.dataset_names() == [DEMO_NAME], timeout=15_000)
    assert app_context.dataset_name == DEMO_NAME
    assert page.datasets_model.item(0, 1).text() == "400"
    assert not page.empty_panel.isVisible()


@pytest.mark.parametrize("answer, remaining", [(QMessageBox.Yes, ["b"]), (QMessageBox.No, ["a", "b"])])
def test_delete_asks_for_confirmation(monkeypatch, page, app_context, planted_csv, answer, remaining):
    import_csv(app_context, planted_csv, "a")
    import_csv(app_context, planted_csv, "b")
    app_context.datasets_changed.emit()
    app_context.select_dataset("a")
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: asked.append(args[2]) or answer)
    page.delete_button.click()
    assert asked and "'a'" in asked[0]
    with app_context.sessions() as session:
        assert [d.name for d in list_datasets(session)] == remaining
    assert page.dataset_names() == remaining


def test_length_histogram_uses_wider_bins_for_long_ranges():
    edges, counts = length_histogram(np.arange(1, 1001), max_bins=50)
    assert len(counts) == 50 and counts.sum() == 1000


def test_shutdown_during_the_demo_import_leaves_no_thread_running(page):
    page.import_demo()
    job = page._demo_job
    page.shutdown()  # what the main window's closeEvent calls
    assert not job.is_running()


def test_the_import_button_opens_the_wizard_with_an_empty_file_field(qtbot, page):
    qtbot.mouseClick(page.import_button, Qt.MouseButton.LeftButton)
    assert page.wizard.file_page.path_edit.text() == ""
    page.wizard.close()


def test_an_empty_histogram_says_no_data_instead_of_showing_empty_axes(page, app_context, planted_csv):
    item = page.histogram.getPlotItem()
    assert page.histogram_empty.isVisible() and "no data" in page.histogram_empty.textItem.toPlainText()
    assert not item.getAxis("bottom").isVisible() and not item.getAxis("left").isVisible()
    import_csv(app_context, planted_csv, "b")
    app_context.datasets_changed.emit()
    assert not page.histogram_empty.isVisible()
    assert item.getAxis("bottom").isVisible() and item.getAxis("left").isVisible()


def test_the_demo_dataset_has_dates_titles_and_says_where_it_came_from(qtbot, page, app_context):
    from app.demo import DEMO_SOURCE

    page.demo_button.click()
    qtbot.waitUntil(lambda: page.dataset_names() == [DEMO_NAME], timeout=15_000)
    stats = page.stats[DEMO_NAME]
    assert stats["source"] == DEMO_SOURCE and "demo" in page.summary_label.text()
    span = page.datasets_model.item(0, 5).text()
    assert span.startswith("2024-01-01") and "1970" not in span
    assert all(popular["title"] for popular in stats["popular_items"])
