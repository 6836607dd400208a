"""`make setup` picks torch and DALI by the CUDA version the NVIDIA driver supports, and fails when a
GPU is present but torch cannot use it. Runs the real Makefile recipe with fake `nvidia-smi`, `pip`
and `python` executables (they log what they were asked to do), so nothing is installed.

Run: .venv/bin/python -m pytest -q tests/test_setup.py
"""
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _exe(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _setup(tmp_path, smi_header, torch_sees_gpu=True, extra=()):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    fake = tmp_path / "fakebin"
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    fake.mkdir()
    log = tmp_path / "pip.log"
    if smi_header is not None:  # no nvidia-smi on PATH at all otherwise
        _exe(fake / "nvidia-smi", f'[ "$1" = "-L" ] && {{ echo "GPU 0: fake"; exit 0; }}\necho "{smi_header}"\n')
    _exe(venv / "bin" / "pip", f'echo "$@" >> {log}\n')
    ok = "0" if torch_sees_gpu else "1"
    _exe(venv / "bin" / "python",
         f'case "$*" in *"-m pip"*) exit 0;; *cuda.is_available*) [ {ok} = 0 ] && exit 0; '
         'echo "setup: a GPU is present but torch cannot use it" >&2; exit 1;; esac\nexit 0\n')
    env = {**os.environ, "PATH": f"{fake}:/usr/bin:/bin"}
    for k in ("TORCH", "DALI"):
        env.pop(k, None)
    r = subprocess.run(["make", "-s", "-C", str(REPO), "-B", f"VENV={venv}", f"{venv}/.ready", *extra],
                       env=env, capture_output=True, text=True, timeout=60)
    return r, (log.read_text() if log.exists() else "")


@pytest.mark.parametrize("header, torch_req, dali_req", [
    ("| NVIDIA-SMI 580.95   Driver Version: 580.95   CUDA Version: 13.0 |", "torch==2.11.0", "nvidia-dali-cuda130==2.4.0"),
    ("| NVIDIA-SMI 550.54   Driver Version: 550.54   CUDA Version: 12.4 |", "torch==2.10.0", "nvidia-dali-cuda120==2.4.0"),
    (None, "torch==2.13.0", "nvidia-dali-cuda120==2.4.0"),
])
def test_setup_picks_torch_and_dali_by_driver(tmp_path, header, torch_req, dali_req):
    r, log = _setup(tmp_path, header)
    assert r.returncode == 0, r.stderr
    first = log.splitlines()[0]
    assert torch_req in first and dali_req in first, log


def test_setup_refuses_a_driver_too_old(tmp_path):
    r, log = _setup(tmp_path, "| NVIDIA-SMI 470.1   Driver Version: 470.1   CUDA Version: 11.4 |")
    assert r.returncode != 0 and "update the driver" in r.stderr
    assert "torch" not in log  # nothing installed


def test_setup_fails_when_torch_cannot_use_the_gpu(tmp_path):
    r, _ = _setup(tmp_path, "| NVIDIA-SMI 580.95   Driver Version: 580.95   CUDA Version: 13.0 |",
                  torch_sees_gpu=False)
    assert r.returncode != 0 and "cannot use it" in r.stderr
    assert not (tmp_path / "venv" / ".ready").exists()


def test_setup_override(tmp_path):
    r, log = _setup(tmp_path, "| CUDA Version: 13.0 |", extra=("TORCH=torch==9.9",))
    assert r.returncode == 0, r.stderr
    assert "torch==9.9" in log.splitlines()[0]
