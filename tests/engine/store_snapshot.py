"""What a store holds, to compare before and after a failure: equal snapshots mean an unchanged store."""

from __future__ import annotations

TABLES = ("datasets", "users", "items", "interactions", "runs", "run_series", "artifacts")


def store_snapshot(store) -> dict:
    """Row counts of every table, the dataset names, the run statuses and (SQLite) the integrity check."""
    with store.engine.connect() as connection:
        def scalar(sql: str):
            return connection.exec_driver_sql(sql).scalar()

        snapshot = {table: scalar(f"SELECT count(*) FROM {table}") for table in TABLES}
        snapshot["names"] = [r[0] for r in connection.exec_driver_sql("SELECT name FROM datasets ORDER BY name")]
        snapshot["statuses"] = [r[0] for r in connection.exec_driver_sql("SELECT status FROM runs ORDER BY id")]
        if connection.dialect.name == "sqlite":
            snapshot["integrity"] = scalar("PRAGMA integrity_check")
    return snapshot
