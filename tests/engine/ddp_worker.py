"""One rank of a distributed test run, as torchrun starts it (tests/engine/test_distributed.py).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/engine/ddp_worker.py OUT CONFIG
        [--checkpoint PATH] [--resume] [--kill-after PHASE:EPOCH] [--baseline]

Runs `run_automlp` on the planted data of `ddp_data()` with the configuration CONFIG (JSON), and writes
OUT/rank-R.json: the run's summary with alpha after every step. `--checkpoint` keeps a checkpoint there,
`--resume` continues from it, and `--kill-after` makes rank 0 SIGKILL itself when that epoch's metrics
are out (the checkpoint of the epoch before is then the last one). `--baseline` trains the SASRec
baseline instead (`run_baseline`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

from engine.core.config import RunConfig
from engine.core.events import EpochFinished, Observer
from engine.data.sequences import SequenceData, build_sequences
from engine.data.synthetic import planted_log


def ddp_data() -> SequenceData:
    return build_sequences(planted_log(n_users=100, n_items=60, min_length=8, max_length=14, seed=2))


class KillAfter(Observer):
    def __init__(self, phase: str, epoch: int) -> None:
        super().__init__()
        self.phase, self.epoch = phase, epoch

    def emit(self, event) -> None:
        if isinstance(event, EpochFinished) and (event.phase, event.epoch) == (self.phase, self.epoch):
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    from engine.training.baseline import run_baseline
    from engine.training.checkpoint import load_checkpoint
    from engine.training.runner import run_automlp

    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("config")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-after")
    parser.add_argument("--baseline", action="store_true")
    args = parser.parse_args()
    observer = None
    if args.kill_after:
        phase, epoch = args.kill_after.split(":")
        observer = KillAfter(phase, int(epoch))
    resume = load_checkpoint(args.checkpoint) if args.resume else None
    config = RunConfig.from_dict(json.loads(args.config))
    if args.baseline:
        result = run_baseline(ddp_data(), config)
    else:
        result = run_automlp(ddp_data(), config, observer, checkpoint_path=None if args.resume else args.checkpoint,
                             resume=resume)
    summary = result.summary()
    summary["alpha_history"] = result.search.alpha_history.tolist() if result.search is not None else []
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"rank-{os.environ['RANK']}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
