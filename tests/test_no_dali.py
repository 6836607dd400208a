"""Without NVIDIA DALI the torch-only parts still import and run: targets, the model, the loss, and
the GPU check's non-DALI parts; only the loader needs DALI, and says so when used.

Run: .venv/bin/python -m pytest -q tests/test_no_dali.py
"""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A finder that refuses nvidia.dali, as on a machine where it is not installed.
BLOCK = """
import sys
class _NoDali:
    def find_spec(self, name, path=None, target=None):
        if name == "nvidia" or name.startswith("nvidia."):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, _NoDali())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_torch_only_parts_import_without_dali():
    r = _run("import pipeline, pipeline.targets, model, model.loss, eval.metrics\nprint('ok')")
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_loader_says_dali_is_missing():
    r = _run("import pipeline\npipeline.build_loader")
    assert r.returncode != 0 and "nvidia" in r.stderr
