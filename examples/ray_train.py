"""AutoMLP on a Ray cluster: Ray Train's TorchTrainer starts the workers and their torch.distributed
process group, and each worker runs the same loop as `torchrun -m engine.cli run` (search, retrain,
test; engine/training/distributed.py).

    pip install "ray[train]"                     # not a dependency of AutoMLP Studio; and this package
                                                 # installed on every node (pip install .)
    python examples/ray_train.py --workers 2 --set search_epochs=2  # generated data, on the CPU
    python examples/ray_train.py --workers 4 --gpu --dataset ml-1m --db postgresql+psycopg://host/automlp

With `--dataset`, the run is recorded in the store by rank 0, as `automlp run --dataset` does: on a
cluster, a store every node reaches (PostgreSQL), and rank 0 writes the checkpoints and the bundle in the
store's runs folder on its node (a folder every node sees, to resume on another). Every worker returns
the same result; rank 0 prints it, and every worker reports it to Ray.
Run here once with Ray 2.60.0 on 2 CPU workers (gloo); not in CI.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def train_loop_per_worker(settings: dict) -> None:
    """One Ray worker: the process group is Ray's; RANK, WORLD_SIZE and LOCAL_RANK tell the engine its place."""
    import ray.train

    from engine.core.config import RunConfig
    from engine.data.sequences import build_sequences
    from engine.data.store import open_store
    from engine.data.synthetic import planted_log
    from engine.experiments.stored_run import run_on_dataset
    from engine.training.runner import run_automlp

    context = ray.train.get_context()
    os.environ.update(RANK=str(context.get_world_rank()), WORLD_SIZE=str(context.get_world_size()),
                      LOCAL_RANK=str(context.get_local_rank()))
    config = RunConfig.from_dict(settings["config"])
    if settings["dataset"]:
        _, result = run_on_dataset(open_store(settings["db"]), settings["dataset"], config)
    else:
        result = run_automlp(build_sequences(planted_log(seed=config.seed)), config)
    import torch.distributed

    ndcg = result.test_metrics["full"]["NDCG@10"]
    if context.get_world_rank() == 0:
        print(f"{torch.distributed.get_world_size()} processes ({torch.distributed.get_backend()}): "
              f"k = {result.chosen_length}, test NDCG@10 (full ranking) {ndcg:.4f}", flush=True)
    ray.train.report({"chosen_length": result.chosen_length, "test_ndcg10_full": ndcg})


def main() -> None:
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from engine.core.config import parse_override
    from engine.core.presets import load_preset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker (nccl); else the CPU (gloo)")
    parser.add_argument("--dataset", help="a stored dataset (needs --db); else generated data")
    parser.add_argument("--db", default=os.environ.get("AUTOMLP_DB"), help="the store's SQLAlchemy URL")
    parser.add_argument("--preset", default="quick-demo")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one configuration key, as `automlp run --set`")
    args = parser.parse_args()
    if args.dataset and not args.db:
        parser.error("--dataset needs --db (or AUTOMLP_DB): a store every worker reaches")
    overrides = dict(parse_override(text) for text in args.overrides)
    config = load_preset(args.preset).replace(**overrides, device="cuda" if args.gpu else "cpu")
    trainer = TorchTrainer(train_loop_per_worker,
                           train_loop_config={"config": config.to_dict(), "dataset": args.dataset, "db": args.db},
                           scaling_config=ScalingConfig(num_workers=args.workers, use_gpu=args.gpu))
    trainer.fit()


if __name__ == "__main__":
    main()
