"""The import wizard on the real widgets: live preview, mapping override, import, errors, cancel."""

from __future__ import annotations

from PySide6.QtWidgets import QWizard

from app.import_job import ImportJob
from app.import_wizard import ImportWizard
from engine.data.store import list_datasets


def dataset_names(context) -> list[str]:
    with context.sessions() as session:
        return [d.name for d in list_datasets(session)]


def open_wizard(qtbot, context, path) -> ImportWizard:
    wizard = ImportWizard(context)
    qtbot.addWidget(wizard)
    wizard.show()
    wizard.file_page.path_edit.setText(str(path))
    assert wizard.button(QWizard.NextButton).isEnabled()
    wizard.next()  # to the mapping page: its preview runs on entry
    return wizard


def test_preview_shows_the_parsed_rows_and_detected_mapping(qtbot, app_context, planted_csv):
    wizard = open_wizard(qtbot, app_context, planted_csv)
    page = wizard.mapping_page
    qtbot.waitUntil(lambda: page.preview_model.rowCount() > 0)
    model = page.preview_model
    headers = [model.horizontalHeaderItem(c).text() for c in range(model.columnCount())]
    assert headers == ["user", "item", "timestamp"]
    assert model.item(0, 0).text() == "u1"
    assert page.role_combos["item"].currentText() == "item"
    assert page.role_combos["time"].currentText() == "timestamp"


def test_choosing_no_time_column_updates_the_preview_live(qtbot, app_context, planted_csv):
    wizard = open_wizard(qtbot, app_context, planted_csv)
    page = wizard.mapping_page
    combo = page.role_combos["time"]
    combo.setCurrentText("(none)")
    with qtbot.waitSignal(page.preview_updated):
        combo.activated.emit(combo.currentIndex())
    model = page.preview_model
    assert [model.horizontalHeaderItem(c).text() for c in range(model.columnCount())] == ["user", "item"]
    assert page.options()["mapping"] == {"user": "user", "item": "item", "time": None, "rating": None}


def test_one_click_on_import_adds_and_selects_the_dataset_and_closes_the_wizard(qtbot, app_context,
                                                                               planted_csv):
    wizard = open_wizard(qtbot, app_context, planted_csv)
    qtbot.waitUntil(lambda: wizard.mapping_page.isComplete())
    wizard.next()
    page = wizard.run_page
    assert page.name_edit.text() == "planted"
    page.name_edit.setText("my log")
    page.min_user_spin.setValue(25)
    button = wizard.button(QWizard.FinishButton)
    assert button.text() == "Import" and button.isEnabled() and button is page.import_button
    with qtbot.waitSignal(wizard.finished, timeout=10_000):
        button.click()
    assert wizard.result() == QWizard.Accepted and not wizard.isVisible()
    assert dataset_names(app_context) == ["my log"]
    assert app_context.dataset_name == "my log"
    assert page.progress_bar.value() == 100
    assert page.report.users < 60  # the filter dropped users with fewer than 25 interactions


def test_a_bad_file_shows_the_engines_error_and_leaves_the_store_unchanged(qtbot, app_context, planted_csv,
                                                                              tmp_path):
    lines = planted_csv.read_text().splitlines()
    lines[400] = "u7,i3,not a time"  # beyond the preview's rows: only the import finds it
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    before = dataset_names(app_context)
    wizard = open_wizard(qtbot, app_context, bad)
    qtbot.waitUntil(lambda: wizard.mapping_page.isComplete())
    wizard.next()
    page = wizard.run_page
    page.import_button.click()
    qtbot.waitUntil(lambda: not wizard.job.is_running() and page.import_button.isEnabled(), timeout=10_000)
    assert "bad.csv" in page.status_label.text() and "timestamp" in page.status_label.text()
    assert wizard.isVisible() and page.report is None  # stays open, ready to try again
    assert dataset_names(app_context) == before


def test_an_unreadable_format_choice_shows_the_error_on_the_mapping_page(qtbot, app_context, planted_csv):
    wizard = open_wizard(qtbot, app_context, planted_csv)
    page = wizard.mapping_page
    with qtbot.waitSignal(page.preview_updated):
        page.format_combo.setCurrentIndex(page.format_combo.findData("parquet"))
    assert "planted.csv" in page.error_label.text()
    assert not page.isComplete()
    assert page.preview_model.rowCount() == 0


def test_a_cancelled_import_reports_cancelled_and_leaves_the_store_unchanged(qtbot, app_context, planted_csv):
    job = ImportJob(app_context.sessions, planted_csv, {"name": "never"})
    job.cancel()  # before the first engine check: the import stops at once and rolls back
    with qtbot.waitSignal(job.cancelled, timeout=10_000):
        job.start()
    assert job.wait()
    assert dataset_names(app_context) == []


def test_the_preview_shows_timestamps_as_dates(qtbot, app_context, tmp_path):
    path = tmp_path / "dated.csv"
    path.write_text("user,item,timestamp\nu1,i1,978300760\nu1,i2,978302109\n")
    wizard = open_wizard(qtbot, app_context, path)
    model = wizard.mapping_page.preview_model
    qtbot.waitUntil(lambda: model.rowCount() == 2)
    assert model.item(0, 2).text() == "2000-12-31 22:12:40"
    assert "978300760" in model.item(0, 2).toolTip()


def test_the_item_metadata_dialog_opens_in_the_interaction_files_folder(qtbot, monkeypatch, app_context,
                                                                         planted_csv):
    from PySide6.QtWidgets import QFileDialog

    asked = []
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        lambda parent, caption, folder="", *args: asked.append(folder) or ([], ""))
    wizard = ImportWizard(app_context, path=planted_csv)
    qtbot.addWidget(wizard)
    wizard.file_page._on_add_metadata_clicked()
    assert asked == [str(planted_csv.parent)]


def test_a_dropped_wizard_is_freed_at_once_not_later_by_the_garbage_collector(app_context):
    import gc
    import weakref

    gc.disable()  # a reference cycle would keep it until a collection, which could come mid-way a Qt call
    try:
        wizard = ImportWizard(app_context)
        freed = weakref.ref(wizard)
        del wizard
        assert freed() is None
    finally:
        gc.enable()
