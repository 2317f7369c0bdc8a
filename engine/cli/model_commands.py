"""`automlp recommend | export`: trained models from the command line.

    automlp recommend --bundle ./ml1m-bundle --user 42 -n 10     top-10 table with long/short/bias parts
    automlp recommend --run 7 --user 42 --include-history        from the bundle that run 7 saved
    automlp recommend --run 7 --all --out recs.csv               every user's top-n to CSV
    automlp recommend --bundle ./ml1m-bundle --user 42 --what-if  top-n under each candidate length
    automlp export 7 --out ./ml1m-bundle [--onnx] [--zip]        copy run 7's bundle (re-checked)

A run's bundle is the store artifact of kind "bundle" (`record_bundle` adds it); `--db URL` picks the
store as for the data commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from engine.cli.data_commands import add_store_argument, open_cli_store
from engine.cli.progress_bar import ProgressBarObserver

# torch, the bundle and the store load when a command runs, not for `automlp --help`.
if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.serving.bundle import Bundle
    from engine.serving.recommend import Recommendations

BUNDLE_KIND = "bundle"


def record_bundle(session: Session, run_id: int, path: str | Path) -> None:
    """Records a saved bundle as the run's "bundle" artifact (absolute path, `bundle_digest`); commits."""
    from engine.data.run_records import add_artifact
    from engine.serving.bundle import bundle_digest

    path = Path(path).resolve()
    add_artifact(session, run_id, str(path), BUNDLE_KIND, bundle_digest(path))


def bundle_for_run(session: Session, run_id: int) -> Path:
    """The path of the newest bundle a run saved. StoreError if the run does not exist or saved none;
    BundleError if the bundle changed since it was recorded."""
    from engine.data.run_records import get_run, latest_artifact
    from engine.data.store import store_identity
    from engine.data.store_errors import StoreError
    from engine.serving.bundle import BundleError, bundle_digest

    get_run(session, run_id)  # StoreError naming the id if there is no such run
    artifact = latest_artifact(session, run_id, BUNDLE_KIND)
    if artifact is None:
        raise StoreError(f"run {run_id} has no saved bundle (it may have failed or been cancelled)")
    path = Path(artifact.path)
    if not path.exists():
        raise StoreError(f"run {run_id}'s bundle {path} is missing (moved or deleted?)")
    if bundle_digest(path) != artifact.sha256:
        if path.parent.name != store_identity(session).id:
            # saved before stores had an identity, into the runs/ folder all stores there shared
            raise StoreError(f"run {run_id}'s bundle {path} is no longer the one it recorded (sha256 differs): "
                             f"it was saved in {path.parent}, which the other stores in that place shared with "
                             f"this one, and another store's run {run_id} may have been saved over it; run the "
                             "configuration again to get its model back")
        raise BundleError(f"tampered: {path} is not the bundle run {run_id} recorded (sha256 differs)")
    return path


def add_model_commands(commands) -> None:
    """Registers `recommend` and `export` on an argparse subparsers object."""
    command = commands.add_parser("recommend", help="top-N recommendations with long/short-term parts")
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=int, metavar="ID", help="use the bundle saved by this run")
    source.add_argument("--bundle", type=Path, metavar="DIR", help="a bundle folder or .zip")
    who = command.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="external user id")
    who.add_argument("--all", action="store_true", help="every user, to the CSV given by --out")
    command.add_argument("-n", type=int, default=10, help="how many items (default 10)")
    command.add_argument("--include-history", action="store_true",
                         help="also rank items the user already interacted with")
    command.add_argument("--what-if", action="store_true",
                         help="the user's top-n under each candidate length and without one (+ brought in, - pushed out)")
    command.add_argument("--out", type=Path, help="CSV file for --all (user, rank, item, score, long, short, bias)")
    command.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    command.add_argument("--quiet", action="store_true", help="no progress bar")
    add_store_argument(command)
    command.set_defaults(handler=_reporting_errors(command_recommend))

    command = commands.add_parser("export", help="write a run's model bundle to a folder or zip")
    command.add_argument("run", type=int, metavar="RUN", help="run id")
    command.add_argument("--out", type=Path, required=True, help="destination folder (or .zip with --zip)")
    command.add_argument("--onnx", action="store_true", help="also write model.onnx, checked against onnxruntime")
    command.add_argument("--zip", action="store_true", help="write one .zip file instead of a folder")
    command.add_argument("--quiet", action="store_true", help="no progress bar")
    add_store_argument(command)
    command.set_defaults(handler=_reporting_errors(command_export))


def _reporting_errors(handler):
    """Prints bundle, store and recommendation errors as one line; exit status 2."""
    def wrapped(args) -> int:
        from engine.core.config import ConfigError
        from engine.data.store_errors import StoreError
        from engine.serving.bundle import BundleError
        from engine.serving.recommend import RecommendError

        try:
            return handler(args)
        except (BundleError, ConfigError, RecommendError, StoreError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    return wrapped


def _open(args) -> Bundle:
    from engine.serving.bundle import load_bundle
    from engine.training.device import resolve_device

    device = resolve_device(getattr(args, "device", "cpu"))  # ConfigError for a device torch cannot use
    if args.bundle is not None:
        return load_bundle(args.bundle, device)
    store = open_cli_store(args)
    try:
        with store.session() as session:
            path = bundle_for_run(session, args.run)
    finally:
        store.close()
    return load_bundle(path, device)


def command_recommend(args) -> int:
    from engine.serving.recommend import RecommendError, recommend, recommend_all_to_csv

    if args.all and args.out is None:
        raise RecommendError("--all needs --out FILE.csv")
    if args.all and args.what_if:
        raise RecommendError("--what-if shows one user: give --user, not --all")
    bundle = _open(args)
    exclude = not args.include_history
    if args.all:
        rows = recommend_all_to_csv(bundle.model, bundle.data, args.out, n=args.n, exclude_history=exclude,
                                    observer=ProgressBarObserver(quiet=args.quiet))
        print(f"{rows} recommendations for {bundle.data.n_users} users written to {args.out}")
        return 0
    if args.what_if:
        from engine.serving.what_if import format_what_if, what_if

        print(format_what_if(what_if(bundle, bundle.data, args.user, n=args.n)))
        return 0
    print(format_recommendations(recommend(bundle.model, bundle.data, args.user, n=args.n, exclude_history=exclude)))
    return 0


def command_export(args) -> int:
    from engine.serving.bundle import save_bundle

    args.bundle = None
    bundle = _open(args)
    out = save_bundle(bundle, bundle.data, args.out, onnx=args.onnx, zip=args.zip,
                      observer=ProgressBarObserver(quiet=args.quiet))
    print(f"run {args.run}: bundle written to {out}" + (" (with model.onnx, checked)" if args.onnx else ""))
    return 0


def format_recommendations(recs: Recommendations, title_width: int = 36) -> str:
    """A text table: rank (1 = first), item, title, score and its long, short and bias parts; `*` marks
    the held-out item; then its rank, the window k and how the short-term part changed the top-n."""
    lines = [f"user {recs.user_id}: {len(recs.history)} items in history, short-term window k = {recs.window}"
             + ("" if recs.exclude_history else " (history items included)")]
    lines.append(f"{'rank':>4}  {'item':<12} {'title':<{title_width}} {'score':>9} {'long':>9} {'short':>9} "
                 f"{'bias':>9}  {'long-only':>9}")
    for r in recs.items:
        mark = "*" if r.item == recs.target.item else " "
        title = (r.title or "")[:title_width]
        lines.append(f"{r.rank + 1:>4}{mark} {str(r.item_id):<12} {title:<{title_width}} {r.score:9.4f} "
                     f"{r.long:9.4f} {r.short:9.4f} {r.bias:9.4f}  {r.long_rank + 1:>9}")
    t = recs.target
    verdict = f"hit@{recs.n}" if recs.hit else f"miss@{recs.n}"
    lines.append(f"held-out item {t.item_id}" + (f" ({t.title})" if t.title else "")
                 + f": rank {t.rank + 1} of {recs.candidates} ({verdict})")
    lines.append(f"long-term part alone: {recs.overlap} of the top {recs.n} in common")
    return "\n".join(lines)
