"""Training images/s: the original style against ours, same model, batch and shards, in one run.

    .venv/bin/python -m benchmarks.train [--model paper|demo|tiny] [--batch 16] [--steps 30] [--warmup 5]
                                         [--device cpu|cuda] [--shards DIR] [--workers N] [--cache DIR]
    # the issue's goal (one H100, ResNet-50, 256x256, 64^3):
    .venv/bin/python -m benchmarks.train --model paper --batch 64 --steps 200 --warmup 20 --device cuda

(1) original: eager float32; a torch DataLoader over one JPEG file per sample (benchmarks.pipeline's
    OriginalStyleDataset: decode, float32, per-sample warp and labels, `workers` processes); the heatmap
    loss renders every Gaussian target volume (sigma 2.5 bins, peak 255) and takes mean((p - t)^2 * valid).
(2) ours: pipeline.build_loader (DALI, `workers` threads) + the trainer's own step
    (train.loop.make_train_step with build_optimizer: torch.compile, bf16 autocast (CUDA only),
    channels_last, model.Criterion (the fused heatmap loss), fused Adam).
(3) ceiling: (2)'s step on one device-resident synthetic batch shaped as the loader's, fed again every
    step (synthetic_batches): no data path, the compute ceiling of (2) (on the CPU: how much of the
    cores the data path takes; needs no DALI).
All three: Adam lr 1e-4, the same initial weights; cudnn.benchmark. Each runs in its own subprocess (its own peak
memory; no fork after DALI/compile threads exist). Reported apart: setup (loader build + first batch;
extracting the JPEG files for (1) is not timed) and the first step (which includes compilation).
images/s counts `steps` steps after `warmup` steps, between two device synchronisations. data-wait =
share of that wall time the host spends waiting for the next batch (for (1) with the host-to-device
copy). Peak memory: torch.cuda.max_memory_allocated on CUDA, the process's peak RSS on the CPU (main
process; DataLoader workers not included).
Without --shards, a tiny synthetic set is generated once (shards.synth) and converted (python -m
shards) under --cache.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file: this folder's pipeline.py / train.py would shadow the packages
    sys.path[0] = str(REPO)

import torch  # noqa: E402

MODES = ("original", "ours", "ceiling")


def materialised_heatmap_loss(heat, coord, valid, sigma: float = 2.5, peak: float = 255.0):
    """The original's heatmap loss: render each joint's target volume, then mean(valid * (p - t)^2).

    heat (B, J, D, H, W); coord (B, J, 3) (x, y, z) bins; valid (B, J)."""
    D, H, W = heat.shape[2:]
    zs, ys, xs = (torch.arange(n, device=heat.device, dtype=torch.float32) for n in (D, H, W))
    x, y, z = (coord[:, :, i, None, None, None].float() for i in range(3))  # (B, J, 1, 1, 1)
    target = torch.exp(-((xs - x) / sigma) ** 2 / 2 - ((ys[:, None] - y) / sigma) ** 2 / 2
                       - ((zs[:, None, None] - z) / sigma) ** 2 / 2) * peak  # (B, J, D, H, W)
    return ((heat - target) ** 2 * valid[:, :, None, None, None].float()).mean()


def original_criterion(sigma: float):
    from model.loss import hand_type_loss, root_depth_loss

    def losses(out, batch):
        return {"joint_heatmap": materialised_heatmap_loss(out["heatmaps"], batch["joint_coord"],
                                                           batch["joint_valid"], sigma),
                "rel_root_depth": root_depth_loss(out["rel_root_depth"], batch["rel_root_depth"], batch["root_valid"]),
                "hand_type": hand_type_loss(out["hand_type"], batch["hand_type"], batch["hand_type_valid"])}
    return losses


class EndlessShuffle(torch.utils.data.Sampler):
    """A new permutation of range(n) after every pass: no epoch boundary (worker restart) in the timing."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed = n, seed

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        while True:
            yield from torch.randperm(self.n, generator=g).tolist()


def original_batches(folder: Path, mc, args, device):
    """The original-style loader over JPEG files extracted into `folder` (benchmarks.pipeline.extract),
    endless, with batches moved to `device` (pinned + non_blocking on CUDA)."""
    from benchmarks.pipeline import WORKER_START, OriginalStyleDataset, _worker_init

    ds = OriginalStyleDataset(folder, input_size=mc.input_size, hm=mc.heatmap_size)
    dl = torch.utils.data.DataLoader(ds, batch_size=args.batch, sampler=EndlessShuffle(len(ds)), drop_last=True,
                                     num_workers=args.workers, worker_init_fn=_worker_init,
                                     pin_memory=device.type == "cuda", prefetch_factor=2 if args.workers else None,
                                     multiprocessing_context=WORKER_START if args.workers else None)
    scale = mc.root_bins / 64  # OriginalStyleDataset bins the root depth in 64; the validity test is unchanged
    for b in dl:
        b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
        b["rel_root_depth"] = b["rel_root_depth"] * scale
        b["hand_type_valid"] = torch.ones_like(b["root_valid"])  # the dataset has no hand_type_valid field
        yield b


def ours_batches(split_dir: Path, mc, args, device):
    from pipeline import build_loader

    loader = build_loader(split_dir, mc, batch_size=args.batch, train=True, device=device,
                          num_threads=max(1, args.workers))
    while True:
        yield from loader


def synthetic_batches(split_dir, mc, args, device):
    """Endless device-resident batches shaped as the loader's (ours_batches' signature): random images
    (channels_last), joints inside the heatmap, everything valid. One batch, reused."""
    from shards.skeleton import NUM_JOINTS

    g = torch.Generator().manual_seed(0)
    b, s = args.batch, mc.input_size
    d, h, w = mc.heatmap_size
    batch = {"images": torch.rand(b, s, s, 3, generator=g).permute(0, 3, 1, 2),  # (B, 3, S, S) channels_last
             "joint_coord": torch.rand(b, NUM_JOINTS, 3, generator=g) * torch.tensor([w, h, d], dtype=torch.float32),
             "joint_valid": torch.ones(b, NUM_JOINTS), "rel_root_depth": torch.rand(b, generator=g) * mc.root_bins,
             "root_valid": torch.ones(b), "hand_type": torch.ones(b, 2), "hand_type_valid": torch.ones(b)}
    batch = {k: v.to(device) for k, v in batch.items()}
    while True:
        yield batch


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_mode(mode: str, args) -> dict:
    """Train `warmup + steps` steps in `mode`; returns images/s, data-wait, peak memory and timings."""
    from model import Criterion, build_model

    from pipeline.distributed import setup_distributed
    from train.config import TrainConfig
    from train.loop import build_optimizer, make_train_step

    device = setup_distributed(args.device).device  # one process; "cuda" is cuda:0, never a CPU fall-back
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.backends.cudnn.benchmark = True  # as train/main.py (unless --deterministic)
    torch.manual_seed(0)
    model = build_model(args.model).to(device)
    mc = model.config
    ours = mode in ("ours", "ceiling")
    if ours:  # exactly the trainer's step: its config, optimiser and step function
        cfg = TrainConfig(model=mc, compile=args.compile)
        model = model.to(memory_format=torch.channels_last)
        fwd = torch.compile(model) if cfg.compile else model
        optimizer = build_optimizer(model, cfg, device)
        train_step = make_train_step(cfg, device, fwd, Criterion(mc), optimizer)
    else:  # the original's way: fp32, eager, materialised heatmap loss, per-tensor Adam
        loss_fn, optimizer = original_criterion(mc.sigma), torch.optim.Adam(model.parameters(), lr=1e-4)

        def train_step(batch):
            losses = loss_fn(model(batch["images"]), batch)
            optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            optimizer.step()
            return losses
    model.train()

    def step(batch):
        return sum(train_step(batch).values()).detach()

    split_dir = Path(args.shards) / "train"
    folder = Path(tempfile.mkdtemp(prefix="bench_train_files_"))
    try:
        if not ours:  # one JPEG file per sample, as the original reads them (not timed)
            from benchmarks.pipeline import extract

            n = extract(split_dir, folder, args.batch * (args.steps + args.warmup + 2))
            if n < args.batch:
                raise ValueError(f"{split_dir}: {n} samples, fewer than one batch of {args.batch}")
        t0 = time.perf_counter()
        make = {"ours": ours_batches, "ceiling": synthetic_batches, "original": original_batches}[mode]
        batches = make(folder if mode == "original" else split_dir, mc, args, device)
        first = next(batches)
        sync()
        t1 = time.perf_counter()
        step(first)  # compiles in `ours`
        sync()
        t2 = time.perf_counter()
        for _ in range(args.warmup - 1):
            step(next(batches))
        sync()  # nothing of the warm-up is still running on the device
        wait, start = 0.0, time.perf_counter()
        for _ in range(args.steps):
            t = time.perf_counter()
            batch = next(batches)
            wait += time.perf_counter() - t
            last = step(batch)
        sync()
        elapsed = time.perf_counter() - start
        loss = last.item()
        batches.close()  # stops the DataLoader workers / DALI pipeline
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"mode": mode, "images_per_s": args.steps * args.batch / elapsed, "data_wait": wait / elapsed,
            "peak_mb": peak_memory_mb(device), "setup_s": t1 - t0, "first_step_s": t2 - t1, "loss": loss}


def prepare_shards(cache: Path) -> Path:
    """A tiny synthetic InterHand2.6M set and its shards under `cache` (made once; later runs reuse them)."""
    from shards.__main__ import main as shards_main
    from shards.synth import generate

    synth, out = cache / "synth", cache / "shards"
    if not (synth / ".complete").exists():
        print(f"[bench] generating a tiny synthetic set in {synth}", flush=True)
        (synth / ".complete").write_text(json.dumps(generate(synth, size="tiny", seed=0)) + "\n")
    shards_main(["--source", "interhand", "--root", str(synth), "--out", str(out), "--quiet"])  # resumes
    return out


def label(mode: str, args) -> str:
    if mode == "ceiling":
        return "ceiling: ours' step without the data path (one synthetic batch)"
    if mode == "original":
        from benchmarks.pipeline import cv2

        warp = "cv2" if cv2 is not None else "numpy warp"
        return f"original: eager fp32, DataLoader {args.workers} workers ({warp}), materialised targets"
    parts = ["DALI", "compile" if args.compile else "eager (--no-compile)"]
    parts += ["bf16"] if args.device.startswith("cuda") else []
    return "ours: " + " + ".join(parts + ["channels_last", "fused loss"])


def print_table(rows: list[dict], args) -> None:
    mem = "peak alloc MB" if args.device.startswith("cuda") else "peak RSS MB"
    dev = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else \
        f"CPU, {len(os.sched_getaffinity(0))} cores"
    print(f"\nmodel {args.model}, batch {args.batch}, {args.steps} steps timed after {args.warmup} warm-up, "
          f"{dev}, torch {torch.__version__}")
    print(f"{'':<72} {'images/s':>9} {'data-wait':>9} {mem:>13} {'setup s':>8} {'1st step s':>10} {'loss':>9}")
    for r in rows:
        print(f"{label(r['mode'], args):<72} {r['images_per_s']:9.2f} {100 * r['data_wait']:8.1f}% "
              f"{r['peak_mb']:13.0f} {r['setup_s']:8.1f} {r['first_step_s']:10.1f} {r['loss']:9.4g}")
    r = {row["mode"]: row["images_per_s"] for row in rows}
    print(f"ours / original: {r['ours'] / r['original']:.2f}x images/s; ours / ceiling: {r['ours'] / r['ceiling']:.2f}")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="paper", help="model preset: paper, demo, tiny")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per mode")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (the first one compiles)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--shards", default=None, help="folder holding train/ (default: a tiny synthetic set)")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "interhand_fast_bench"),
                    help="where the default synthetic set and its shards are made")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                    help="DataLoader workers of (1) and DALI threads of (2)")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="(2) without torch.compile (tests)")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)  # internal: run one mode
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    from model import PRESETS

    if args.model not in PRESETS:
        ap.error(f"--model must be one of {sorted(PRESETS)}, got {args.model!r}")
    dev = torch.device(args.device)
    if dev.type not in ("cpu", "cuda"):
        ap.error(f"--device must be cpu or cuda, got {args.device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda, but torch sees no CUDA device")
    for name, lo in (("batch", 1), ("steps", 1), ("warmup", 1), ("workers", 0)):
        if getattr(args, name) < lo:
            ap.error(f"--{name} must be >= {lo}, got {getattr(args, name)}")
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.child:  # one mode in this process; the result goes to a JSON file for the parent
        res = run_mode(args.child, args)
        Path(args.result).write_text(json.dumps(res))
        return [res]
    if args.shards is None:
        args.shards = str(prepare_shards(Path(args.cache).resolve()))
    args.shards = str(Path(args.shards).resolve())
    if not (Path(args.shards) / "train").is_dir():
        raise FileNotFoundError(f"--shards {args.shards} has no train/ split folder")
    common = ["--model", args.model, "--batch", str(args.batch), "--steps", str(args.steps),
              "--warmup", str(args.warmup), "--device", args.device, "--shards", args.shards,
              "--workers", str(args.workers)] + ([] if args.compile else ["--no-compile"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for mode in MODES:
            out = Path(tmp) / f"{mode}.json"
            print(f"[bench] {label(mode, args)}", flush=True)
            proc = subprocess.run([sys.executable, "-m", "benchmarks.train", *common, "--child", mode,
                                   "--result", str(out)], cwd=REPO)
            if proc.returncode != 0:
                raise RuntimeError(f"benchmark mode {mode!r} failed with exit status {proc.returncode}")
            rows.append(json.loads(out.read_text()))
    print_table(rows, args)
    return rows


if __name__ == "__main__":
    main()
