"""The parts of `python -m benchmarks.gpu` (see its docstring), each run in a child process:
`python -m benchmarks.gpu --child PART` calls CHILD_PARTS[PART](plan, args)."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch

from benchmarks.gpu import Plan, dali_version

def prepare_synthetic(cache: Path, size: str, workers: int) -> Path:
    """The synthetic InterHand2.6M set of `size` and its shards under cache/<size>/ (made once; a
    re-run resumes or reuses them). benchmarks/train.py's prepare_shards makes the tiny one."""
    from shards.__main__ import main as shards_main
    from shards.synth import generate

    synth, out = cache / size / "synth", cache / size / "shards"
    if not (synth / ".complete").exists():
        print(f"[gpu-check] generating the synthetic '{size}' set in {synth}", flush=True)
        (synth / ".complete").write_text(json.dumps(generate(synth, size=size, seed=0, workers=workers)) + "\n")
    shards_main(["--source", "interhand", "--root", str(synth), "--out", str(out), "--quiet",
                 "--workers", str(workers)])
    return out


def part_shards(plan: Plan, args) -> dict:
    from shards.index import open_split

    made = args.shards is None
    cores = len(os.sched_getaffinity(0))
    root = prepare_synthetic(Path(args.cache), plan.synth_size, cores) if made else Path(args.shards)
    splits = {p.name: open_split(str(p)).num_samples for p in sorted(root.iterdir()) if (p / "manifest.json").is_file()}
    if "train" not in splits:
        raise FileNotFoundError(f"{root} has no train/ split")
    return {"path": str(root.resolve()), "synthetic": made and plan.synth_size, "samples": splits}


def part_flops(plan: Plan, args) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from model import build_model

    with torch.device("meta"):  # shapes only: no memory, any machine
        model = build_model(plan.model)
    size = model.config.input_size
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(plan.batch, 3, size, size, device="meta"))
    fwd = counter.get_total_flops() / plan.batch
    return {"model": plan.model, "batch": plan.batch, "forward_flops_per_image": fwd, "train_flops_per_image": 3 * fwd,
            "method": "FlopCounterMode over one forward batch (a multiply-add is 2 FLOPs); training = 3x forward"}


def _device(args) -> torch.device:
    from pipeline.distributed import setup_distributed

    return setup_distributed(args.device).device


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def part_dali_pipeline(plan: Plan, args) -> dict:
    from benchmarks.pipeline import _forever, measure
    from model.config import get_config
    from pipeline import build_loader

    device, geometry = _device(args), get_config(plan.model)
    rows = []
    for bs in plan.pipeline_batches:
        t0 = time.perf_counter()
        loader = build_loader(Path(args.shards) / "train", geometry, batch_size=bs, train=True, device=device)
        n = max(4, plan.pipeline_images // bs)
        ips = measure(_forever(loader), n, warmup=3, device=device)
        rows.append({"batch": bs, "images_per_s": ips, "batches": n, "wall_s": time.perf_counter() - t0})
        del loader
    return {"input_size": geometry.input_size, "mode": "train (shuffle + random augmentation)", "rows": rows}


def _train_args(plan: Plan, args):
    from benchmarks.train import parse_args

    return parse_args(["--model", plan.model, "--batch", str(plan.batch), "--steps", str(plan.steps),
                       "--warmup", str(plan.warmup), "--device", args.device, "--workers", str(plan.workers),
                       "--shards", str(args.shards or args.cache)] + ([] if plan.compile else ["--no-compile"]))


def part_train(mode: str, plan: Plan, args) -> dict:
    import benchmarks.train as bt

    return {**bt.run_mode(mode, _train_args(plan, args)), "mode": mode}  # "ceiling": bt.synthetic_batches


def guarded_steps(batches, step, n: int, device) -> torch.Tensor:
    """n training steps as train.loop runs them between two logging points (losses summed on the
    device), under sync_debug_mode 'error' on CUDA: a host sync in the loader or the step raises."""
    sums = None
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(n):
            vals = torch.stack([v.detach().float() for v in step(next(batches)).values()])
            sums = vals if sums is None else sums + vals
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode(0)
    return sums


def part_sync_check(plan: Plan, args) -> dict:
    from benchmarks.train import ours_batches, synthetic_batches
    from model import Criterion, build_model
    from train.config import TrainConfig
    from train.loop import build_optimizer, make_train_step

    device, has_dali = _device(args), dali_version() is not None
    targs = _train_args(plan, args)
    torch.backends.cudnn.benchmark = True  # as the trainer (train/main.py)
    torch.manual_seed(0)
    model = build_model(plan.model).to(device).to(memory_format=torch.channels_last)
    cfg = TrainConfig(model=model.config, batch_size=plan.batch, compile=plan.compile)
    fwd = torch.compile(model) if cfg.compile else model
    step = make_train_step(cfg, device, fwd, Criterion(model.config), build_optimizer(model, cfg, device))
    split = Path(args.shards) / "train"
    batches = ours_batches(split, model.config, targs, device) if has_dali else \
        synthetic_batches(split, model.config, targs, device)
    for _ in range(plan.warmup):  # compilation, cuDNN autotuning, allocator growth
        step(next(batches))
    _sync(device)
    sums = guarded_steps(batches, step, plan.sync_steps, device)
    losses = sums.tolist()  # the logging point
    batches.close()
    return {"checked": device.type == "cuda", "steps": plan.sync_steps, "compile": plan.compile,
            "scope": "DALI loader + trainer step" if has_dali else "trainer step on synthetic batches (no DALI)",
            "host_syncs": 0 if device.type == "cuda" else None, "losses_finite": all(map(math.isfinite, losses))}


def part_eval(plan: Plan, args) -> dict:
    from eval.predict import predict
    from eval.run_checkpoint import predict_checkpoint
    from model import build_model, load_checkpoint, save_checkpoint
    from pipeline import build_loader

    device = _device(args)
    checkpoint = args.checkpoint
    if checkpoint is None:  # images/s do not depend on the weights
        torch.manual_seed(0)
        checkpoint = str(save_checkpoint(Path(args.cache) / f"random_{plan.model}.pt", build_model(plan.model)))
    split = next(s for s in ("test", "val", "train") if (Path(args.shards) / s / "manifest.json").is_file())
    t0 = time.perf_counter()
    preds = predict_checkpoint(checkpoint, args.shards, split, device=device, batch_size=plan.batch, progress=False)
    cli_s = time.perf_counter() - t0
    ck = load_checkpoint(checkpoint, map_location=device)
    loader = build_loader(Path(args.shards) / split, ck.config, batch_size=plan.batch, train=False, device=device)
    predict(ck.model, loader, device, progress=False)  # warm-up (cuDNN autotuning)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(plan.eval_epochs):
        n = len(predict(ck.model, loader, device, progress=False)["annot_id"])
    elapsed = time.perf_counter() - t0
    return {"checkpoint": checkpoint, "random_weights": args.checkpoint is None, "split": split, "samples": n,
            "batch": plan.batch, "epochs": plan.eval_epochs, "images_per_s": plan.eval_epochs * n / elapsed,
            "predict_checkpoint_s": cli_s, "predicted": len(preds["annot_id"])}


CHILD_PARTS = {"shards": part_shards, "flops": part_flops, "dali_pipeline": part_dali_pipeline,
               "train_original": lambda p, a: part_train("original", p, a),
               "train_ours": lambda p, a: part_train("ours", p, a),
               "train_ceiling": lambda p, a: part_train("ceiling", p, a),
               "sync_check": part_sync_check, "eval": part_eval}
