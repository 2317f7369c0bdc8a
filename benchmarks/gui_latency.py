"""GUI event-loop latency during a training run (issue 4: target p99 < 50 ms).

A 10 ms QTimer probe runs on the GUI thread while the Training page trains on generated data (offscreen);
each tick's lateness (actual interval minus 10 ms) is recorded while the run is in progress. Prints one
JSON line and appends it to benchmarks/results/gui_latency.jsonl.

    QT_QPA_PLATFORM=offscreen python -m benchmarks.gui_latency [--users 400] [--search-epochs 5] [--retrain-epochs 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

PROBE_MS = 10
RESULTS = Path(__file__).resolve().parent / "results" / "gui_latency.jsonl"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--search-epochs", type=int, default=5)
    parser.add_argument("--retrain-epochs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--switch-interval", type=float, default=0.0,
                        help="sys.setswitchinterval in seconds (0: the app's setting)")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() after start-up, so that full collections skip the imported modules")
    parser.add_argument("--no-plots", action="store_true",
                        help="diagnosis: never feed the plots, to separate their cost from the rest")
    parser.add_argument("--repaint-ms", type=int, default=0, help="the page's repaint interval (0: its own)")
    parser.add_argument("--no-save", action="store_true", help="print only, do not append to the results")
    args = parser.parse_args(argv)

    import torch
    from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from app.context import AppContext
    from app.pages.training_page import TrainingPage
    from engine.core.presets import quick_demo
    from tests.app.store_data import store_planted_dataset

    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    app = QApplication.instance() or QApplication(sys.argv)
    folder = tempfile.mkdtemp(prefix="automlp-gui-latency-")
    context = AppContext(f"sqlite:///{folder}/store.sqlite")
    context.select_dataset(store_planted_dataset(context.sessions, folder, n_users=args.users))
    config = quick_demo().replace(search_epochs=args.search_epochs, retrain_epochs=args.retrain_epochs,
                                  patience=args.retrain_epochs, device=args.device)
    context.set_config(config)
    page = TrainingPage(context)
    page.resize(1400, 900)
    page.show()  # offscreen, but painted: repaint cost counts

    lateness: list[float] = []
    clock = QElapsedTimer()
    probe = QTimer()
    probe.setTimerType(Qt.TimerType.PreciseTimer)
    probe.setInterval(PROBE_MS)

    def on_tick() -> None:
        elapsed = clock.nsecsElapsed() / 1e6
        clock.restart()
        if page.running:
            lateness.append(max(0.0, elapsed - PROBE_MS))
            if elapsed - PROBE_MS > 30 and os.environ.get("GUI_LATENCY_TRACE"):
                print(f"{time.monotonic() - started:7.2f} s  late {elapsed - PROBE_MS:6.1f} ms  "
                      f"{page.phase_label.text()}", file=sys.stderr)

    # The page's own GUI-thread work per repaint, apart from what the machine's load adds.
    repaint_ms: list[float] = []
    repaint = page._repaint

    def timed_repaint() -> None:
        if args.no_plots:
            page._dirty.clear()
            return
        begin = time.perf_counter()
        repaint()
        repaint_ms.append((time.perf_counter() - begin) * 1e3)

    if args.repaint_ms:
        page._repaint_timer.setInterval(args.repaint_ms)
    page._repaint_timer.timeout.disconnect()
    page._repaint_timer.timeout.connect(timed_repaint)
    # Garbage collections stop every thread holding the GIL: time them to tell them from the OS's stalls.
    gc_pauses: list[float] = []
    gc_started = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        elif page.running:
            gc_pauses.append((time.perf_counter() - gc_started[0]) * 1e3)
            if gc_pauses[-1] > 20 and os.environ.get("GUI_LATENCY_TRACE"):
                print(f"{time.monotonic() - started:7.2f} s  gc gen {info['generation']} {gc_pauses[-1]:6.1f} ms "
                      f"collected {info['collected']}", file=sys.stderr)

    if args.gc_freeze:
        gc.freeze()
    gc.callbacks.append(on_gc)
    probe.timeout.connect(on_tick)
    loop = QEventLoop()
    page.runner.running_changed.connect(lambda running: None if running else loop.quit())
    started = time.monotonic()
    clock.start()
    probe.start()
    page.start()
    loop.exec()
    probe.stop()
    gc.callbacks.remove(on_gc)
    seconds = time.monotonic() - started
    page.shutdown()
    if page.summary is None:
        raise SystemExit("the run did not finish:\n" + page.log_pane.toPlainText())

    values = np.array(lateness)
    result = {
        "benchmark": "gui_latency",
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs",
        "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "switch_interval_ms": sys.getswitchinterval() * 1e3,
        "load_average": os.getloadavg()[0],
        "users": args.users, "search_epochs": args.search_epochs, "retrain_epochs": args.retrain_epochs,
        "device": page.summary["device"], "run_seconds": round(seconds, 1), "ticks": int(len(values)),
        "p50_ms": round(float(np.percentile(values, 50)), 2), "p95_ms": round(float(np.percentile(values, 95)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2), "max_ms": round(float(values.max()), 2),
        "repaint_p99_ms": round(float(np.percentile(repaint_ms, 99)), 2) if repaint_ms else None,
        "repaint_max_ms": round(float(max(repaint_ms)), 2) if repaint_ms else None, "no_plots": args.no_plots,
        "repaint_interval_ms": page._repaint_timer.interval(),
        "gc_freeze": args.gc_freeze, "gc_collections": len(gc_pauses),
        "gc_max_ms": round(max(gc_pauses, default=0.0), 2),
    }
    print(json.dumps(result))
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
