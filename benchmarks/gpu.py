"""One command for a GPU machine (issue 14.6): environment, the GPU tests, the sync check, and the
data pipeline, training and evaluation images/s -> gpu_report.json + a printed table, in under 8 minutes.

    make gpu-check                                  # = python -m benchmarks.gpu --out gpu_report.json
    python -m benchmarks.gpu [--shards DIR] [--checkpoint CK] [--out gpu_report.json] [--parts a,b]
    python -m benchmarks.gpu --device cpu --quick   # every part on the CPU, tiny model, few steps (tests)

Parts, in order, each in its own subprocess with its own time limit (a crash, a CUDA error or a hang
is reported for that part and the next one runs), all within --budget seconds (450):
  pytest_gpu      `pytest -m gpu tests`: result counts (sync guard, decoders against the CPU reference, ...)
  shards          --shards, or a synthetic set made once under --cache (shards.synth + python -m shards)
  flops           forward FLOPs per image (torch.utils.flop_counter.FlopCounterMode on one batch, on 'meta');
                  a training step counts 3x that (forward + backward); the loss and optimiser are not counted
  dali_pipeline   loader images/s, train mode, paper geometry (256x256), batch 64/128/256 (benchmarks.pipeline.measure)
  train_original  fp32 eager + materialised loss + the original-style DataLoader (benchmarks.train.run_mode)
  train_ours      DALI + the trainer's step: bf16, compiled, fused loss, channels_last (benchmarks.train.run_mode)
  train_ceiling   that step on device-resident synthetic batches: the compute ceiling, no data path
  sync_check      loader + trainer step, N steps under torch.cuda.set_sync_debug_mode("error")
  eval            `python -m eval --checkpoint`'s prediction (load_checkpoint, evaluation loader, predict)
Training: the paper preset (ResNet-50, 256x256, 42x64^3) at batch 64. MFU = images/s x 3 x forward
FLOPs per image / the GPU's dense bf16 peak (PEAK_BF16_TFLOPS; null for a GPU not listed there).
Without NVIDIA DALI the parts that need it are reported as skipped and the rest run (sync_check then
checks the trainer's step alone).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file: this folder's pipeline.py / train.py would shadow the packages
    sys.path[0] = str(REPO)

import torch  # noqa: E402

PARTS = ("pytest_gpu", "shards", "flops", "dali_pipeline", "train_original", "train_ours", "train_ceiling",
         "sync_check", "eval")
NEEDS_DALI = {"dali_pipeline", "train_ours", "eval"}
NEEDS_SHARDS = {"dali_pipeline", "train_original", "train_ours", "sync_check", "eval"}
# Dense bf16 tensor-core peaks (NVIDIA datasheets, without sparsity), matched in order against the device name.
PEAK_BF16_TFLOPS = (("H200 NVL", 835.0), ("H200", 989.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0),
                    ("H100", 989.0), ("A100", 312.0))
MIN_START_S = 15  # a part is not started with less time than this left in the budget


@dataclass(frozen=True)
class Plan:
    """What each part runs: the GPU run (defaults) or --quick (tiny model, few steps; minutes on 2 CPU cores)."""
    model: str = "paper"
    batch: int = 64
    pipeline_batches: tuple = (64, 128, 256)
    pipeline_images: int = 8192  # images timed per pipeline batch size
    steps: int = 60  # timed training steps, after `warmup` (the first one compiles)
    warmup: int = 10
    compile: bool = True
    workers: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    synth_size: str = "small"  # 2,766 images: enough for batch 256 in train mode and an evaluation split
    sync_steps: int = 20
    eval_epochs: int = 3
    budgets: dict = field(default_factory=lambda: {
        "pytest_gpu": 150, "shards": 120, "flops": 30, "dali_pipeline": 60, "train_original": 90,
        "train_ours": 180, "train_ceiling": 90, "sync_check": 90, "eval": 60})


QUICK = Plan(model="tiny", batch=4, pipeline_batches=(4, 8), pipeline_images=32, steps=2, warmup=1, compile=False,
             workers=0, synth_size="tiny", sync_steps=2, eval_epochs=1,
             budgets={"pytest_gpu": 120, "shards": 120, "flops": 30, "dali_pipeline": 60, "train_original": 90,
                      "train_ceiling": 60, "train_ours": 60, "sync_check": 60, "eval": 60})


def peak_bf16_tflops(name: str) -> float | None:
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in name), None)


def dali_version() -> str | None:
    try:
        import nvidia.dali as dali
    except ImportError:
        return None
    return dali.__version__


def environment(device: str) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "cuda": torch.version.cuda or "none (CPU build of torch)", "cudnn": torch.backends.cudnn.version(),
           "dali": dali_version() or "not installed", "cpu_cores": len(os.sched_getaffinity(0)),
           "device": device, "gpu": "none", "driver": "n/a", "peak_bf16_tflops": None}
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(torch.device(device))
        env.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                   peak_bf16_tflops=peak_bf16_tflops(props.name))
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if smi.returncode == 0 and smi.stdout.strip():
            env["driver"] = smi.stdout.split()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return env


# --- the parts (each runs in a child process: `--child PART`) ---------------------------------------------

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


def synthetic_batches(split_dir, mc, args, device):
    """Endless device-resident batches shaped as the loader's (benchmarks.train.ours_batches' signature):
    random images (channels_last), joints inside the heatmap, everything valid. One batch, reused."""
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


def part_train(mode: str, plan: Plan, args) -> dict:
    import benchmarks.train as bt

    if mode == "ceiling":  # the trainer's step, timed as train_ours is, with the data path replaced
        bt.ours_batches = synthetic_batches
    return {**bt.run_mode("ours" if mode == "ceiling" else mode, _train_args(plan, args)), "mode": mode}


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
    from benchmarks.train import ours_batches
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


# --- the parent: run each part with its limit, collect, report ---------------------------------------------

def run_limited(cmd: list[str], limit: float, log: Path) -> tuple[int | None, float]:
    """Run cmd (output to `log`) in its own process group; kill the group after `limit` seconds.
    -> (exit status or None on timeout, seconds)."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        rc = None
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            pass
        finally:  # on a timeout or an interrupt of this process (its own session would not get Ctrl-C)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the part's DataLoader workers, DALI and pytest children too
                proc.wait()
    return rc, time.perf_counter() - t0


def tail(log: Path, lines: int = 12) -> str:
    text = log.read_text(errors="replace").replace("\r", "\n") if log.exists() else ""
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])


def run_pytest(limit: float, tmp: Path, has_dali: bool) -> dict:
    """Without DALI, the test modules that import it are listed as not collected (not as failures)
    and the GPU tests of the others still run."""
    xml, log = tmp / "pytest_gpu.xml", tmp / "pytest_gpu.log"
    rc, secs = run_limited([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests",
                            f"--junitxml={xml}"] + ([] if has_dali else ["--continue-on-collection-errors"]),
                           limit, log)
    res = {"seconds": secs, "command": "python -m pytest -m gpu tests"}
    if rc is None:
        return {**res, "status": "timeout", "error": f"did not finish in {limit:.0f} s", "log_tail": tail(log)}
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed, uncollected = [], []
    if xml.exists():
        root = ET.parse(xml).getroot()
        for suite in root.iter("testsuite"):
            for k in counts:
                counts[k] += int(suite.get(k, 0))
        for case in root.iter("testcase"):
            err = case.find("error")
            if not has_dali and err is not None and "collection failure" in (err.get("message") or ""):
                uncollected.append(case.get("name"))
            elif err is not None or case.find("failure") is not None:
                failed.append(f"{case.get('classname')}::{case.get('name')}")
    counts["errors"] -= len(uncollected)  # counted apart
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"] - len(uncollected)
    ok = xml.exists() and not failed and (rc in (0, 5) or uncollected)  # 5: no test selected
    return {**res, "status": "ok" if ok else "failed", **counts, "failed": failed,
            **({"not_collected_without_dali": uncollected} if uncollected else {}),
            **({} if ok else {"error": f"pytest exit status {rc}", "log_tail": tail(log)})}


def run_child(part: str, args, shards: str | None, limit: float, tmp: Path) -> dict:
    result, log = tmp / f"{part}.json", tmp / f"{part}.log"
    cmd = [sys.executable, "-m", "benchmarks.gpu", "--device", args.device, "--cache", args.cache,
           "--child", part, "--result", str(result)] + (["--quick"] if args.quick else []) \
        + (["--shards", shards] if shards else []) + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
    rc, secs = run_limited(cmd, limit, log)
    if rc is None:
        return {"status": "timeout", "seconds": secs, "error": f"did not finish in {limit:.0f} s",
                "log_tail": tail(log)}
    if rc != 0 or not result.exists():
        lines = tail(log).splitlines()
        return {"status": "failed", "seconds": secs, "error": lines[-1] if lines else f"exit status {rc}",
                "log_tail": "\n".join(lines)}
    return {"status": "ok", "seconds": secs, **json.loads(result.read_text())}


def finite(obj):
    """The report with NaN/inf as null (JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    return [finite(v) for v in obj] if isinstance(obj, (list, tuple)) else obj


def summarise(parts: dict, env: dict) -> dict:
    """MFU per training row, end-to-end against the ceiling, ours against the original."""
    flops = parts.get("flops", {}).get("train_flops_per_image")
    peak = env.get("peak_bf16_tflops")
    out = {"peak_bf16_tflops": peak, "train_flops_per_image": flops}
    for name in ("train_original", "train_ours", "train_ceiling"):
        row = parts.get(name, {})
        if row.get("status") == "ok" and row.get("images_per_s"):
            row["mfu"] = row["images_per_s"] * flops / (peak * 1e12) if flops and peak else None
    ips = {k: parts.get(k, {}).get("images_per_s") for k in ("train_original", "train_ours", "train_ceiling")}
    if ips["train_ours"] and ips["train_ceiling"]:
        out["end_to_end_vs_ceiling"] = ips["train_ours"] / ips["train_ceiling"]
    if ips["train_ours"] and ips["train_original"]:
        out["ours_vs_original"] = ips["train_ours"] / ips["train_original"]
    return out


def part_line(name: str, r: dict) -> str:
    """One line per part: its status and its main figures."""
    if r["status"] != "ok":
        return f"{r['status']}: {r.get('reason') or r.get('error', '')}"
    if name == "pytest_gpu":
        s = f"{r['passed']} passed, {r['failures']} failed, {r['errors']} errors, {r['skipped']} skipped"
        s += f" ({', '.join(r['failed'][:3])})" if r["failed"] else ""
        missing = r.get("not_collected_without_dali", [])
        return s + (f"; {len(missing)} test modules need DALI, not collected" if missing else "")
    if name == "shards":
        return f"{r['path']}: " + ", ".join(f"{k} {v}" for k, v in r["samples"].items())
    if name == "flops":
        return f"{r['forward_flops_per_image'] / 1e9:.2f} GFLOP forward per image, x3 per training step ({r['model']})"
    if name == "dali_pipeline":
        return ", ".join(f"batch {row['batch']}: {row['images_per_s']:,.0f} img/s" for row in r["rows"]) \
            + f" ({r['input_size']}x{r['input_size']}, train mode)"
    if name.startswith("train_"):
        mfu = "n/a" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"
        return (f"{r['images_per_s']:,.1f} img/s, data-wait {100 * r['data_wait']:.1f}%, peak {r['peak_mb']:,.0f} MB, "
                f"MFU {mfu}, first step {r['first_step_s']:.1f} s")
    if name == "sync_check":
        what = "no host sync" if r["checked"] else "ran (sync debug mode is CUDA only: nothing checked)"
        return f"{what} in {r['steps']} steps: {r['scope']}"
    if name == "eval":
        return (f"{r['images_per_s']:,.1f} img/s ({r['samples']} {r['split']} samples x {r['epochs']}, batch "
                f"{r['batch']}{', random weights' if r['random_weights'] else ''}); predict_checkpoint "
                f"{r['predict_checkpoint_s']:.1f} s in all")
    return ""


def print_table(report: dict) -> None:
    env, s = report["environment"], report["summary"]
    plan = report["plan"]
    print(f"\nGPU check, {report['wall_s']:.0f} s ({'quick, ' if report['quick'] else ''}model {plan['model']}, "
          f"batch {plan['batch']}) on {env.get('gpu')} (driver {env.get('driver')}), torch {env.get('torch')} "
          f"(CUDA {env.get('cuda')}), DALI {env.get('dali')}, {env.get('cpu_cores')} CPU cores")
    print(f"{'part':<15} {'status':<8} {'s':>6}  result")
    for name, r in report["parts"].items():
        print(f"{name:<15} {r['status']:<8} {r.get('seconds', 0):6.1f}  {part_line(name, r)}")
    peak = s["peak_bf16_tflops"]
    flops = s["train_flops_per_image"]
    print("MFU = images/s x " + (f"{flops / 1e9:.1f} GFLOP" if flops else "n/a") + " per image (3 x forward) / "
          + (f"{peak:.0f} TFLOP/s (dense bf16 peak of this GPU)" if peak else "no known bf16 peak for this device"))
    for key, text in (("end_to_end_vs_ceiling", "end-to-end / synthetic-batch ceiling"),
                      ("ours_vs_original", "ours / original-style")):
        if key in s:
            print(f"{text}: {s[key]:.2f}x")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda[:N] (default), or cpu with --quick to try the script")
    ap.add_argument("--quick", action="store_true", help="tiny model, few steps, small batches (tests, CPU)")
    ap.add_argument("--shards", default=None, help="shard root holding train/ (and test/ or val/ for eval); "
                                                   "default: a synthetic set made once under --cache")
    ap.add_argument("--checkpoint", default=None, help="for the eval part (default: random weights of the preset)")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "interhand_fast_gpu_check"))
    ap.add_argument("--out", default="gpu_report.json")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for all parts together")
    ap.add_argument("--child", choices=sorted(CHILD_PARTS), help=argparse.SUPPRESS)  # internal: run one part
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        ap.error(f"--parts: unknown {sorted(unknown)}; parts are {','.join(PARTS)}")
    try:
        dev = torch.device(args.device)
    except RuntimeError:
        ap.error(f"--device {args.device!r} is not a torch device")
    if dev.type == "cuda" and not torch.cuda.is_available() and not args.child:
        ap.error(f"--device {args.device}: torch {torch.__version__} sees no usable GPU "
                 "(`--device cpu --quick` runs the script on the CPU)")
    if dev.type not in ("cpu", "cuda"):
        ap.error(f"--device must be cpu or cuda[:N], got {args.device!r}")
    args.cache = str(Path(args.cache).resolve())
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else Plan()
    if args.child:  # one part in this process; its result goes to a JSON file for the parent
        Path(args.result).write_text(json.dumps(CHILD_PARTS[args.child](plan, args)))
        return 0
    from shards.atomic import atomic_write_json

    start = time.perf_counter()
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    report = {"format": "interhand-gpu-report", "version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": " ".join(["python -m benchmarks.gpu", *(sys.argv[1:] if argv is None else argv)]),
              "quick": args.quick, "budget_s": args.budget, "plan": {**asdict(plan), "workers": plan.workers},
              "environment": {}, "parts": {}, "summary": {}, "wall_s": 0.0}
    try:
        report["environment"] = env = environment(args.device)
    except Exception as e:  # noqa: BLE001 - reported, the parts still run
        report["environment"] = env = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                                       "dali": dali_version() or "not installed"}
    has_dali = env.get("dali") != "not installed"
    shards, wanted = args.shards, args.parts.split(",")
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for name in (p for p in PARTS if p in wanted):
            left = args.budget - (time.perf_counter() - start)
            limit = min(plan.budgets[name], left)
            if name in NEEDS_DALI and not has_dali:
                r = {"status": "skipped", "reason": "NVIDIA DALI is not installed"}
            elif name in NEEDS_SHARDS and shards is None:
                r = {"status": "skipped", "reason": "no shards (the shards part did not run or failed)"}
            elif limit < MIN_START_S:
                r = {"status": "skipped", "reason": f"out of the time budget ({left:.0f} of {args.budget:.0f} s left)"}
            elif name == "pytest_gpu":
                r = run_pytest(limit, Path(tmp), has_dali)
            else:
                r = run_child(name, args, shards, limit, Path(tmp))
            if name == "shards":  # the later parts read these shards, or none
                shards = r["path"] if r["status"] == "ok" else None
            report["parts"][name] = r = finite(r)
            report["summary"] = summarise(report["parts"], env)
            report["wall_s"] = time.perf_counter() - start
            print(f"[gpu-check] {name}: {r['status']} ({r.get('seconds', 0):.0f} s) {part_line(name, r)}", flush=True)
            atomic_write_json(args.out, report)  # after every part: a killed run keeps what it measured
    report["wall_s"] = time.perf_counter() - start
    atomic_write_json(args.out, report)
    print_table(report)
    print(f"wrote {Path(args.out).resolve()}")
    return 1 if any(r["status"] in ("failed", "timeout") for r in report["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
