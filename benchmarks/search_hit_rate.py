"""Is the learned length right, and does it repeat? The search under N seeds against every candidate
retrained under M seeds (issue 14): a seed's choice is a hit when its length's exhaustive mean validation
NDCG@10 lies in the exhaustive noise band (the best mean minus the sample std over the seeds pooled over
every length, engine.training.length_choice.exhaustive_verdict); when every length lies in the band, the
length does not matter and every choice is a hit.

    python benchmarks/search_hit_rate.py --dataset ml-100k --part exhaustive --seeds 3
    python benchmarks/search_hit_rate.py --dataset ml-100k --part search --seeds 5
    python benchmarks/search_hit_rate.py --dataset ml-100k --part search --seeds 5 --set search_warmup_epochs=2
    python benchmarks/search_hit_rate.py --dataset sports --part confirm --seeds 5 --set confirm_epochs=3
    python benchmarks/search_hit_rate.py --combine

Each part appends one JSON line to benchmarks/results/search_hit_rate_parts.jsonl, made by the engine's own
choose_by_search / choose_exhaustively. The search part runs without the confirm stage (confirm_epochs=0):
it measures the search's own choices. The confirm part is the product's whole job: the search under N seeds,
then, when they disagree, the confirm stage (successive halving, `confirm_epochs` > 0); its confirmed length
hits or misses by the same rule, and its seconds are held against the whole exhaustive part's.

`--combine` joins each search line with the latest exhaustive line of the same dataset whose overrides agree
once the keys that do not reach the other part are dropped: the exhaustive part ignores the search-only keys
SEARCH_ONLY_KEYS (search_epochs, search_warmup_epochs, arch_lr, search_order, xi, settle_epochs,
confirm_epochs), and the search part ignores the retrain-only keys RETRAIN_ONLY_KEYS (retrain_epochs,
patience). Exhaustive lines of the same dataset and settings run for different first seeds (`--set seed=S`,
so that one seed per process can share the cores) are first merged into one line; where two lines hold the
same seed, the later one's scores count.

    python benchmarks/search_hit_rate.py --dataset sports --part exhaustive --seeds 1 --set seed=1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, append_result, load_dataset  # noqa: E402
from engine.core.config import RunConfig, parse_override  # noqa: E402
from engine.core.events import Observer  # noqa: E402
from engine.data.sequences import build_sequences  # noqa: E402
from engine.training.length_choice import (  # noqa: E402
    choose_by_search,
    choose_exhaustively,
    exhaustive_verdict,
    spread,
)

PARTS = "search_hit_rate_parts.jsonl"
SEARCH_ONLY_KEYS = {"search_epochs", "search_warmup_epochs", "arch_lr", "search_order", "xi", "settle_epochs",
                    "confirm_epochs"}
RETRAIN_ONLY_KEYS = {"retrain_epochs", "patience"}
DEFAULT_SEEDS = {"search": 5, "confirm": 5, "exhaustive": 3}


def run_part(dataset: str, part: str, seeds: int, overrides: dict) -> dict:
    """One part's JSON line (without date and machine, which append_result adds)."""
    config = RunConfig().replace(**overrides, seeds=seeds)
    if part == "search":
        config = config.replace(confirm_epochs=0)
    data = build_sequences(load_dataset(dataset), config.min_user_interactions)
    config = config.fitted_to(data.history_lengths("train"), data.n_items)
    device = torch.device("cpu")
    started = time.monotonic()
    record = {"benchmark": "search_hit_rate_part", "dataset": dataset, "part": part, "overrides": overrides,
              "seeds": seeds, "candidates": list(config.candidate_lengths), "torch": torch.__version__}
    if part in ("search", "confirm"):
        choice = choose_by_search(data, config, Observer(), device)
        record["choices"] = [{"seed": seed, "chosen_length": found.chosen_length,
                              "final_weights": {str(k): w for k, w in found.final_weights.items()},
                              "decisive": found.decisive, "seconds": found.seconds}
                             for seed, found in zip(choice.seeds, choice.searches)]
        if part == "confirm":
            record["confirmed_length"] = choice.chosen_length
            record["confirm_rounds"] = [{"epochs": r["epochs"], "scores": {str(k): v for k, v in r["scores"].items()}}
                                        for r in choice.confirm_rounds]
            record["confirm_seconds"] = choice.confirm_seconds
    else:
        choice = choose_exhaustively(data, config, Observer(), device)
        record["scores"] = {str(k): values for k, values in choice.scores.items()}
        record["band"] = choice.band
    record["verdict"] = choice.verdict
    record["seconds"] = time.monotonic() - started
    return record


# ---------------------------------------------------------------- pure: the hit rule and the table


def hits(choices: list[int], scores: dict[str, list[float]]) -> tuple[list[bool], bool, float]:
    """(hit per choice, whether the length does not matter, band). A choice hits when its length's mean
    lies at or above the band of the product's own verdict (exhaustive_verdict); when every length does,
    all hit."""
    _, _, _, band, equal = exhaustive_verdict({int(k): values for k, values in scores.items()})
    does_not_matter = len(equal) == len(scores)
    return [k in equal for k in choices], does_not_matter, band


def _comparable(overrides: dict, ignored: set[str]) -> str:
    return json.dumps({k: v for k, v in overrides.items() if k not in ignored | {"seed"}}, sort_keys=True)


def merge_seeds(exhaustive_lines: list[dict]) -> list[dict]:
    """The exhaustive lines with those of one dataset and the same overrides but their first seed merged,
    in the order of each group's latest line. Scores are lists in seed order from the line's first seed."""
    groups: dict[tuple[str, str], dict] = {}
    for line in exhaustive_lines:
        first_seed = line["overrides"].get("seed", RunConfig.seed)
        key = (line["dataset"], _comparable(line["overrides"], set()))
        group = groups.pop(key, {"scores": {}, "seconds": {}})  # re-inserted last: the latest line's place
        for k, values in line["scores"].items():
            for offset, value in enumerate(values):
                group["scores"].setdefault(k, {})[first_seed + offset] = value
        for offset in range(line["seeds"]):
            group["seconds"][first_seed + offset] = line["seconds"] / line["seeds"]
        group["line"] = line
        groups[key] = group
    merged = []
    for group in groups.values():
        line = group["line"]
        seeds = sorted(group["seconds"])
        merged.append({**line, "overrides": {k: v for k, v in line["overrides"].items() if k != "seed"},
                       "seeds": len(seeds), "seconds": sum(group["seconds"].values()),
                       "scores": {k: [by_seed[seed] for seed in seeds] for k, by_seed in group["scores"].items()}})
    return merged


def combine(parts: list[dict]) -> list[dict]:
    """One row per search line that has a matching exhaustive line (the latest such line)."""
    exhaustive: dict[tuple[str, str], dict] = {}
    for line in merge_seeds([line for line in parts if line["part"] == "exhaustive"]):
        exhaustive[(line["dataset"], _comparable(line["overrides"], RETRAIN_ONLY_KEYS))] = line
    rows = []
    for line in parts:
        if line["part"] not in ("search", "confirm"):
            continue
        match = exhaustive.get((line["dataset"], _comparable(line["overrides"], SEARCH_ONLY_KEYS)))
        if match is None:
            continue
        choices = [entry["chosen_length"] for entry in line["choices"]]
        hit, does_not_matter, band = hits(choices, match["scores"])
        search_per_seed = line["seconds"] / line["seeds"]
        exhaustive_per_seed = match["seconds"] / match["seeds"]
        rows.append({"dataset": line["dataset"], "variant": line["overrides"],
                     "exhaustive_overrides": match["overrides"], "choices": choices, "hits": hit,
                     "hit_count": sum(hit), "does_not_matter": does_not_matter, "band": band,
                     "per_k": {k: (float(np.mean(v)), spread(v)) for k, v in match["scores"].items()},
                     "exhaustive_seeds": match["seeds"], "search_seconds_per_seed": search_per_seed,
                     "exhaustive_seconds_per_seed": exhaustive_per_seed,
                     "time_ratio": search_per_seed / exhaustive_per_seed,
                     "machine": line["machine"], "date": line["date"]})
        if line["part"] == "confirm":
            confirmed = line["confirmed_length"]
            rows[-1].update(confirmed=confirmed, confirmed_hit=hits([confirmed], match["scores"])[0][0],
                            job_seconds=line["seconds"], exhaustive_seconds=match["seconds"],
                            job_ratio=line["seconds"] / match["seconds"])
    return rows


def _variant(overrides: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "defaults"


def table(rows: list[dict]) -> str:
    """The markdown table of the combined rows."""
    lines = ["| dataset | variant | exhaustive | seeds' choices | hits | hit rate | per-k mean ± spread "
             "(band) | search s/seed | exhaustive s/seed | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        per_k = ", ".join(f"{k}: {mean:.4f} ± {sd:.4f}" for k, (mean, sd) in row["per_k"].items())
        per_k += f" (band {row['band']:.4f})"
        if row["does_not_matter"]:
            per_k += "; length does not matter"
        marks = " ".join("hit" if h else "miss" for h in row["hits"])
        lines.append(f"| {row['dataset']} | {_variant(row['variant'])} | "
                     f"{_variant(row['exhaustive_overrides'])}, {row['exhaustive_seeds']} seeds | "
                     f"{', '.join(map(str, row['choices']))} | {marks} | "
                     f"{row['hit_count']} of {len(row['hits'])} | {per_k} | "
                     f"{row['search_seconds_per_seed']:.0f} | {row['exhaustive_seconds_per_seed']:.0f} | "
                     f"{row['time_ratio']:.2f} |")
    confirmed = [row for row in rows if "confirmed" in row]
    if confirmed:
        lines += ["", "| dataset | variant | seeds' choices | confirmed k | hit | search + confirm s | "
                      "exhaustive s (all seeds) | ratio |", "|---|---|---|---|---|---|---|---|"]
        for row in confirmed:
            lines.append(f"| {row['dataset']} | {_variant(row['variant'])} | {', '.join(map(str, row['choices']))} | "
                         f"{row['confirmed']} | {'hit' if row['confirmed_hit'] else 'miss'} | "
                         f"{row['job_seconds']:.0f} | {row['exhaustive_seconds']:.0f} "
                         f"({row['exhaustive_seeds']} seeds) | {row['job_ratio']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k", choices=["ml-100k", "ml-1m", "beauty", "sports"])
    parser.add_argument("--part", choices=["search", "confirm", "exhaustive"])
    parser.add_argument("--seeds", type=int, help="default: 5 for search and confirm, 3 for exhaustive")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--combine", action="store_true", help="join the recorded parts; train nothing")
    args = parser.parse_args()
    if args.combine:
        path = RESULTS / PARTS
        lines = path.read_text().splitlines() if path.exists() else []
        print(table(combine([json.loads(line) for line in lines])))
        return
    if args.part is None:
        parser.error("give --part search, confirm or exhaustive (or --combine)")
    seeds = args.seeds or DEFAULT_SEEDS[args.part]
    if seeds < 1:
        parser.error(f"--seeds must be at least 1, got {seeds}")
    overrides = dict(parse_override(text) for text in args.overrides)
    if args.part == "confirm" and not overrides.get("confirm_epochs"):
        parser.error("--part confirm needs --set confirm_epochs=N (N > 0): the confirm stage's first round")
    append_result(PARTS, run_part(args.dataset, args.part, seeds, overrides))


if __name__ == "__main__":
    main()
