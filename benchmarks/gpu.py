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
CHILD_NAMES = ("shards", "flops", "dali_pipeline", "train_original", "train_ours", "train_ceiling", "sync_check",
               "eval")  # benchmarks/gpu_parts.py: CHILD_PARTS
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
    ap.add_argument("--child", choices=CHILD_NAMES, help=argparse.SUPPRESS)  # internal: run one part
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
        from benchmarks.gpu_parts import CHILD_PARTS  # the parts themselves (imports torch, model, ...)

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
