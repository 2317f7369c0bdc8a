"""Cost against the maximum length T: AutoMLP (retraining, one short-term module) against the SASRec baseline.

Same data (MovieLens-1M), same D, L, FFN/channel width, dropout and batch size, same training step
(`training_batches` -> `batch_loss` -> backward -> Adam) for both models. For every (mode, T) the two models
run back to back (in alternating order over `--rounds`), so that both see the same machine load. Each case
has its own peak memory: on CUDA, the peak of `torch.cuda.max_memory_allocated` over the timed steps above
what was allocated before them (reset per case); on the CPU, the peak of torch's own allocations over one
profiled step (the resident size also holds the allocator's and thread pools' memory), and each case runs
in a fresh subprocess so that its peak resident set size (ru_maxrss) is its own.

    python benchmarks/cost_vs_length.py                           # T = 50 100 200 400, causal and sampled
    python benchmarks/cost_vs_length.py --quick                   # fewer steps: the GPU pass
    python benchmarks/cost_vs_length.py --lengths 50 100 --steps 3 --modes causal

Prints one JSON line per (model, mode, T) and one `ratio` line per (mode, T) (AutoMLP over SASRec) and
appends them to benchmarks/results/cost_vs_length.jsonl; benchmarks/report.py makes the tables and plot.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.core.config import RunConfig  # noqa: E402
from engine.models.automlp import ModelShape, build_model, count_parameters  # noqa: E402
from engine.models.sasrec import SASRecShape, build_sasrec  # noqa: E402
from engine.training.batches import batch_loss, steps_per_epoch, training_batches
from engine.training.device import resolve_device  # noqa: E402

RESULTS_FILE = "cost_vs_length.jsonl"
MODELS = ("automlp", "sasrec")


def case_config(args, mode: str, T: int) -> RunConfig:
    return RunConfig(candidate_lengths=[min(args.short_length, T)], max_length=T, mode=mode,
                     batch_size=args.batch_size, embedding_dim=args.dim, num_layers=args.layers, device=args.device)


def resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_case(data, config: RunConfig, model_name: str, warmup: int, steps: int, heads: int) -> dict:
    """Times `steps` training steps after `warmup` ones; returns the step times and the step's peak memory."""
    device = resolve_device(config.device)
    torch.manual_seed(0)
    if model_name == "automlp":
        model = build_model(ModelShape.from_config(config, data.n_items, config.candidate_lengths), device=device)
    else:
        model = build_sasrec(SASRecShape.from_config(config, data.n_items, num_heads=heads), device=device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    batches = training_batches(data, config, np.random.default_rng(0), device)
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def step(batch) -> None:
        loss = batch_loss(model, batch, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # One step on a single sequence first: it creates Adam's state and initialises the runtime's lazy
    # libraries, so that the memory measured below is what a batch itself needs.
    first = batches[0]
    step(type(first)(first.inputs[:1], first.targets[:1]))
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before, peak_before = resident_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    for index in range(warmup + steps):
        batch = batches[index % len(batches)]
        sync()
        started = time.perf_counter()
        step(batch)
        sync()
        if index >= warmup:
            times.append(time.perf_counter() - started)
    if cuda:
        memory = {"memory": "cuda max_memory_allocated - allocated before the steps",
                  "step_memory_mib": (torch.cuda.max_memory_allocated() - before) / 2**20,
                  "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20}
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        # The resident size mixes the step's tensors with the allocator's and the thread pools' own
        # (about 230 MiB here whatever T and the model), so the step's memory is taken from torch's
        # allocation events instead; the process's peak RSS is kept as the footprint.
        memory = {"memory": "peak of torch's CPU allocations during one step (profiler, op granularity)",
                  "step_memory_mib": profiled_peak_mib(step, batches[0]),
                  "peak_memory_mib": peak, "rss_growth_over_steps_mib": peak - before,
                  "rss_growth_is_upper_bound": peak <= peak_before}
    return {"step_seconds_all": [round(t, 5) for t in times], "parameters": count_parameters(model),
            "device": str(device), "threads": torch.get_num_threads(), **memory}


def profiled_peak_mib(step, batch) -> float:
    """Runs `step(batch)` under torch's profiler and returns the peak of its running allocation total.

    Each op's own allocations net of its own frees, in start order; tensors freed between ops appear as
    `[memory]` events with negative sizes. The CPU's counterpart of torch.cuda.max_memory_allocated.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step(batch)
    total = highest = 0
    for event in sorted((e for e in profiler.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start):
        total += event.self_cpu_memory_usage
        highest = max(highest, total)
    return highest / 2**20


def spawn_case(data_file: str, args, model_name: str, mode: str, T: int) -> dict:
    """Runs one case in a fresh interpreter (its own peak memory) and returns its JSON answer."""
    command = [sys.executable, __file__, "--case", model_name, mode, str(T), "--data-file", data_file,
               "--warmup", str(args.warmup), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--dim", str(args.dim), "--layers", str(args.layers), "--heads", str(args.heads),
               "--short-length", str(args.short_length), "--device", args.device]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(model_name: str, mode: str, T: int, config: RunConfig, answers: list[dict], steps_epoch: int,
              run: str, args) -> dict:
    times = [t for answer in answers for t in answer["step_seconds_all"]]
    seconds = statistics.median(times)
    first = answers[0]
    return {
        "benchmark": "cost_vs_length", "record": "case", "run": run, "dataset": "ml-1m", "model": model_name,
        "mode": mode, "T": T, "short_length": config.candidate_lengths[0] if model_name == "automlp" else None,
        "heads": args.heads if model_name == "sasrec" else None, "D": config.embedding_dim,
        "L": config.num_layers, "ffn_or_channel_hidden": config.channel_hidden, "batch_size": config.batch_size,
        "parameters": first["parameters"], "device": first["device"], "threads": first["threads"],
        "warmup": args.warmup, "timed_steps": len(times), "rounds": len(answers),
        "step_seconds": round(seconds, 5), "step_seconds_all": times, "steps_per_epoch": steps_epoch,
        "epoch_seconds": round(seconds * steps_epoch, 3),
        "sequences_per_second": round(config.batch_size / seconds, 1),
        "memory": first["memory"], "step_memory_mib": round(max(a["step_memory_mib"] for a in answers), 1),
        "peak_memory_mib": round(max(a["peak_memory_mib"] for a in answers), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--modes", nargs="+", default=["causal", "sampled"], choices=["causal", "sampled"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per case and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every pair, alternating which model goes first")
    parser.add_argument("--quick", action="store_true", help="5 timed steps after 2 warm-up steps")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--dim", type=int, default=64, help="D, both models")
    parser.add_argument("--layers", type=int, default=2, help="L, both models")
    parser.add_argument("--heads", type=int, default=1, help="SASRec's attention heads (SASRec used 1 on ML-1M)")
    parser.add_argument("--short-length", type=int, default=5, help="AutoMLP's retrained short-term length k")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--subprocesses", action="store_true", help="one process per case on CUDA too")
    parser.add_argument("--no-save", action="store_true", help="print the lines without appending them")
    parser.add_argument("--case", nargs=3, metavar=("MODEL", "MODE", "T"), help=argparse.SUPPRESS)
    parser.add_argument("--data-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup = 5, 2

    if args.case:  # worker: one case, one JSON line on stdout
        with open(args.data_file, "rb") as stream:
            data = pickle.load(stream)
        model_name, mode, T = args.case[0], args.case[1], int(args.case[2])
        answer = run_case(data, case_config(args, mode, T), model_name, args.warmup, args.steps, args.heads)
        print(json.dumps(answer), flush=True)
        return

    from benchmarks.common import load_dataset, machine
    from engine.data.sequences import build_sequences

    data = build_sequences(load_dataset("ml-1m"))
    run = datetime.datetime.now().isoformat(timespec="seconds")
    # CUDA's peak counter can be reset between cases, so there the cases share one process and skip the
    # start-up of a fresh interpreter and CUDA context each; the CPU's peak RSS cannot be reset.
    in_process = resolve_device(args.device).type == "cuda" and not args.subprocesses
    print(f"# {machine()}; ML-1M {data.n_users} users, {data.n_items} items; run {run}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        data_file = os.path.join(folder, "ml-1m.pickle")
        with open(data_file, "wb") as stream:
            pickle.dump(data, stream)
        for mode in args.modes:
            for T in args.lengths:
                config = case_config(args, mode, T)
                answers: dict[str, list[dict]] = {name: [] for name in args.models}
                for round_index in range(args.rounds):
                    order = args.models if round_index % 2 == 0 else args.models[::-1]
                    for name in order:
                        if in_process:
                            answers[name].append(run_case(data, config, name, args.warmup, args.steps, args.heads))
                        else:
                            answers[name].append(spawn_case(data_file, args, name, mode, T))
                cases = {name: summarise(name, mode, T, config, answers[name], steps_per_epoch(data, config), run, args)
                         for name in args.models}
                for record in cases.values():
                    emit(record, not args.no_save)
                if set(cases) == set(MODELS):
                    ours, theirs = cases["automlp"], cases["sasrec"]
                    emit({"benchmark": "cost_vs_length", "record": "ratio", "run": run, "dataset": "ml-1m",
                          "mode": mode, "T": T, "device": ours["device"],
                          "automlp_step_seconds": ours["step_seconds"], "sasrec_step_seconds": theirs["step_seconds"],
                          "time_ratio": round(ours["step_seconds"] / theirs["step_seconds"], 3),
                          "automlp_step_memory_mib": ours["step_memory_mib"],
                          "sasrec_step_memory_mib": theirs["step_memory_mib"],
                          "memory_ratio": round(ours["step_memory_mib"] / max(theirs["step_memory_mib"], 1e-9), 3)},
                         not args.no_save)


def emit(record: dict, save: bool) -> None:
    from benchmarks.common import (  # the parent only: workers stay lean
        append_result,
        machine,
    )

    if save:
        append_result(RESULTS_FILE, record)
    else:
        print(json.dumps({"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
                          **record}), flush=True)


if __name__ == "__main__":
    main()
