"""The Experiment page: the form is a view of RunConfig, validated by RunConfig itself."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from app.context import AppContext
from app.pages.experiment_page import INVALID_STYLE, ExperimentPage, available_devices
from app.pages.training_page import TrainingPage
from engine.core.config import RunConfig
from engine.core.presets import PRESETS, load_preset


@pytest.fixture
def context(tmp_path):
    context = AppContext(f"sqlite:///{tmp_path}/store.sqlite")
    context.dataset_name = "anything"  # Start's other condition; no run is started here
    yield context
    context.store.close()


@pytest.fixture
def page(qtbot, context):
    page = ExperimentPage(context)
    qtbot.addWidget(page)
    return page


def test_the_form_shows_the_context_configuration(page, context):
    assert page.fields["max_length"].value() == context.config.max_length
    assert page.fields["candidate_lengths"].texts() == [str(k) for k in context.config.candidate_lengths]
    assert RunConfig(**page.values()) == context.config
    assert page.error_label.text() == ""


def test_a_valid_edit_updates_the_context(qtbot, page, context):
    with qtbot.waitSignal(context.config_changed):
        page.fields["embedding_dim"].setValue(48)
    assert context.config.embedding_dim == 48 and context.config_error is None


def test_a_candidate_longer_than_T_shows_the_message_and_disables_start(qtbot, page, context):
    training = TrainingPage(context)
    qtbot.addWidget(training)
    assert training.start_button.isEnabled()
    page.fields["max_length"].setValue(3)  # quick demo's K goes up to 8
    assert "candidate_lengths" in page.error_label.text() and "max_length" in page.error_label.text()
    assert page.highlighted("candidate_lengths").styleSheet() == INVALID_STYLE
    assert not training.start_button.isEnabled()
    assert context.config.max_length == 20  # the last valid configuration is kept
    page.fields["max_length"].setValue(30)
    assert page.error_label.text() == "" and page.highlighted("candidate_lengths").styleSheet() == ""
    assert training.start_button.isEnabled() and context.config.max_length == 30
    training.shutdown()


def test_an_unreadable_candidate_length_is_named(page, context):
    page.fields["candidate_lengths"].list.item(0).setText("five")
    assert "'five' is not a whole number" in page.error_label.text()
    assert context.config_error is not None


def test_candidate_lengths_can_be_added_and_removed(page, context):
    panel = page.fields["candidate_lengths"]
    panel._on_add_clicked()
    assert context.config.candidate_lengths == [1, 2, 4, 8, 16]
    panel.list.setCurrentRow(0)
    panel._on_remove_clicked()
    assert context.config.candidate_lengths == [2, 4, 8, 16]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_fills_the_form(page, context, name):
    page.preset_combo.setCurrentText(name)
    page.preset_combo.activated.emit(page.preset_combo.currentIndex())
    assert context.config == load_preset(name)
    assert page.values()["max_length"] == load_preset(name).max_length
    assert page.preset_combo.currentText() == name


def test_a_saved_configuration_reloads_into_the_form(page, context, tmp_path):
    page.fields["seed"].setValue(7)
    page.fields["mode"].setCurrentText("sampled")
    path = tmp_path / "run.toml"
    page.save_config(str(path))
    page.apply_preset("paper-ml1m")
    assert context.config.seed != 7 or context.config.mode != "sampled"
    assert page.load_config(str(path))
    assert context.config.seed == 7 and context.config.mode == "sampled"
    assert page.fields["mode"].currentText() == "sampled"
    assert context.config == RunConfig.load_toml(path)


def test_the_length_choice_settings_are_fields_that_reach_the_context(page, context):
    assert [page.fields["strategy"].itemText(i) for i in range(page.fields["strategy"].count())] == [
        "search", "exhaustive"]
    page.fields["strategy"].setCurrentText("exhaustive")
    page.fields["seeds"].setValue(3)
    page.fields["confirm_epochs"].setValue(2)
    page.fields["search_warmup_epochs"].setValue(1)
    assert (context.config.strategy, context.config.seeds, context.config.confirm_epochs,
            context.config.search_warmup_epochs) == ("exhaustive", 3, 2, 1)
    assert "AutoMLP-s" in page.fields["strategy"].toolTip()


def test_the_length_choice_settings_round_trip_through_a_saved_file(page, context, tmp_path):
    page.fields["strategy"].setCurrentText("exhaustive")
    page.fields["seeds"].setValue(4)
    page.fields["confirm_epochs"].setValue(3)
    page.fields["search_warmup_epochs"].setValue(1)
    path = tmp_path / "choice.toml"
    page.save_config(str(path))
    page.apply_preset("paper-ml1m")
    assert page.load_config(str(path))
    assert (page.fields["strategy"].currentText(), page.fields["seeds"].value(),
            page.fields["confirm_epochs"].value(), page.fields["search_warmup_epochs"].value()) == (
        "exhaustive", 4, 3, 1)
    assert context.config == RunConfig.load_toml(path)


def test_a_warm_up_as_long_as_the_search_is_named_and_highlighted(page, context):
    page.fields["search_warmup_epochs"].setValue(context.config.search_epochs)
    assert page.error_label.text().startswith("search_warmup_epochs:")
    assert page.fields["search_warmup_epochs"].styleSheet() == INVALID_STYLE
    assert context.config_error


def test_a_bad_configuration_file_is_reported_inline(page, context, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('max_length = "long"\n')
    before = context.config
    assert not page.load_config(str(path))
    assert "max_length" in page.error_label.text()
    assert context.config == before


def test_the_device_list_offers_cuda_only_with_a_gpu(page):
    import torch

    items = [page.fields["device"].itemText(i) for i in range(page.fields["device"].count())]
    assert items == available_devices()
    assert ("cuda" in items) == torch.cuda.is_available()


def test_auto_lengths_are_shown_as_auto_and_kept_as_auto(qtbot, context):
    from engine.core.config import RunConfig
    page = ExperimentPage(context)
    qtbot.addWidget(page)
    context.set_config(RunConfig())
    assert page.fields["max_length"].text() == "auto"
    assert page.fields["candidate_lengths"].auto.isChecked()
    assert page.values()["max_length"] == "auto" and page.values()["candidate_lengths"] == "auto"


def test_unticking_auto_candidates_gives_the_listed_lengths(qtbot, context):
    from engine.core.config import RunConfig
    page = ExperimentPage(context)
    qtbot.addWidget(page)
    context.set_config(RunConfig(max_length=50, candidate_lengths=[2, 4]))
    page.fields["candidate_lengths"].auto.setChecked(True)
    assert context.config.candidate_lengths == "auto"
    page.fields["candidate_lengths"].auto.setChecked(False)
    assert context.config.candidate_lengths == [2, 4]


def test_the_page_says_what_auto_becomes_on_the_selected_dataset(qtbot, app_context, tmp_path):
    from tests.app.store_data import store_planted_dataset
    name = store_planted_dataset(app_context.store.session, tmp_path, min_length=6, max_length=12)
    page = ExperimentPage(app_context)
    qtbot.addWidget(page)
    app_context.set_config(RunConfig())
    app_context.select_dataset(name)
    assert "On planted: T = 16, K = [1, 2, 3, 5, 10], loss ce" in page.fitted_label.text()
    app_context.set_config(RunConfig(precision="bf16"))
    assert "loss ce in bf16" in page.fitted_label.text()
    app_context.set_config(RunConfig(max_length=20, candidate_lengths=[2, 4], loss="ce"))
    assert page.fitted_label.text() == ""


def test_the_presets_box_shows_the_matching_preset_and_custom_after_an_edit(page, context):
    assert page.preset_combo.currentText() == "quick-demo"  # the context's starting configuration
    page.fields["seed"].setValue(context.config.seed + 1)
    assert page.preset_combo.currentText() == "custom"
    page.apply_preset("default")
    assert page.preset_combo.currentText() == "default"


def test_the_form_is_restored_in_a_later_session(qtbot, page, context, tmp_path):
    page.fields["embedding_dim"].setValue(40)
    page.fields["mode"].setCurrentText("sampled")
    later = AppContext(f"sqlite:///{tmp_path}/store.sqlite")  # a fresh start: the preset's configuration
    try:
        restored = ExperimentPage(later)
        qtbot.addWidget(restored)
        assert later.config.embedding_dim == 40 and later.config.mode == "sampled"
        assert restored.fields["embedding_dim"].value() == 40
    finally:
        later.store.close()


def wheel(widget, steps: int = 1) -> None:
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, widget.mapToGlobal(centre), QPoint(), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
                        False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_scrolls_the_form_and_changes_a_field_only_when_it_has_focus(qtbot, page):
    page.resize(700, 400)  # shorter than the form: it scrolls
    page.show()
    qtbot.waitExposed(page)
    spin, combo = page.fields["embedding_dim"], page.fields["loss"]
    before = spin.value(), combo.currentText()
    page.preset_combo.setFocus()
    wheel(spin, -1)
    wheel(combo, -1)
    assert (spin.value(), combo.currentText()) == before
    assert spin.focusPolicy() == Qt.FocusPolicy.StrongFocus
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus)
    wheel(spin, 1)
    assert spin.value() == before[0] + 1


def test_the_fields_do_not_stretch_across_a_wide_window(qtbot, page):
    page.resize(1800, 900)
    page.show()
    qtbot.waitExposed(page)
    assert max(widget.width() for widget in page.fields.values()) <= 480
    assert page.fields["seed"].width() <= 320


def test_the_fields_of_every_group_start_in_one_column(qtbot, page):
    page.resize(1280, 800)
    page.show()
    qtbot.waitExposed(page)
    lefts = {widget.mapTo(page, QPoint(0, 0)).x() for widget in page.fields.values()
             if widget is not page.fields["candidate_lengths"]}
    assert len(lefts) == 1


def test_the_learning_rate_schedule_is_fields_that_reach_the_context(page, context):
    page.fields["lr_warmup_epochs"].setValue(3)
    page.fields["lr_decay"].setCurrentText("cosine")
    assert (context.config.lr_warmup_epochs, context.config.lr_decay) == (3, "cosine")


def test_settle_epochs_and_training_windows_are_fields_that_reach_the_context(page, context):
    page.fields["settle_epochs"].setValue(2)
    page.fields["training_windows"].setCurrentText("last")
    assert (context.config.settle_epochs, context.config.training_windows) == (2, "last")


def test_relative_token_maps_are_a_field_that_reaches_the_context(page, context):
    page.fields["token_maps"].setCurrentText("relative")
    assert context.config.token_maps == "relative"


def test_the_loss_precision_field_offers_auto_fp32_and_bf16_and_reaches_the_context(page, context):
    box = page.fields["precision"]
    assert [box.itemText(i) for i in range(box.count())] == ["auto", "fp32", "bf16"]
    box.setCurrentText("bf16")
    assert context.config.precision == "bf16"


def test_relative_token_maps_outside_the_causal_mode_are_named_and_highlighted(page, context):
    page.fields["token_maps"].setCurrentText("relative")
    page.fields["mode"].setCurrentText("sampled")
    assert page.error_label.text().startswith("token_maps:")
    assert page.fields["token_maps"].styleSheet() == INVALID_STYLE
    assert context.config_error
