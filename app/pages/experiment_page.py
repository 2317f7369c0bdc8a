"""Experiment page: a form bound to the run configuration (engine.core.config.RunConfig), with presets and
TOML save/load. Every edit rebuilds a RunConfig; RunConfig's own validation is the only rule book, and its
ConfigError (which names the key) is shown beside the form with the offending field highlighted. Valid
edits go to `context.set_config`, invalid ones to `context.set_config_error` so that Training refuses to
start.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.settings import load_run_config, save_run_config
from engine.core.config import (
    AUTO,
    LOSSES,
    LR_DECAYS,
    MODES,
    PRECISIONS,
    PROTOCOLS,
    SEARCH_ORDERS,
    STRATEGIES,
    TOKEN_MAPS,
    TRAINING_WINDOWS,
    ConfigError,
    RunConfig,
)
from engine.core.presets import PRESETS, load_preset
from engine.data.store import fitted_config
from engine.data.store_errors import StoreError
from engine.training.device import resolve_device, resolved_precision

INVALID_STYLE = "border: 2px solid #d62728;"
CUSTOM = "custom"  # the presets box when the form matches no preset
FIELD_WIDTH = 320  # a number or a choice needs no more; wider fields only move the eye
LIST_WIDTH = 480  # the candidate lengths: a list and two buttons

# (group, [(key, label, tooltip)]) in the order the form shows them; the symbols are the paper's.
GROUPS = (
    ("Architecture", (
        ("candidate_lengths", "Candidate lengths K", "short-term lengths the search chooses from"),
        ("max_length", "Sequence length T", "the last T items of a history are the model's input"),
        ("num_layers", "Layers L", "SRSMLP layers per module"),
        ("embedding_dim", "Embedding D", "item embedding size"),
        ("sequence_hidden", "Sequence hidden R_s", "hidden size of the sequence mixer"),
        ("channel_hidden", "Channel hidden R_c", "hidden size of the channel mixer"),
        ("dropout", "Dropout", ""),
        ("token_maps", "Token maps", "causal mode: positional, a weight for every pair of positions (the paper); "
                                     "relative, one weight per look-back shared by every position"),
    )),
    ("Objective and optimisation", (
        ("loss", "Loss", "ce: softmax over all items; bce: paper Eq. 5 with sampled negatives"),
        ("negatives", "Negatives (bce)", "sampled negatives per target for the bce loss"),
        ("batch_size", "Batch size", ""),
        ("lr", "Learning rate", "Adam, for the network weights"),
        ("weight_decay", "Weight decay", ""),
        ("search_epochs", "Search epochs", ""),
        ("retrain_epochs", "Retrain epochs", "at most; early stopping on validation NDCG@10"),
        ("patience", "Patience", "epochs without improvement before stopping"),
        ("lr_warmup_epochs", "Warm-up epochs (lr)", "retraining: the learning rate rises linearly from 0 over these "
                                                    "epochs; smaller than the retrain epochs"),
        ("lr_decay", "Learning-rate decay", "retraining, after the warm-up: none holds the rate; cosine lowers it "
                                            "to 0 at the last retrain epoch"),
    )),
    ("Search", (
        ("search_order", "Search order", "second: one-step unrolled gradient (DARTS); first: xi = 0"),
        ("xi", "Unrolling step ξ", ""),
        ("arch_lr", "Architecture lr", "Adam on alpha; too small and the search never decides"),
        ("search_warmup_epochs", "Warm-up epochs W", "search epochs that train the network weights alone before "
                                                     "alpha moves: the length that learns fastest early does not "
                                                     "win for that alone; smaller than the search epochs"),
        ("settle_epochs", "Settle epochs", "stop the search once its choice has been decisive at the end of this "
                                           "many epochs in a row; 0: run every search epoch"),
        ("mode", "Training mode", "causal: every position at once; sampled: a random prefix per user; "
                                  "faithful: every prefix, as in the paper"),
        ("training_windows", "Training windows", "causal: each epoch a window ending at a random point of "
                                                 "every history, or the last T items of each (SASRec+)"),
    )),
    ("Length choice", (
        ("strategy", "Strategy", "search: the differentiable search (AutoMLP); exhaustive: every candidate "
                                 "retrained alone and the best on validation NDCG@10 kept (the paper's AutoMLP-s, "
                                 "one retraining per candidate and seed)"),
        ("seeds", "Seeds", "the search, or each candidate's training, once per seed (seed, seed + 1, ...); "
                           "several seeds tell a real choice from noise: the verdict counts them"),
        ("confirm_epochs", "Confirm epochs", "search only: when the seeds disagree, successive halving retrains "
                                             "the leading lengths this many epochs, the better half twice as many, "
                                             "...; 0: no confirm stage"),
    )),
    ("Data, evaluation and device", (
        ("min_user_interactions", "Min. interactions per user", ""),
        ("protocol", "Protocol", "full ranking, or 100 negatives sampled by popularity (paper) or uniformly"),
        ("eval_negatives", "Sampled negatives", "for the sampled protocols"),
        ("device", "Device", ""),
        ("precision", "Loss precision", "the training loss's item scores in bf16 (bfloat16: a quarter less time "
                                        "per step on ML-1M) or fp32; weights, layers and evaluation stay fp32; auto: "
                                        "bf16 where the device computes it natively"),
        ("seed", "Seed", ""),
    )),
)

CHOICES = {"loss": LOSSES, "search_order": SEARCH_ORDERS, "mode": MODES, "protocol": PROTOCOLS,
           "strategy": STRATEGIES, "training_windows": TRAINING_WINDOWS, "lr_decay": LR_DECAYS,
           "token_maps": TOKEN_MAPS, "precision": PRECISIONS}
FLOAT_DECIMALS = {"dropout": 3, "lr": 6, "weight_decay": 6, "xi": 6, "arch_lr": 5}


def available_devices() -> list[str]:
    """auto and cpu always; cuda only where torch sees a GPU."""
    import torch

    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class CandidateLengthsPanel(QWidget):
    """An editable list of candidate lengths: double-click to edit, Add and Remove buttons."""

    def __init__(self, on_changed, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setFlow(QListWidget.Flow.LeftToRight)
        self.list.setMaximumHeight(44)
        self.list.itemChanged.connect(lambda _item: on_changed())
        add, remove = QPushButton("Add"), QPushButton("Remove")
        add.clicked.connect(self._on_add_clicked)
        remove.clicked.connect(self._on_remove_clicked)
        self.auto = QCheckBox("auto")
        self.auto.setToolTip("fit the candidates to the dataset's history lengths when the run starts")
        self.auto.toggled.connect(self._on_auto_toggled)
        self._on_changed = on_changed
        self._buttons = (add, remove)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.auto)
        layout.addWidget(self.list, 1)
        layout.addWidget(add)
        layout.addWidget(remove)

    def texts(self) -> list[str]:
        return [self.list.item(i).text().strip() for i in range(self.list.count())]

    def set_values(self, values: list[int] | str) -> None:
        self.list.blockSignals(True)
        self.auto.blockSignals(True)
        self.auto.setChecked(values == AUTO)
        self._show_auto(values == AUTO)
        if values != AUTO:
            self.list.clear()
            for value in values:
                self._append(str(value))
        self.auto.blockSignals(False)
        self.list.blockSignals(False)

    def _show_auto(self, auto: bool) -> None:
        for widget in (self.list, *self._buttons):
            widget.setEnabled(not auto)

    @Slot(bool)
    def _on_auto_toggled(self, auto: bool) -> None:
        self._show_auto(auto)
        self._on_changed()

    def _append(self, text: str) -> QListWidgetItem:
        item = QListWidgetItem(text)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
        self.list.addItem(item)
        return item

    @Slot()
    def _on_add_clicked(self) -> None:
        numbers = [int(t) for t in self.texts() if t.isdigit()]
        item = self._append(str(max(numbers) * 2 if numbers else 1))  # doubling: the paper's K is geometric
        self.list.editItem(item)
        self._on_changed()

    @Slot()
    def _on_remove_clicked(self) -> None:
        rows = sorted((self.list.row(i) for i in self.list.selectedItems()), reverse=True) or [self.list.count() - 1]
        for row in rows:
            if row >= 0:
                self.list.takeItem(row)
        self._on_changed()


class ExperimentPage(QWidget):
    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self._filling = False  # True while the form is set from a config: no feedback loop
        self.fields: dict[str, QWidget] = {}
        self._presets = {name: load_preset(name) for name in PRESETS}
        self._build()
        context.config_changed.connect(self._on_config_changed)
        context.config_changed.connect(lambda: save_run_config(context.config))
        context.dataset_selected.connect(self._on_dataset_selected)
        saved = load_run_config()
        if saved is not None and saved != context.config:  # the form as the last session left it
            context.set_config(saved)
        self.fill(context.config)

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        self.preset_combo = QComboBox()
        self.preset_combo.addItem(CUSTOM)
        self.preset_combo.addItems(list(PRESETS))
        self.preset_combo.setToolTip("the preset the form matches, or \"custom\" once it is edited; "
                                     "choose one to fill the form")
        self.preset_combo.activated.connect(self._on_preset_chosen)
        save, load = QPushButton("Save TOML…"), QPushButton("Load TOML…")
        save.clicked.connect(self._on_save_clicked)
        load.clicked.connect(self._on_load_clicked)
        top = QHBoxLayout()
        top.addWidget(QLabel("Preset:"))
        top.addWidget(self.preset_combo)
        top.addStretch(1)
        top.addWidget(save)
        top.addWidget(load)

        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.fitted_label = QLabel("")  # what "auto" K and T become on the selected dataset
        self.fitted_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #d62728; font-weight: bold;")

        form_widget = QWidget()
        form_layout = QVBoxLayout(form_widget)
        labels = []
        for title, rows in GROUPS:
            box = QGroupBox(title)
            form = QFormLayout(box)
            for key, label, tip in rows:
                widget = self._make_field(key)
                widget.setToolTip(f"{key}: {tip}" if tip else key)
                widget.setMaximumWidth(LIST_WIDTH if key == "candidate_lengths" else FIELD_WIDTH)
                if isinstance(widget, (QComboBox, QSpinBox, QDoubleSpinBox)):
                    # the wheel scrolls the form; it changes a value only once the field has been clicked
                    widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
                    widget.installEventFilter(self)
                self.fields[key] = widget
                labels.append(QLabel(label))
                form.addRow(labels[-1], widget)
            form_layout.addWidget(box)
        form_layout.addStretch(1)
        # one label width for every group, so that the fields form one column down the page
        label_width = max(label.sizeHint().width() for label in labels)
        for label in labels:
            label.setMinimumWidth(label_width)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(form_widget)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.error_label)
        layout.addWidget(self.fitted_label)
        layout.addWidget(self.scroll, 1)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and not watched.hasFocus():
            # the form scrolls on as if the field were not under the pointer
            QCoreApplication.sendEvent(self.scroll.verticalScrollBar(), event)
            return True
        return super().eventFilter(watched, event)

    def _make_field(self, key: str) -> QWidget:
        kind = {f.name: f.type for f in fields(RunConfig)}[key]
        if key == "candidate_lengths":
            return CandidateLengthsPanel(self._on_field_changed)
        if key == "device":
            widget = QComboBox()
            widget.addItems(available_devices())
            widget.currentTextChanged.connect(self._on_field_changed)
            return widget
        if key in CHOICES:
            widget = QComboBox()
            widget.addItems(list(CHOICES[key]))
            widget.currentTextChanged.connect(self._on_field_changed)
            return widget
        if kind == "int" or key == "max_length":
            # Ranges wide enough that RunConfig, not the spin box, says what is wrong.
            widget = QSpinBox()
            widget.setRange(0 if key != "seed" else -2**31, 2**31 - 1)
            if key == "max_length":  # 0 stands for "auto": fitted to the dataset when the run starts
                widget.setSpecialValueText("auto")
            widget.setKeyboardTracking(False)
            widget.valueChanged.connect(self._on_field_changed)
            return widget
        widget = QDoubleSpinBox()
        widget.setDecimals(FLOAT_DECIMALS.get(key, 6))
        widget.setRange(0.0, 1e6)
        widget.setSingleStep(10 ** -FLOAT_DECIMALS.get(key, 6) * 10 if key != "dropout" else 0.05)
        widget.setKeyboardTracking(False)
        widget.valueChanged.connect(self._on_field_changed)
        return widget

    # ------------------------------------------------------------------ form <-> config

    def fill(self, config: RunConfig) -> None:
        """Shows `config` in the form (without echoing it back as an edit)."""
        self._filling = True
        try:
            for key, widget in self.fields.items():
                value = getattr(config, key)
                if isinstance(widget, CandidateLengthsPanel):
                    widget.set_values(value)
                elif isinstance(widget, QComboBox):
                    if widget.findText(value) < 0:
                        widget.addItem(value)  # e.g. "cuda" from a file, on a machine without a GPU
                    widget.setCurrentText(value)
                else:
                    widget.setValue(0 if value == AUTO else value)
        finally:
            self._filling = False
        self._validate()

    def values(self) -> dict:
        """The form's values as RunConfig keyword arguments; raises ConfigError for an unreadable entry."""
        values = {}
        for key, widget in self.fields.items():
            if isinstance(widget, CandidateLengthsPanel) and widget.auto.isChecked():
                values[key] = AUTO
            elif isinstance(widget, CandidateLengthsPanel):
                texts = widget.texts()
                bad = [t for t in texts if not t.lstrip("-").isdigit()]
                if bad:
                    raise ConfigError(f"candidate_lengths: {bad[0]!r} is not a whole number")
                values[key] = [int(t) for t in texts]
            elif isinstance(widget, QComboBox):
                values[key] = widget.currentText()
            elif key == "max_length" and widget.value() == 0:
                values[key] = AUTO
            else:
                values[key] = widget.value()
        return values

    def highlighted(self, key: str) -> QWidget:
        """The widget that shows `key` as invalid (the list itself, not its buttons)."""
        widget = self.fields[key]
        return widget.list if isinstance(widget, CandidateLengthsPanel) else widget

    def _validate(self) -> RunConfig | None:
        """Builds a RunConfig from the form; shows its error and highlights the field if it is invalid."""
        for key in self.fields:
            self.highlighted(key).setStyleSheet("")
        try:
            config = RunConfig(**self.values())
            resolve_device(config.device)  # "cuda" loaded from a file on a machine without a GPU
        except ConfigError as error:
            message = str(error)
            self.error_label.setText(message)
            key = message.split(":", 1)[0].strip()
            if key in self.fields:
                self.highlighted(key).setStyleSheet(INVALID_STYLE)
            self.preset_combo.setCurrentText(CUSTOM)
            return None
        self.error_label.setText("")
        self._show_fitted(config)
        self._show_preset(config)
        return config

    def _show_preset(self, config: RunConfig) -> None:
        """Shows the preset the form matches, or "custom"."""
        name = next((name for name, preset in self._presets.items() if preset == config), CUSTOM)
        self.preset_combo.setCurrentText(name)

    def _show_fitted(self, config: RunConfig) -> None:
        """Says what "auto" K and T become on the selected dataset, before a run starts."""
        name, store = self.context.dataset_name, self.context.store
        if config.is_fitted or not name or store is None:
            self.fitted_label.setText("")
            return
        try:
            with store.session() as session:
                fitted = fitted_config(session, name, config)
        except StoreError:
            self.fitted_label.setText("")
            return
        precision = resolved_precision(config.precision, resolve_device(config.device))
        self.fitted_label.setText(f"On {name}: T = {fitted.max_length}, K = {fitted.candidate_lengths}, "
                                  f"loss {fitted.loss} in {precision} (\"auto\": fitted to the dataset "
                                  "and the device)")

    @Slot()
    def _on_dataset_selected(self, *_) -> None:
        config = self._validate()
        if config is not None:
            self._show_fitted(config)

    @Slot()
    def _on_field_changed(self, *_) -> None:
        if self._filling:
            return
        config = self._validate()
        if config is None:
            self.context.set_config_error(self.error_label.text())
        elif config != self.context.config or self.context.config_error:
            self.context.set_config(config)

    @Slot()
    def _on_config_changed(self) -> None:
        # Another view (a menu's Load, a test) set the configuration: show it unless it is ours already.
        if self._validate() != self.context.config:
            self.fill(self.context.config)

    # ------------------------------------------------------------------ presets and files

    @Slot(int)
    def _on_preset_chosen(self, index: int) -> None:
        if index > 0:
            self.apply_preset(self.preset_combo.itemText(index))
        else:  # "custom" is not a configuration: show what the form holds
            self._validate()

    def apply_preset(self, name: str) -> None:
        self.fill(load_preset(name))
        self._on_field_changed()

    def save_config(self, path: str) -> None:
        """Writes the current valid configuration as TOML."""
        self.context.config.save_toml(path)

    def load_config(self, path: str) -> bool:
        """Loads a TOML configuration into the form; on error shows it inline and returns False."""
        try:
            config = RunConfig.load_toml(path)
        except ConfigError as error:  # inline, as the form's own errors; naming the file once
            name = Path(path).name
            self.error_label.setText(str(error) if str(error).startswith(f"{name}:") else f"{name}: {error}")
            return False
        self.fill(config)
        self._on_field_changed()
        return True

    @Slot()
    def _on_save_clicked(self) -> None:
        if self.context.config_error:
            self.error_label.setText(f"fix the configuration before saving: {self.context.config_error}")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save configuration", "automlp.toml", "TOML (*.toml)")
        if path:
            self.save_config(path)

    @Slot()
    def _on_load_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load configuration", "", "TOML (*.toml)")
        if path:
            self.load_config(path)


def main() -> None:
    """A quick look: `python -m app.pages.experiment_page`."""
    import sys

    from PySide6.QtWidgets import QApplication

    from app.context import AppContext

    app = QApplication(sys.argv)
    page = ExperimentPage(AppContext())
    page.resize(600, 900)
    page.show()
    sys.exit(app.exec())


if __name__ == "__main__":
    main()
