"""Shared helpers of the benchmark scripts: the real datasets (read from ../shared/data, never copied),
machine description and the JSON-lines results files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
from pathlib import Path

import torch

from engine.data.importers import read_interactions, read_item_metadata
from engine.data.sequences import InteractionLog

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("AUTOMLP_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"


def load_dataset(name: str) -> InteractionLog:
    """`ml-1m` (SASRec's file, the one behind the published figures), `beauty` (S3Rec's Beauty.txt with
    its timestamps and item attributes as a feature) or `ml-100k` (RecBole atomic files with genres)."""
    if name == "ml-1m":
        frame = read_interactions(DATA / "ml-1m" / "sasrec_ml-1m.txt")
        return InteractionLog(frame["user"].to_numpy(), frame["item"].to_numpy(), name="ml-1m")
    if name == "beauty":
        folder = DATA / "amazon-beauty"
        frame = read_interactions(folder / "Beauty.txt", times_file=folder / "Beauty_time.txt")
        _, features = read_item_metadata(folder / "Beauty_item2attributes.json")
        return InteractionLog(frame["user"].to_numpy(), frame["item"].to_numpy(), frame["timestamp"].to_numpy(),
                              item_features=features, name="beauty")
    if name == "sports":  # S3Rec's Amazon Sports file: 35,598 users, median 6 interactions
        folder = DATA / "amazon-sports"
        frame = read_interactions(folder / "Sports_and_Outdoors.txt", times_file=folder / "Sports_time.txt")
        return InteractionLog(frame["user"].to_numpy(), frame["item"].to_numpy(), frame["timestamp"].to_numpy(),
                              name="sports")
    if name == "ml-100k":
        folder = DATA / "ml-100k"
        frame = read_interactions(folder / "ml-100k.inter")
        titles, features = read_item_metadata(folder / "ml-100k.item")
        return InteractionLog(frame["user"].to_numpy(), frame["item"].to_numpy(), frame["timestamp"].to_numpy(),
                              item_titles=titles, item_features=features, name="ml-100k")
    raise SystemExit(f"unknown dataset {name!r}: ml-1m, beauty, sports or ml-100k")


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (torch {torch.__version__})"


def peak_memory_mib() -> dict:
    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def append_result(file_name: str, record: dict) -> None:
    record = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(), **record}
    line = json.dumps(record)
    print(line, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / file_name, "a") as results:
        results.write(line + "\n")
