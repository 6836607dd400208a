"""Train InterNet on webdataset shards.

One device:   python train/main.py --shards data/shards/interhand --out runs/paper
Many GPUs:    torchrun --nproc_per_node=8 train/main.py --shards ... --out ...
Many nodes:   torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 train/main.py ...
Options are `--key=value` (see train/config.py; `--preset paper|rhd|stb|demo` first, then overrides);
`--resume` continues from the newest checkpoint in --out, mid-epoch included (model and data settings
must be the run's; schedule changes need --allow_schedule_change). Errors are one line; --debug shows
the traceback.
This file only wires: config, processes, data, model, loop.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

try:  # `python train/main.py` puts train/ first on sys.path; the stages come from the installed
    import pipeline.distributed  # noqa: F401  package (`pip install -e .`, as `make setup` does)
except ImportError:  # not installed: from the repository this file is in
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pipeline.distributed import cleanup_distributed, print0, setup_distributed  # noqa: E402
from train.checkpoint import list_checkpoints  # noqa: E402
from train.config import TrainConfig, build_config, check_resume, save_config  # noqa: E402


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class RunDirInUse(FileExistsError):
    """--out holds another run's checkpoints and --resume was not given."""


def seed_everything(cfg: TrainConfig, rank: int) -> None:
    import random

    import numpy as np

    random.seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    # cuDNN picks the fastest convolution algorithms for the fixed input size (benchmarks/train.py the same).
    torch.backends.cudnn.benchmark = not cfg.deterministic
    if cfg.deterministic:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (read lazily)
        torch.use_deterministic_algorithms(True)


def run(cfg: TrainConfig, device: str | None = None) -> dict:
    from model import Criterion, build_model, load_backbone_weights, save_checkpoint
    from pipeline import build_loader
    from train.loop import param_groups, train
    from train.plots import plot_curves
    from train.validate import make_validator

    if not cfg.shards or not cfg.out:
        raise ValueError("--shards and --out are required")
    run_dir = Path(cfg.out).resolve()
    if not cfg.resume and (old := list_checkpoints(run_dir)):
        raise RunDirInUse(f"{run_dir} already holds checkpoints ({old[-1].name}); pass --resume to continue "
                              "that run, or choose another --out")
    if cfg.resume and (run_dir / "config.json").is_file():
        check_resume(cfg, run_dir / "config.json")  # before anything in the run folder is written
    d = setup_distributed(device)
    try:
        seed_everything(cfg, d.rank)
        if d.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            print0(d, "config:\n" + "\n".join(f"  {k} = {v}" for k, v in cfg.to_dict().items()))
            save_config(cfg, run_dir / "config.json", {"git_revision": git_revision(), "world_size": d.world_size})
        model = build_model(cfg.model).to(d.device)
        param_groups(model, cfg)  # a --lr_scales prefix that names no parameter fails before the data is read
        if cfg.backbone_weights and not cfg.resume:
            load_backbone_weights(model, cfg.backbone_weights)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        mc = model.config
        shards = cfg.shards.rstrip("/")
        loader = build_loader(f"{shards}/{cfg.train_split}", mc, batch_size=cfg.batch_size, train=True,
                              device=d.device, rank=d.rank, world_size=d.world_size, seed=cfg.seed,
                              num_threads=cfg.num_threads or None, cache_dir=cfg.cache_dir or None,
                              verify=cfg.verify_shards)
        print0(d, f"train: {loader.num_samples} samples, {len(loader)} steps/epoch/rank, world {d.world_size}")
        criterion = Criterion(mc)
        validate = make_validator(cfg, d, mc, f"{shards}/{cfg.val_split}") if cfg.val_every else None
        result = {**train(cfg, d, model, criterion, loader, run_dir, validate=validate), "rank": d.rank}
        if d.is_main:
            save_checkpoint(run_dir / "final.pt", model, epoch=result["epoch"], step=result["step"])
            print0(d, f"weights: {run_dir / 'final.pt'}")
            png = plot_curves(run_dir)
            print0(d, f"loss curves: {png}")
        return result
    finally:
        cleanup_distributed()


def usage() -> str:
    from dataclasses import fields

    from train.config import PRESETS

    opts = "\n".join(f"  --{f.name}={getattr(TrainConfig(), f.name)!r}" for f in fields(TrainConfig))
    return f"{__doc__}\nPresets: {', '.join(PRESETS)}. Options (paper defaults):\n{opts}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # a traceback instead of the one-line error
    argv = [a for a in argv if a != "--debug"]
    if any(a in ("-h", "--help") for a in argv):
        print(usage())
        return 0
    try:
        cfg = build_config(argv)
        if not cfg.shards or not cfg.out:
            raise ValueError("--shards and --out are required")
    except ValueError as e:
        print(f"train/main.py: error: {e}\n(see `python train/main.py --help`)", file=sys.stderr)
        return 2
    try:
        res = run(cfg)
    except (ValueError, OSError, RuntimeError, FloatingPointError) as e:  # RunDirInUse, DataError, ...
        if debug:
            raise
        print(f"train/main.py: error: {e}" + ("" if isinstance(e, RunDirInUse) else " (--debug for the traceback)"),
              file=sys.stderr)
        return 2
    print(f"[rank {res['rank']}] finished at step {res['step']} (epoch {res['epoch']}), weights sha256 "
          f"{res['weights_sha256']}; run folder: {Path(cfg.out).resolve()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
