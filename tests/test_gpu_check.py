"""`python -m benchmarks.gpu` (make gpu-check) end to end in its CPU mode (--device cpu --quick: the
tiny model, a few steps): every part runs in its own process and lands in gpu_report.json with
positive, finite figures; without NVIDIA DALI the parts that need it are reported as skipped and
the torch-only ones still run; a failing part is reported and the next one runs.

Run: .venv/bin/python -m pytest -q tests/test_gpu_check.py   (~1-2 minutes on 2 cores)
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.gpu import PARTS, peak_bf16_tflops, summarise
from tests.test_no_dali import BLOCK

REPO = Path(__file__).resolve().parents[1]
TORCH_ONLY = {"flops", "train_original", "train_ceiling", "sync_check"}


def run_check(tmp: Path, *extra: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp / "gpu_report.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--quick", "--out", str(out),
                           *extra], cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    return proc, json.loads(out.read_text()) if out.exists() else {}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    proc, report = run_check(tmp, "--cache", str(tmp / "cache"))
    return tmp, proc, report


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_cpu_run_reports_every_part(quick):
    _, proc, report = quick
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report["format"] == "interhand-gpu-report" and report["quick"] and list(report["parts"]) == list(PARTS)
    assert {r["status"] for r in report["parts"].values()} == {"ok"}, report["parts"]
    env = report["environment"]
    assert env["torch"] and env["gpu"] == "none" and env["dali"] not in ("", "not installed")
    p = report["parts"]
    assert p["pytest_gpu"]["failures"] == p["pytest_gpu"]["errors"] == 0 and p["pytest_gpu"]["tests"] >= 8
    assert p["pytest_gpu"]["skipped"] == p["pytest_gpu"]["tests"]  # no CUDA here: every GPU test skips
    assert p["shards"]["samples"]["train"] > 0 and _positive(p["flops"]["forward_flops_per_image"])
    assert p["flops"]["train_flops_per_image"] == 3 * p["flops"]["forward_flops_per_image"]
    assert [r["batch"] for r in p["dali_pipeline"]["rows"]] == [4, 8]
    assert all(_positive(r["images_per_s"]) for r in p["dali_pipeline"]["rows"])
    for name in ("train_original", "train_ours", "train_ceiling"):
        r = p[name]
        assert _positive(r["images_per_s"]) and _positive(r["peak_mb"]) and 0 <= r["data_wait"] <= 1, (name, r)
        assert math.isfinite(r["loss"]) and r["mfu"] is None  # no known peak for a CPU
    assert p["train_ceiling"]["mode"] == "ceiling" and p["train_ceiling"]["data_wait"] < 0.05  # no data path
    assert p["sync_check"]["losses_finite"] and p["sync_check"]["checked"] is False  # a CUDA-only check
    assert _positive(p["eval"]["images_per_s"]) and p["eval"]["predicted"] == p["eval"]["samples"] > 0
    s = report["summary"]
    assert _positive(s["end_to_end_vs_ceiling"]) and _positive(s["ours_vs_original"]) and s["peak_bf16_tflops"] is None
    for name in PARTS:  # the printed table has one line per part
        assert any(line.startswith(name) for line in proc.stdout.splitlines()), name


def test_without_dali_the_dali_parts_are_skipped_and_a_failing_part_does_not_stop_the_rest(tmp_path):
    """DALI blocked in every process of the check (a sitecustomize on PYTHONPATH holding test_no_dali.py's
    finder), and a shards part that fails (no such folder): both reported, and the torch-only parts
    (pytest -m gpu on the modules that import without DALI, the synthetic-batch ceiling) still run."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK)
    proc, report = run_check(tmp_path, "--shards", str(tmp_path / "missing"), "--cache", str(tmp_path / "cache"),
                             "--parts", "pytest_gpu,shards,dali_pipeline,train_ours,train_ceiling,eval",
                             env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # a part failed
    assert report["environment"]["dali"] == "not installed" and list(report["parts"]) == \
        ["pytest_gpu", "shards", "dali_pipeline", "train_ours", "train_ceiling", "eval"]
    p = report["parts"]
    # The test modules that import DALI are listed apart; the others' GPU tests are collected (and skip).
    assert p["pytest_gpu"]["status"] == "ok" and p["pytest_gpu"]["errors"] == p["pytest_gpu"]["failures"] == 0
    assert "tests.test_pipeline_loader" in p["pytest_gpu"]["not_collected_without_dali"]
    assert p["pytest_gpu"]["skipped"] >= 4
    assert "tests.test_gpu_sync" not in p["pytest_gpu"]["not_collected_without_dali"]
    assert p["shards"]["status"] == "failed" and "missing" in p["shards"]["error"]
    for name in ("dali_pipeline", "train_ours", "eval"):
        assert p[name] == {"status": "skipped", "reason": "NVIDIA DALI is not installed"}
        assert f"[gpu-check] {name}: skipped (0 s) skipped: NVIDIA DALI is not installed" in proc.stdout
    assert p["train_ceiling"]["status"] == "ok" and _positive(p["train_ceiling"]["images_per_s"])


def test_peak_table_mfu_and_device_check():
    assert peak_bf16_tflops("NVIDIA H200") == peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0 and peak_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_bf16_tflops("Tesla T4") is None
    parts = {"flops": {"train_flops_per_image": 71.5e9}, "train_original": {"status": "ok", "images_per_s": 500.0},
             "train_ours": {"status": "ok", "images_per_s": 3000.0},
             "train_ceiling": {"status": "ok", "images_per_s": 3200.0}}
    s = summarise(parts, {"peak_bf16_tflops": 989.0})
    assert parts["train_ours"]["mfu"] == pytest.approx(3000 * 71.5e9 / 989e12)  # 21.7 %
    assert s["end_to_end_vs_ceiling"] == pytest.approx(3000 / 3200) and s["ours_vs_original"] == pytest.approx(6.0)
    if not torch.cuda.is_available():  # `make gpu-check` without a GPU: refused at once, saying what to do
        r = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--device", "cuda"], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "sees no usable GPU" in r.stderr and "--device cpu --quick" in r.stderr
