"""Turns benchmarks/results/*.jsonl into the tables of BENCHMARKS.md and a PNG plot.

    python benchmarks/report.py                        # latest cost run per machine, latest accuracy runs
    python benchmarks/report.py --all                  # every run
    python benchmarks/report.py --plot benchmarks/plots/benchmarks.png --dataset ml-1m

Markdown goes to stdout: the cost against T of AutoMLP and the SASRec baseline (benchmarks/cost_vs_length.py)
with their ratio and how step time grows with T, and the accuracy of both against the paper's Table 2
(benchmarks/accuracy.py), each row labelled with its protocol, date and machine, and the differentiable search
against exhaustive search (benchmarks/search_vs_exhaustive.py). The plot has two panels:
seconds per epoch against T (log-log), and accuracy against the paper (bars, popularity-100 protocol).
It is drawn with pyqtgraph (a dependency of the app) on an offscreen Qt platform.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
PLOT = ROOT / "benchmarks" / "plots" / "benchmarks.png"

# The paper's Table 2 (100 popularity-sampled negatives): AutoMLP and the self-attention model it lists.
PAPER = {
    "ml-1m": {"AutoMLP": (0.3912, 0.4593, 0.6767), "BERT4Rec": (0.3535, 0.4289, 0.6695)},
    "beauty": {"AutoMLP": (0.1438, 0.1754, 0.2779), "BERT4Rec": (0.0907, 0.1198, 0.2154)},
}
PAPER_PROTOCOL = "popularity-100"
METRICS = ("MRR@10", "NDCG@10", "HR@10")
NAMES = {"automlp": "AutoMLP", "sasrec": "SASRec"}


def load_results(folder: Path) -> list[dict]:
    """Every JSON line of every *.jsonl file in `folder`, in file then line order."""
    records = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


def growth_exponent(lengths: list[int], seconds: list[float]) -> float | None:
    """Least-squares slope of log(seconds) against log(T): 1 is linear growth, 2 quadratic."""
    if len(lengths) < 2:
        return None
    xs, ys = [math.log(t) for t in lengths], [math.log(s) for s in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / spread if spread else None


def cost_runs(records: list[dict], every: bool = False) -> list[str]:
    """Run ids of the cost benchmark, oldest first: all of them, or the latest of each machine."""
    latest: dict[str, str] = {}
    runs = []
    for r in records:
        if r.get("benchmark") == "cost_vs_length" and r["run"] not in runs:
            runs.append(r["run"])
            latest[r["machine"]] = r["run"]
    return runs if every else [run for run in runs if run in latest.values()]


def cost_tables(records: list[dict], every: bool = False) -> str:
    """Markdown: one table per run and training mode, with the growth exponents and the target."""
    out = []
    for run in cost_runs(records, every):
        cases = [r for r in records if r.get("benchmark") == "cost_vs_length" and r["run"] == run]
        for mode in dict.fromkeys(r["mode"] for r in cases):
            rows = {(r["model"], r["T"]): r for r in cases if r["mode"] == mode and r["record"] == "case"}
            lengths = sorted({t for _, t in rows})
            first = next(iter(rows.values()))
            out.append(f"Cost against T, `{mode}` mode: {first['machine']}, device {first['device']}, "
                       f"run {run}; D = {first['D']}, L = {first['L']}, batch {first['batch_size']}, "
                       f"median of {first['timed_steps']} steps after {first['warmup']} warm-up, "
                       f"memory: {first['memory']}.\n")
            out.append("| T | AutoMLP s/step | SASRec s/step | ratio | AutoMLP s/epoch | SASRec s/epoch "
                       "| AutoMLP seq/s | SASRec seq/s | AutoMLP MiB | SASRec MiB |")
            out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for T in lengths:
                a, s = rows.get(("automlp", T)), rows.get(("sasrec", T))
                ratio = f"{a['step_seconds'] / s['step_seconds']:.2f}" if a and s else "-"
                cells = [str(T), _get(a, "step_seconds", 3), _get(s, "step_seconds", 3), ratio,
                         _get(a, "epoch_seconds", 1), _get(s, "epoch_seconds", 1),
                         _get(a, "sequences_per_second", 0), _get(s, "sequences_per_second", 0),
                         _get(a, "step_memory_mib", 0), _get(s, "step_memory_mib", 0)]
                out.append("| " + " | ".join(cells) + " |")
            notes = []
            for model in ("automlp", "sasrec"):
                points = sorted((t, r["step_seconds"]) for (m, t), r in rows.items() if m == model)
                slope = growth_exponent([t for t, _ in points], [s for _, s in points])
                if slope is not None:
                    notes.append(f"{NAMES[model]} step time ~ T^{slope:.2f}")
            long_ones = [T for T in lengths if T >= 200 and ("automlp", T) in rows and ("sasrec", T) in rows]
            if long_ones:
                below = all(rows[("automlp", T)]["step_seconds"] < rows[("sasrec", T)]["step_seconds"]
                            for T in long_ones)
                notes.append(f"AutoMLP below SASRec at T >= 200: {'yes' if below else 'no'}")
            out.append("\n" + "; ".join(notes) + ".\n" if notes else "")
    return "\n".join(out) if out else "No cost_vs_length results yet.\n"


def accuracy_records(records: list[dict], every: bool = False) -> list[dict]:
    """Accuracy runs (records without `model` are AutoMLP's); unless `every`, the latest per
    (dataset, model, label, machine)."""
    found = [{"model": "automlp", **r} for r in records if r.get("benchmark") == "accuracy"]
    if every:
        return found
    latest = {}
    for r in found:
        latest[(r["dataset"], r["model"], r.get("label", ""), r["machine"])] = r
    return list(latest.values())


def accuracy_table(records: list[dict], every: bool = False) -> str:
    """Markdown: the paper's rows, then ours, per dataset; every row names its protocol."""
    ours = accuracy_records(records, every)
    out = ["| dataset | model | protocol | MRR@10 | NDCG@10 | HR@10 | epochs (best) | s / epoch | date | machine "
           "| label |", "|---|---|---|---:|---:|---:|---:|---:|---|---|---|"]
    for dataset in dict.fromkeys([*PAPER, *(r["dataset"] for r in ours)]):
        mine = [r for r in ours if r["dataset"] == dataset]
        if not mine:
            continue
        for name, values in PAPER.get(dataset, {}).items():
            out.append(f"| {dataset} | {name} (paper, Table 2) | {PAPER_PROTOCOL} | "
                       + " | ".join(f"{v:.4f}" for v in values) + " | - | - | 2023 | paper | - |")
        for r in sorted(mine, key=lambda r: (r["model"], r["date"])):
            for protocol, metrics in r["test"].items():
                out.append(f"| {dataset} | {NAMES.get(r['model'], r['model'])} (ours) | {protocol} | "
                           + " | ".join(f"{metrics[m]:.4f}" for m in METRICS)
                           + f" | {r.get('epochs_run', '-')} ({r.get('best_epoch', '-')}) | "
                           + f"{r.get('retrain_seconds_per_epoch', float('nan')):.1f} | {r['date']} | {r['machine']} "
                           + f"| {r.get('label', '')} |")
    return "\n".join(out) + "\n" if len(out) > 2 else "No accuracy results yet.\n"


def _get(record: dict | None, key: str, digits: int) -> str:
    if record is None:
        return "-"
    return f"{record[key]:,.{digits}f}"


def plot(records: list[dict], path: Path, dataset: str = "ml-1m") -> Path:
    """Writes the two-panel PNG (time against T; accuracy against the paper) and returns its path."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    from pyqtgraph.exporters import ImageExporter

    pg.mkQApp()
    pg.setConfigOptions(background="w", foreground="k", antialias=True)
    window = pg.GraphicsLayoutWidget()
    window.resize(1300, 520)
    colours = {"automlp": (31, 119, 180), "sasrec": (255, 127, 14)}
    styles = {"causal": pg.QtCore.Qt.PenStyle.SolidLine, "sampled": pg.QtCore.Qt.PenStyle.DashLine}

    runs = cost_runs(records)
    time_plot = window.addPlot(title="seconds per epoch against T (ML-1M)" + (f", run {runs[-1]}" if runs else ""))
    time_plot.setLogMode(x=True, y=True)
    time_plot.setLabel("bottom", "T (max length)")
    time_plot.setLabel("left", "s / epoch")
    time_plot.addLegend(offset=(10, 10))
    if runs:
        cases = [r for r in records if r.get("benchmark") == "cost_vs_length" and r["run"] == runs[-1]
                 and r["record"] == "case"]
        for mode in dict.fromkeys(r["mode"] for r in cases):
            for model in ("automlp", "sasrec"):
                points = sorted((r["T"], r["epoch_seconds"]) for r in cases if r["mode"] == mode and r["model"] == model)
                if points:
                    pen = pg.mkPen(colours[model], width=2, style=styles.get(mode, styles["causal"]))
                    time_plot.plot([t for t, _ in points], [s for _, s in points], pen=pen, symbol="o",
                                   symbolBrush=colours[model], symbolSize=7, name=f"{NAMES[model]}, {mode}")
        time_plot.setTitle(f"s / epoch against T, ML-1M: {cases[0]['machine']}")

    bars = window.addPlot(title=f"accuracy against the paper, {dataset}, {PAPER_PROTOCOL}")
    bars.addLegend(offset=(10, 10))
    sources = [(f"{name} (paper)", values) for name, values in PAPER.get(dataset, {}).items()]
    for r in sorted(accuracy_records(records), key=lambda r: r["date"]):
        if r["dataset"] == dataset and PAPER_PROTOCOL in r["test"]:
            label = f"{NAMES.get(r['model'], r['model'])} (ours, {r['machine'].split(' (')[0]})"
            sources = [s for s in sources if s[0] != label] + [(label, tuple(r["test"][PAPER_PROTOCOL][m] for m in METRICS))]
    palette = [(120, 120, 120), (190, 190, 190), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
    width = 0.8 / max(len(sources), 1)
    for index, (label, values) in enumerate(sources):
        colour = palette[index % len(palette)]
        item = pg.BarGraphItem(x=[m + (index - (len(sources) - 1) / 2) * width for m in range(len(METRICS))],
                               height=list(values), width=width * 0.95, brush=colour, pen=pg.mkPen(None), name=label)
        bars.addItem(item)
    bars.getAxis("bottom").setTicks([list(enumerate(METRICS))])
    bars.setYRange(0, 1.0 if dataset == "ml-1m" else 0.5)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    window.show()
    pg.QtWidgets.QApplication.processEvents()
    ImageExporter(window.scene()).export(str(path))
    window.close()
    return path


def search_table(records: list[dict]) -> str:
    """Differentiable against exhaustive search, one row per (dataset, seed, settings) whose parts are
    all recorded (benchmarks/search_vs_exhaustive.py)."""
    from benchmarks.search_vs_exhaustive import combine

    parts = [r for r in records if r.get("benchmark") == "search_vs_exhaustive_part"]
    rows = ["| dataset | seed | machine | search: k (weight) | exhaustive: k | validation NDCG@10 [full] per k "
            "| gap | search + retrain (s) | exhaustive (s) | time ratio |",
            "|---|---:|---|---|---:|---|---:|---:|---:|---:|"]
    for c in combine(parts):
        chosen = str(c["search_choice"])
        per_k = ", ".join(f"{k}: {v:.4f}" for k, v in c["valid_ndcg10"].items())
        rows.append(f"| {c['dataset']} | {c['seed']} | {c['machine']} | {chosen} ({c['search_weights'][chosen]:.3f}) "
                    f"| {c['exhaustive_choice']} | {per_k} | {c['search_choice_gap_ndcg10']:.4f} "
                    f"| {c['seconds']['differentiable_total']:.0f} | {c['seconds']['exhaustive_total']:.0f} "
                    f"| {c['time_ratio']:.2f} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of *.jsonl files")
    parser.add_argument("--all", action="store_true", help="every run, not the latest of each machine")
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--dataset", default="ml-1m", help="the dataset of the accuracy panel")
    args = parser.parse_args()
    records = load_results(args.results)
    print("## Cost against the maximum length T: AutoMLP and SASRec\n")
    print(cost_tables(records, args.all))
    print("## Accuracy against the paper and the SASRec baseline\n")
    print(accuracy_table(records, args.all))
    print("## Differentiable search against exhaustive search\n")
    print(search_table(records))
    if not args.no_plot:
        print(f"plot written to {plot(records, args.plot, args.dataset)}", file=sys.stderr)


if __name__ == "__main__":
    main()
