"""Fault injection: processes SIGKILLed while they export a model bundle and record it in the store.

`python -m tests.engine.kill_export FOLDER KILLS [SEED]` builds, in FOLDER, a store with a dataset and a
finished run, and that run's bundle. Then, KILLS times, it forks a saver that exports the bundle again and
again over the same target (a folder on even kills, a .zip on odd ones; overwrite, as a resumed run
does) and records each export as an artifact, kills the saver with SIGKILL at a random moment, and
checks what it left:

- the target: absent, or a complete bundle (`load_bundle` verifies every file's size and sha256);
  anything else counts as `partial`;
- the store: integrity_check "ok", its dataset rows, its run and its earlier artifacts as they were;
- the saver's `.part` folder: removed by the next save (`parts_left_after_next_save`, counted at the end).

Prints the counts as one JSON line. Forking keeps a kill cheap (no interpreter start per kill); the
savers use one torch thread, so no thread pool crosses a fork.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace


def main(argv: list[str]) -> int:
    import torch

    torch.set_num_threads(1)
    import pandas as pd

    from engine.core.config import RunConfig
    from engine.data.importers import import_file
    from engine.data.run_records import add_artifact, create_run, finish_run
    from engine.data.sequences import build_sequences
    from engine.data.store import load_log, open_store
    from engine.data.synthetic import planted_log
    from engine.models.automlp import ModelShape, build_model
    from engine.serving.bundle import (
        BundleError,
        bundle_digest,
        load_bundle,
        save_bundle,
    )

    folder, kills = Path(argv[0]), int(argv[1])
    rng = random.Random(int(argv[2]) if len(argv) > 2 else 0)
    url = f"sqlite:///{folder / 'store.sqlite'}"
    csv = folder / "planted.csv"
    log = planted_log(n_users=300, n_items=400, min_length=8, max_length=30)
    pd.DataFrame({"user": log.users, "item": log.items, "timestamp": log.timestamps}).to_csv(csv, index=False)
    config = RunConfig(candidate_lengths=[1, 2, 4, 8], max_length=20, embedding_dim=64, device="cpu")
    store = open_store(url)
    with store.session() as session:
        import_file(session, csv, name="planted", min_user_interactions=3)
        data = build_sequences(load_log(session, "planted"), 3)
        run_id = create_run(session, "planted", config.to_dict(), "cpu")
        finish_run(session, run_id, 4, {}, 1.0)
    parts = SimpleNamespace(model=build_model(ModelShape.from_config(config, data.n_items)), config=config,
                            chosen_length=4, metrics={})
    targets = [folder / "runs" / f"run-{run_id}", folder / "exports" / "run.zip"]
    for target in targets:
        save_bundle(parts, data, target, zip=target.suffix == ".zip")

    def save_and_record(target: Path, into) -> None:
        path = save_bundle(parts, data, target, zip=target.suffix == ".zip", overwrite=True)
        with into.session() as session:
            add_artifact(session, run_id, str(path), "bundle", bundle_digest(path))

    cycle = _seconds_per_cycle(lambda: save_and_record(targets[0], store))
    expected = _store_state(store)
    store.close()

    def save_forever(target: Path, ready: int) -> None:
        saver_store = open_store(url)
        os.write(ready, b"1")  # set up: from here on a kill lands in a save or its record
        while True:
            save_and_record(target, saver_store)

    counts = Counter(kills=0, complete=0, absent=0, partial=0, store_damaged=0)
    artifacts = expected["artifacts"]
    for kill in range(kills):
        target = targets[kill % 2]
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the saver
            try:
                os.close(read_end)
                save_forever(target, write_end)
            except BaseException as error:
                print(f"saver: {type(error).__name__}: {error}", file=sys.stderr)
            finally:
                os._exit(1)
        os.close(write_end)
        os.read(read_end, 1)
        os.close(read_end)
        time.sleep(rng.uniform(0.0, 10 * cycle))  # a few saves, killed in any part of one
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        counts["kills"] += 1
        if not target.exists():
            counts["absent"] += 1
        else:
            try:
                load_bundle(target)
                counts["complete"] += 1
            except BundleError as error:
                counts["partial"] += 1
                print(f"kill {kill}: {error}", file=sys.stderr)
        store = open_store(url)
        state = _store_state(store)
        store.close()
        if state["integrity"] != "ok" or state["fixed"] != expected["fixed"] or state["artifacts"] < artifacts:
            counts["store_damaged"] += 1
            print(f"kill {kill}: store {state}", file=sys.stderr)
        artifacts = state["artifacts"]
    counts["saves_recorded"] = artifacts - expected["artifacts"]
    counts["seconds_per_save"] = round(cycle, 4)
    for target in targets:  # a save after the kills removes what the killed savers left
        save_bundle(parts, data, target, zip=target.suffix == ".zip", overwrite=True)
    counts["parts_left_after_next_save"] = sum(
        len(list(target.parent.glob(f".{target.name}.*.part"))) for target in targets)
    print(json.dumps(dict(counts)))
    return 0


def _store_state(store) -> dict:
    with store.engine.connect() as connection:
        def scalar(sql):
            return connection.exec_driver_sql(sql).scalar()

        return {"integrity": scalar("PRAGMA integrity_check"),
                "fixed": [scalar(f"SELECT count(*) FROM {t}") for t in ("datasets", "users", "items", "interactions")]
                + [scalar("SELECT status FROM runs WHERE id = 1")],
                "artifacts": scalar("SELECT count(*) FROM artifacts")}


def _seconds_per_cycle(save) -> float:
    save()  # warm up
    started = time.monotonic()
    for _ in range(5):
        save()
    return (time.monotonic() - started) / 5


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
