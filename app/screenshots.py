"""Renders each page of the main window to a PNG: `python -m app.screenshots OUTDIR [--db URL] [--theme dark]`.

Without `--db`, a temporary store with the generated demo dataset is used, so that the pictures (for the
README and the screenshot test) show data. Runs offscreen when there is no display.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path


def render_pages(window, folder: str | Path, size=(1280, 820), pages: list[str] | None = None) -> list[Path]:
    """Shows each page of `window` (or only those titled in `pages`) in turn and saves `<n>-<page>.png`
    in `folder`; returns the paths."""
    from PySide6.QtWidgets import QApplication

    from app.main_window import PAGES

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    window.resize(*size)
    window.show()
    paths = []
    for number, (title, _, _) in enumerate(PAGES, start=1):
        if pages is not None and title not in pages:
            continue
        window.show_page(title)
        QApplication.processEvents()  # lay out and paint the page before grabbing it
        path = folder / f"{number}-{title.lower()}.png"
        if not window.grab().save(str(path)):
            raise OSError(f"cannot write {path}")
        paths.append(path)
    return paths


def train_demo(window, context) -> None:
    """Starts the quick-demo run on the demo dataset from the Training page and waits for it to end."""
    import time

    from PySide6.QtWidgets import QApplication

    from app.demo import DEMO_NAME
    from engine.core.presets import quick_demo

    context.select_dataset(DEMO_NAME)
    context.set_config(quick_demo())
    training = window.pages["Training"]
    window.show_page("Training")
    training.start()
    while training.running:
        QApplication.processEvents()
        time.sleep(0.02)
    QApplication.processEvents()
    if context.run_id is None:  # let the Users page show the run just made
        from engine.data.run_records import list_runs

        with context.sessions() as session:
            runs = list_runs(session)
        if runs:
            context.select_run(max(run.id for run in runs))
    runs_page = window.pages["Runs"]
    if context.run_id is not None and hasattr(runs_page, "select_runs"):
        runs_page.refresh()
        runs_page.select_runs([context.run_id])
    users = window.pages["Users"]
    if hasattr(users, "is_busy"):  # the Users page loads the bundle on a thread: wait, then pick a user
        while users.is_busy():
            QApplication.processEvents()
            time.sleep(0.02)
        shown = users.user_ids_shown()
        if shown:
            users.select_user(shown[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--db", help="store URL (default: a temporary store with the demo dataset)")
    parser.add_argument("--theme", choices=("light", "dark"), default="light")
    parser.add_argument("--pages", nargs="+", metavar="TITLE", help="only these pages, e.g. Data Training")
    parser.add_argument("--size", default="1280x820", help="window size WIDTHxHEIGHT")
    parser.add_argument("--train", action="store_true",
                        help="first train the quick demo on the demo dataset, so that Training, Runs and Users "
                             "show a finished run")
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtWidgets import QApplication

    from app.context import AppContext
    from app.demo import demo_import_options, write_demo_csv
    from app.main_window import MainWindow
    from app.settings import AppSettings
    from app.theme import apply_theme
    from engine.data.importers import import_file

    app = QApplication.instance() or QApplication(sys.argv[:1])
    apply_theme(app, args.theme)
    with tempfile.TemporaryDirectory(prefix="automlp-screenshots-") as folder:
        context = AppContext(args.db or f"sqlite:///{folder}/store.sqlite")
        if args.db is None:  # a script may block: the demo is imported directly, not on a thread
            with context.sessions() as session:
                path = write_demo_csv(folder)
                import_file(session, path, **demo_import_options(path))
            context.datasets_changed.emit()
        window = MainWindow(context, AppSettings(theme=args.theme))
        if args.train:
            train_demo(window, context)
        width, height = (int(v) for v in args.size.lower().split("x"))
        for path in render_pages(window, args.outdir, (width, height), args.pages):
            print(path)
        window.close()
        context.store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
