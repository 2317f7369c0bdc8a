"""`automlp import | datasets | stats | delete`: the store from the command line.

    automlp import ratings.dat --name ml-1m --items movies.dat
    automlp import log.csv --map user=customer,item=sku,time=ordered_at --min-user 5
    automlp import Beauty.txt --times Beauty_time.txt --items Beauty_item2attributes.json --min-user 0
    automlp datasets
    automlp stats ml-1m [--json]
    automlp delete ml-1m --yes
Every command takes `--db URL` (any SQLAlchemy URL); the default is `AUTOMLP_DB`, else the SQLite file
in the user's data directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from engine.cli.progress_bar import ProgressBarObserver
from engine.cli.text import local_minute, printable, utc_date
from engine.data.formats import FORMATS, ImportFailed

# The store, importers and their libraries (SQLAlchemy, pandas, Arrow) load when a command runs, not
# for `automlp --help` or a mistyped flag.
if TYPE_CHECKING:
    from engine.data.store import Store


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    """Adds `--db URL` to a (sub)command."""
    parser.add_argument("--db", metavar="URL",
                        help="store URL (SQLAlchemy) or a SQLite file's path; default: $AUTOMLP_DB or the user data "
                             "directory")


def resolve_store_url(args: argparse.Namespace) -> str:
    """The store URL a command uses: `--db`, else `AUTOMLP_DB`, else the default SQLite file. A plain
    path (no `scheme://`) is a SQLite file: `--db runs/store.sqlite` is `sqlite:////abs/runs/store.sqlite`."""
    from engine.data.store import default_store_url

    url = getattr(args, "db", None) or default_store_url()
    return url if "://" in url else f"sqlite:///{Path(url).absolute()}"


def check_store_url(url: str) -> None:
    """StoreError, before anything is opened, for a URL SQLAlchemy cannot parse, a database it does not
    know, or one whose Python driver is not installed; the password is never shown."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from engine.data.store_errors import StoreError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StoreError(f"--db {url!r} is not a store URL; give a SQLite file's path, sqlite:///PATH or "
                         "postgresql://USER@HOST/DATABASE") from None
    shown = parsed.render_as_string(hide_password=True)
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise StoreError(f"--db {shown}: {parsed.drivername!r} is not a database SQLAlchemy knows; use sqlite:// "
                         "or postgresql://") from None
    try:
        dialect.import_dbapi()
    except ImportError as error:
        raise StoreError(f"--db {shown}: the Python driver for {parsed.get_backend_name()} is not installed "
                         f"({error.name or error}); install it, or use another URL") from None


def open_cli_store(args: argparse.Namespace) -> Store:
    """Opens the command's store and marks runs of dead processes `interrupted` (saying so on stderr), so
    that no run stays falsely `running`."""
    from engine.data.run_records import mark_interrupted_runs
    from engine.data.store import open_store

    url = resolve_store_url(args)
    check_store_url(url)
    store = open_store(url)
    if store.read_only:  # nothing can be marked; commands that write say why when they try
        return store
    with store.session() as session:
        count = mark_interrupted_runs(session)
    if count:
        print(f"note: {count} run(s) left running by a process that ended are now marked interrupted; "
              "`automlp runs` lists them and `automlp resume RUN` continues one", file=sys.stderr)
    return store


def add_data_commands(subparsers) -> None:
    """Registers import, datasets, stats and delete on an argparse subparsers object."""
    command = subparsers.add_parser("import", help="import an interaction file into the store")
    command.add_argument("file", type=Path, help="interaction file (format detected, see --format)")
    command.add_argument("--format", choices=FORMATS, help="override the detected format")
    command.add_argument("--name", help="dataset name (default: the file name without extension)")
    command.add_argument("--map", dest="mapping", metavar="ROLE=COLUMN,...",
                         help="column mapping, e.g. user=userId,item=movieId,time=timestamp,rating=rating")
    command.add_argument("--separator", help="override the detected separator ('tab' for a tab)")
    command.add_argument("--encoding", help="text encoding (default utf-8; MovieLens .dat: latin-1)")
    command.add_argument("--times", type=Path, help="token-aligned timestamps of a line-per-user file")
    command.add_argument("--items", type=Path, nargs="+", default=[], metavar="FILE",
                         help="item metadata: movies.dat, RecBole .item, *_item2attributes.json")
    command.add_argument("--min-user", type=int, default=10,
                         help="keep users with at least N interactions (default 10, as the paper; 0 keeps all)")
    command.add_argument("--min-item", type=int, default=0, help="keep items with at least N interactions")
    command.add_argument("--quiet", action="store_true", help="no progress bar")
    add_store_argument(command)
    command.set_defaults(handler=command_import)

    command = subparsers.add_parser("datasets", help="list the stored datasets")
    add_store_argument(command)
    command.set_defaults(handler=command_datasets)

    command = subparsers.add_parser("stats", help="statistics of a stored dataset")
    command.add_argument("name")
    command.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_store_argument(command)
    command.set_defaults(handler=command_stats)

    command = subparsers.add_parser("delete", help="delete a stored dataset (its runs are kept)")
    command.add_argument("name")
    command.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_store_argument(command)
    command.set_defaults(handler=command_delete)


def parse_mapping(text: str | None) -> dict[str, str] | None:
    """'user=a,item=b' -> {"user": "a", "item": "b"}; raises ImportFailed for a malformed pair."""
    if not text:
        return None
    mapping = {}
    for pair in text.split(","):
        role, sep, column = pair.partition("=")
        if not sep or not role.strip() or not column.strip():
            raise ImportFailed(f"--map: {pair!r} is not ROLE=COLUMN (e.g. user=userId)")
        mapping[role.strip()] = column.strip()
    return mapping


def _run(handler):
    """Prints store and import errors as one line and returns exit status 2."""
    def wrapped(args) -> int:
        from engine.data.store_errors import StoreError

        try:
            return handler(args)
        except (ImportFailed, StoreError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    return wrapped


@_run
def command_import(args) -> int:
    from engine.data.importers import import_file
    from engine.data.store_errors import store_errors

    separator = {"tab": "\t", "\\t": "\t", "space": " "}.get(args.separator, args.separator)
    store = open_cli_store(args)
    progress = ProgressBarObserver(quiet=args.quiet)
    try:
        with store.session() as session, store_errors(store):  # read-only, full: said plainly
            report = import_file(session, args.file, name=args.name, format=args.format,
                                 mapping=parse_mapping(args.mapping), separator=separator,
                                 encoding=args.encoding, times_file=args.times, metadata_files=args.items,
                                 min_user_interactions=args.min_user, min_item_interactions=args.min_item,
                                 observer=progress)
    finally:
        if progress.bar is not None:
            progress.bar.close()
        store.close()
    print(f"imported {report.name!r} ({report.format}): {report.interactions:,} interactions, "
          f"{report.users:,} users, {report.items:,} items in {report.seconds:.1f} s")
    print(f"  read {report.rows_read:,} rows; dropped {report.duplicates_dropped:,} duplicates; "
          f"filtered {report.users_filtered:,} users, {report.items_filtered:,} items, "
          f"{report.interactions_filtered:,} interactions")
    return 0


@_run
def command_datasets(args) -> int:
    from engine.data.store import list_datasets

    store = open_cli_store(args)
    with store.session() as session:
        datasets = list_datasets(session)
    store.close()
    if not datasets:
        print(f"no datasets in {store.url}; add one with `automlp import FILE`")
        return 0
    print(f"{'name':<24}{'users':>10}{'items':>10}{'interactions':>14}  imported")
    for d in datasets:
        when = local_minute(d.created_at)
        print(f"{printable(d.name):<24}{d.n_users:>10,}{d.n_items:>10,}{d.n_interactions:>14,}  {when}")
    return 0


@_run
def command_stats(args) -> int:
    from engine.data.run_records import to_json
    from engine.data.store import dataset_stats

    store = open_cli_store(args)
    with store.session() as session:
        stats = dataset_stats(session, args.name)
    store.close()
    if args.json:
        print(to_json(stats))
        return 0
    lengths, span = stats["sequence_length"], stats["time_span"]
    print(f"{printable(stats['name'])}: {stats['users']:,} users, {stats['items']:,} items, "
          f"{stats['interactions']:,} interactions, density {stats['density']:.4%}")
    print(f"sequence length: min {lengths['min']}, median {lengths['median']:g}, "
          f"mean {lengths['mean']:.1f}, max {lengths['max']}")
    if span["first"] is not None:
        print(f"time span: {utc_date(span['first'])} to {utc_date(span['last'])}")
    else:
        print("time span: no timestamps (file order)")
    print("most popular items:")
    for row in stats["popular_items"]:
        print(f"  {row['interactions']:>8,}  {printable(row['item'])}  {printable(row['title'] or '')}")
    return 0


@_run
def command_delete(args) -> int:
    from engine.data.store import delete_dataset
    from engine.data.store_errors import StoreError

    if not args.yes:
        if not sys.stdin.isatty():
            raise StoreError(f"deleting {args.name!r} needs --yes when not asked interactively")
        if input(f"delete dataset {args.name!r} and its interactions? [y/N] ").strip().lower() != "y":
            print("nothing deleted")
            return 1
    store = open_cli_store(args)
    with store.session() as session:
        delete_dataset(session, args.name)
    store.close()
    print(f"deleted {args.name!r}")
    return 0
