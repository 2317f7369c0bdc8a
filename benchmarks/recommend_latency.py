"""Recommendation latency at MovieLens-1M size: top-10 for one user, all users to CSV, ONNX beside torch.

    python benchmarks/recommend_latency.py [--repeats 300] [--k 50] [--data ../shared/data]

Data, in order of preference (read in place, never copied into the repository):
`ml-1m/sasrec_ml-1m.txt` (SASRec's `user item` pairs, 6,040 users, 3,416 items), else
`ml-1m/ml-1m_chrono_original_ids.txt` (one line per user, `user i1 i2 ...`, 3,706 items), else a synthetic
log of the SASRec file's size. The model is randomly initialised with the default shape (T=200, D=64,
causal mode, L=2) and one short-term module of length --k, as after retraining: latency needs no training.

Measured (medians over --repeats calls, random users; the machine is shared, so its load is recorded):
- `recommend(model, data, user, n=10)`: the whole call (lookup, forward, parts, masking, top-n, ranks),
  with torch's default threads and with one thread (small tensors gain nothing from a second thread);
- `recommend_all_to_csv` for every user (batch 512) into a temporary folder;
- the scores of one sequence, (1, T) -> (1, N + 1): torch's full forward pass, torch at the last position
  only (what `recommend` runs), and onnxruntime on the exported model.onnx (the last-position graph).
Prints one JSON line and appends it to benchmarks/results/recommend.jsonl.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.core.config import RunConfig  # noqa: E402
from engine.data.sequences import InteractionLog, build_sequences  # noqa: E402
from engine.models.automlp import ModelShape, build_model  # noqa: E402
from engine.serving.bundle import save_bundle  # noqa: E402
from engine.serving.recommend import recommend, recommend_all_to_csv  # noqa: E402


def load_ml1m(data_dir: Path) -> tuple[InteractionLog, str]:
    sasrec = data_dir / "ml-1m" / "sasrec_ml-1m.txt"
    chrono = data_dir / "ml-1m" / "ml-1m_chrono_original_ids.txt"
    if sasrec.exists():
        pairs = np.loadtxt(sasrec, dtype=np.int64)
        return InteractionLog(pairs[:, 0], pairs[:, 1], name="ml-1m (SASRec)"), str(sasrec.name)
    if chrono.exists():
        users, items = [], []
        for line in chrono.read_text().splitlines():
            tokens = line.split()
            users += [int(tokens[0])] * (len(tokens) - 1)
            items += map(int, tokens[1:])
        return InteractionLog(np.array(users), np.array(items), name="ml-1m"), str(chrono.name)
    rng = np.random.default_rng(0)  # same size as SASRec's ML-1M: 6,040 users, 3,416 items, ~1M interactions
    lengths = np.clip(rng.lognormal(4.6, 1.0, 6040).astype(int), 20, 2300)
    lengths = (lengths * (999_611 / lengths.sum())).astype(int) + 1
    users = np.repeat(np.arange(6040), lengths)
    items = np.minimum(rng.zipf(1.3, len(users)), 3416)
    return InteractionLog(users, items, name="synthetic ml-1m size"), "synthetic"


def median_ms(call, repeats: int) -> tuple[float, float]:
    """(median, 90th percentile) wall milliseconds of `call(i)` over `repeats` calls, after 10 warm-ups."""
    for i in range(10):
        call(i)
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), float(np.percentile(times, 90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--k", type=int, default=50, help="the retrained short-term length")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()

    log, source = load_ml1m(args.data)
    data = build_sequences(log, min_user_interactions=3)
    config = RunConfig()  # default shape: T=200, D=64, L=2, causal, candidates 5..100
    torch.manual_seed(0)
    model = build_model(ModelShape.from_config(config, data.n_items, [args.k]), data.features, "cpu").eval()
    users = np.random.default_rng(0).choice(data.user_ids, max(args.repeats, 10))
    default_threads = torch.get_num_threads()

    top10_ms, top10_p90 = median_ms(lambda i: recommend(model, data, users[i % len(users)], n=10), args.repeats)
    torch.set_num_threads(1)
    top10_1t_ms, top10_1t_p90 = median_ms(lambda i: recommend(model, data, users[i % len(users)], n=10),
                                          args.repeats)
    torch.set_num_threads(default_threads)

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        recommend_all_to_csv(model, data, Path(folder) / "recs.csv", n=10, batch_size=512)
        all_users_s = time.perf_counter() - started
        csv_bytes = (Path(folder) / "recs.csv").stat().st_size

        started = time.perf_counter()
        bundle = save_bundle(_Parts(model, config, args.k), data, Path(folder) / "bundle", onnx=True)
        export_s = time.perf_counter() - started
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = default_threads
        session = onnxruntime.InferenceSession(str(bundle / "model.onnx"), options,
                                               providers=["CPUExecutionProvider"])
        sequences = data.histories("test", config.max_length)
        ort_ms, ort_p90 = median_ms(lambda i: session.run(None, {"sequences": sequences[i % 6040:i % 6040 + 1]}),
                                    args.repeats)
        with torch.inference_mode():
            torch_ms, torch_p90 = median_ms(lambda i: model(torch.from_numpy(sequences[i % 6040:i % 6040 + 1])),
                                            args.repeats)

    record = {
        "benchmark": "recommend_latency", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "python benchmarks/recommend_latency.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "load_average_1min": os.getloadavg()[0],
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__, "data": source, "users": data.n_users, "items": data.n_items,
        "interactions": data.n_interactions, "T": config.max_length, "D": config.embedding_dim, "k": args.k,
        "threads": default_threads, "repeats": args.repeats,
        "top10_median_ms": round(top10_ms, 3), "top10_p90_ms": round(top10_p90, 3),
        "top10_1thread_median_ms": round(top10_1t_ms, 3), "top10_1thread_p90_ms": round(top10_1t_p90, 3),
        "all_users_csv_s": round(all_users_s, 3), "csv_mb": round(csv_bytes / 1e6, 2),
        "export_with_onnx_s": round(export_s, 2),
        "torch_forward_median_ms": round(torch_ms, 3), "onnx_forward_median_ms": round(ort_ms, 3),
        "torch_forward_p90_ms": round(torch_p90, 3), "onnx_forward_p90_ms": round(ort_p90, 3),
    }
    line = json.dumps(record)
    print(line)
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    with open(results / "recommend.jsonl", "a", encoding="utf-8") as out:
        out.write(line + "\n")


class _Parts:
    """What save_bundle needs of a run: the model, its configuration and chosen length (no metrics)."""

    def __init__(self, model, config, chosen_length) -> None:
        self.model, self.config, self.chosen_length, self.metrics = model, config, chosen_length, {}


if __name__ == "__main__":
    main()
