"""What the Runs page shows of several runs, without Qt: the panels of the dashboard (one per recorded
series, with axis names that say the metric and its protocol), the configuration keys that differ, a
short label per run and the final test metrics. Runs are compared through their stored records: `config`
is RunConfig.to_dict(), `metrics` engine.experiments.stored_run's record, a series frame run_series'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from engine.evaluation.metrics import protocol_label

SHOWN_METRICS = ("NDCG@10", "HR@10", "MRR@10")
# always columns of the comparison table: the keys a reader compares first (RunConfig's names)
HEADLINE_KEYS = ("candidate_lengths", "max_length", "num_layers", "embedding_dim", "mode", "loss", "lr", "seed")
LOSS_NAMES = {"train_loss": "training loss", "valid_loss": "validation loss"}
METRIC_ORDER = ("NDCG", "HR", "MRR")
PHASE_ORDER = ("search", "retrain")


@dataclass(frozen=True)
class Panel:
    """One plot of the dashboard: the series (phase, name, per) it draws and its axis names."""
    title: str
    phase: str
    name: str
    per: str  # "step" or "epoch"
    x_label: str
    y_label: str


def protocol_description(protocol: str, negatives: int = 100) -> str:
    """How a ranking metric was measured, in words: "full ranking" or "100 popularity negatives"."""
    return "full ranking" if protocol == "full" else f"{negatives} {protocol} negatives"


def _y_label(name: str, per: str, config: dict) -> str:
    if "@" in name:  # ranking metrics are measured on the validation targets during training
        return (f"validation {name} "
                f"({protocol_description(config.get('protocol', 'full'), config.get('eval_negatives', 100))})")
    if name in LOSS_NAMES:
        return LOSS_NAMES[name] + (" (epoch mean)" if per == "epoch" else "")
    if name.startswith("weight/"):
        return f"softmax(α) of {name.removeprefix('weight/')}"
    if name.startswith("alpha/"):
        return f"α of {name.removeprefix('alpha/')} (before softmax)"
    return name


def _panel_rank(panel: Panel) -> tuple:
    """The dashboard's order: search loss, α weights, retrain loss and the @10 metrics first (what a reader
    watches), then epoch means, the other cutoffs and the raw α; search before retrain within each."""
    name, phase = panel.name, PHASE_ORDER.index(panel.phase) if panel.phase in PHASE_ORDER else len(PHASE_ORDER)
    if name in LOSS_NAMES:
        kind, detail, secondary = 0, str(list(LOSS_NAMES).index(name)), panel.per == "epoch"
    elif name.startswith("weight/"):
        kind, detail, secondary = 1, _natural(name), False
    elif "@" in name:
        metric, cutoff = name.split("@", 1)
        order = METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER)
        kind, detail, secondary = 2, f"{_natural(cutoff)} {order}", cutoff != "10"
    else:
        kind, detail, secondary = 3, _natural(name), True
    return secondary, phase, kind, detail


def _natural(text: str) -> str:
    """`text` with its numbers zero-padded, so that "k=12" sorts after "k=2"."""
    return re.sub(r"\d+", lambda match: match.group().zfill(6), text)


def series_panels(frame: pd.DataFrame, config: dict) -> dict[str, Panel]:
    """{title: Panel} of a run's recorded series (frame columns phase, name, per), in the dashboard's
    order. Ranking metrics carry the run's protocol label in their title, so that runs measured
    differently never share a plot; a loss recorded per step and per epoch gives two plots."""
    label = protocol_label(config.get("protocol", "full"), config.get("eval_negatives", 100))
    panels = []
    for phase, name, per in frame[["phase", "name", "per"]].drop_duplicates().itertuples(index=False):
        if "@" in name:
            title = f"{phase} · {name} [{label}]"
        else:
            title = f"{phase} · {name}" + (" (epoch mean)" if per == "epoch" else "")
        panels.append(Panel(title, phase, name, per, f"{phase} {per}", _y_label(name, per, config)))
    return {panel.title: panel for panel in sorted(panels, key=_panel_rank)}


def merge_panels(panel_sets: list[dict[str, Panel]]) -> dict[str, Panel]:
    """The union of several runs' panels in the dashboard's order (the first run's axis names win)."""
    merged: dict[str, Panel] = {}
    for panels in panel_sets:
        for title, panel in panels.items():
            merged.setdefault(title, panel)
    return {panel.title: panel for panel in sorted(merged.values(), key=_panel_rank)}


def panel_points(frame: pd.DataFrame, panel: Panel) -> tuple[pd.Series, pd.Series]:
    """(x, y) of the panel's series in a run's frame, in recording order."""
    points = frame[(frame["phase"] == panel.phase) & (frame["name"] == panel.name) & (frame["per"] == panel.per)]
    return points["step"], points["value"]


def differing_keys(configs: list[dict]) -> list[str]:
    """The configuration keys whose values differ between the runs, in the first configuration's order
    (keys only some runs have come last); none for fewer than two runs."""
    if len(configs) < 2:
        return []
    keys = list(dict.fromkeys(key for config in configs for key in config))
    return [key for key in keys if len({repr(config.get(key)) for config in configs}) > 1]


def setting_keys(configs: list[dict]) -> list[str]:
    """The comparison table's setting columns: the keys that differ between the runs first (what tells
    them apart), then the headline keys that do not."""
    differing = differing_keys(configs)
    return differing + [key for key in HEADLINE_KEYS if key not in differing]


def setting_text(value) -> str:
    """A configuration value as the table shows it: lists as "1,2,4", None as empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


def run_label(config: dict, keys: list[str], fallback: str, limit: int = 2) -> str:
    """A short name of a run among others: its values of the first `limit` differing `keys`
    ("seed=1 lr=0.01", "…" when there are more), or `fallback` (e.g. the dataset) when none differ."""
    if not keys:
        return fallback
    text = " ".join(f"{key}={setting_text(config.get(key))}" for key in keys[:limit])
    return text + (" …" if len(keys) > limit else "")


def test_metrics(metrics: dict | None) -> dict[str, dict[str, float]]:
    """{protocol label: {metric: value}} of a finished run's test targets (empty for others)."""
    return (metrics or {}).get("test") or {}


test_metrics.__test__ = False  # a function of the product, not a test, though pytest collects by name


def metric_columns(metrics_records: list[dict | None]) -> list[tuple[str, str]]:
    """(protocol label, metric) pairs present in any run's test metrics, full ranking first."""
    labels = sorted({label for metrics in metrics_records for label in test_metrics(metrics)},
                    key=lambda label: (label != "full", label))
    return [(label, name) for label in labels for name in SHOWN_METRICS]


def colour_slots(previous: dict[int, int], run_ids: list[int]) -> dict[int, int]:
    """{run id: colour index} of the selected runs: a run keeps the colour it had while it stays selected,
    a newly selected run takes the lowest index no other selected run has."""
    slots = {run_id: previous[run_id] for run_id in run_ids if run_id in previous}
    free = (index for index in range(len(run_ids) + len(slots)) if index not in slots.values())
    for run_id in run_ids:
        if run_id not in slots:
            slots[run_id] = next(free)
    return {run_id: slots[run_id] for run_id in run_ids}
