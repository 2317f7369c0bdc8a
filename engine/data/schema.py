"""The store's tables (SQLAlchemy 2.0 typed models): datasets, users, items, interactions, runs, run series,
artifacts and the store's identity.

Interactions are written in bulk by `engine.data.importers` in the order of their sequences: a dataset's
interactions have the consecutive ids `first_interaction_id + position`, where `position` is the 0-based
index after sorting by (user, time, file order). So the id order alone gives every user's chronological
sequence with ties broken stably, each user's interactions are one contiguous range
(`User.first_position`, `User.n_interactions`), and reading or deleting a dataset walks the primary key:
no secondary index on this table, which keeps the bulk insert close to SQLite's own `.import` speed.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID_LENGTH = 200  # the longest dataset name and user or item id stored (every backend refuses longer alike)
RUN_STATUSES = ("running", "finished", "failed", "cancelled", "interrupted")
PHASE_ORDER = ("search", "retrain", "evaluate", "export")


class Base(DeclarativeBase):
    pass


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(ID_LENGTH), unique=True)
    source: Mapped[str] = mapped_column(sa.Text, default="")  # the imported file(s), for display
    created_at: Mapped[float]  # unix seconds
    n_users: Mapped[int]
    n_items: Mapped[int]
    n_interactions: Mapped[int]
    has_timestamps: Mapped[bool]
    has_ratings: Mapped[bool]
    first_interaction_id: Mapped[int]  # interactions are ids [first, first + n_interactions)
    import_report: Mapped[dict] = mapped_column(sa.JSON, default=dict)  # format, filters, drops


class User(Base):
    __tablename__ = "users"
    __table_args__ = (sa.UniqueConstraint("dataset_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(sa.ForeignKey("datasets.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    first_position: Mapped[int]  # this user's interactions are positions [first, first + n)
    n_interactions: Mapped[int]


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (sa.UniqueConstraint("dataset_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(sa.ForeignKey("datasets.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    title: Mapped[str | None] = mapped_column(sa.Text)
    attributes: Mapped[dict | None] = mapped_column(sa.JSON)  # {feature name: [values]}, e.g. genre
    n_interactions: Mapped[int]


class Interaction(Base):
    """One interaction; `id - Dataset.first_interaction_id` is its position in the dataset's sequences.

    `user_id` and `item_id` carry no foreign-key constraint on purpose: a per-row check doubles the bulk
    insert time, and only the importer writes this table (the ids are its own)."""

    __tablename__ = "interactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(sa.ForeignKey("datasets.id", ondelete="CASCADE"))
    user_id: Mapped[int]
    item_id: Mapped[int]
    timestamp: Mapped[int | None] = mapped_column(sa.BigInteger)  # unix seconds, None: file order
    rating: Mapped[float | None]


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (sa.Index("ix_runs_started_at", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # A run outlives its dataset: the name stays for display, the link is cleared.
    dataset_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("datasets.id", ondelete="SET NULL"), index=True)
    dataset_name: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    config: Mapped[dict] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(20), index=True)
    device: Mapped[str] = mapped_column(sa.String(50))
    chosen_length: Mapped[int | None]
    metrics: Mapped[dict | None] = mapped_column(sa.JSON)
    started_at: Mapped[float]  # unix seconds
    finished_at: Mapped[float | None]
    seconds: Mapped[float | None]
    version: Mapped[str] = mapped_column(sa.String(50))  # engine.__version__ that made the run
    error: Mapped[str | None] = mapped_column(sa.Text)
    pid: Mapped[int | None]
    # Who holds a running run: `pid` on `host` (run_records.host_identity(): host name, boot id, pid
    # namespace), which renews `heartbeat_at` (unix seconds) while it runs. None in runs of older releases.
    host: Mapped[str | None] = mapped_column(sa.String(300))
    heartbeat_at: Mapped[float | None]


class StoreIdentity(Base):
    """The store's identity: one row, written when the store is created or upgraded to schema 0003. Its
    runs keep their bundles and checkpoints in a folder named by `id`, which no other store shares."""

    __tablename__ = "store_identity"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)  # a uuid4
    created_at: Mapped[float]  # unix seconds
    # Runs up to this id were made before the store had an identity: their checkpoints are in the folder
    # that every store of a release before 0003 shared (their bundles' paths are in the artifacts).
    legacy_runs_upto: Mapped[int]


class RunSeries(Base):
    __tablename__ = "run_series"
    __table_args__ = (sa.Index("ix_run_series_run_name_step", "run_id", "name", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"))
    phase: Mapped[str] = mapped_column(sa.String(20))
    step: Mapped[int]
    name: Mapped[str] = mapped_column(sa.String(100))
    value: Mapped[float]
    per: Mapped[str] = mapped_column(sa.String(10), server_default="step")  # "step" or "epoch": what `step` counts


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.String(50))  # e.g. "bundle", "recommendations", "plot"
    sha256: Mapped[str] = mapped_column(sa.String(64))


