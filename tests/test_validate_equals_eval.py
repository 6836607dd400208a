"""The trainer's validation reports what `python -m eval --checkpoint` reports on the same weights
(issue 14.4): same loader, prediction (float32) and scoring, whatever the trainer's model wrapping
(channels_last, the step's autocast) does.

Run: .venv/bin/python -m pytest -q tests/test_validate_equals_eval.py
"""
import json
import math

import pytest

from eval.__main__ import main as eval_main
from tests.test_train_fixtures import FAST, subset, train_shards
from train.main import main as train_main
from train.validate import SUMMARY_KEYS


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return train_shards(tmp_path_factory)


def test_trainer_validation_equals_the_eval_cli_on_the_same_checkpoint(shards, tmp_path):
    root = subset(shards, tmp_path / "shards", 1)  # 4 train samples, batch 2: 2 steps, then validation
    out = tmp_path / "run"
    assert train_main([f"--shards={root}", f"--out={out}", *FAST, "--epochs=1", "--val_every=1"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (val,) = [r for r in rows if any(k.startswith("val/") for k in r)]
    # final.pt holds the weights validation saw (validation ran after the last step of the run).
    m = eval_main(["--checkpoint", str(out / "final.pt"), "--shards", str(root), "--split", "val",
                   "--out", str(tmp_path / "eval"), "--device", "cpu", "--batch-size", "2", "--pictures", "0",
                   "--quiet"])
    expected = {k: float(m[k]) for k in SUMMARY_KEYS if not math.isnan(float(m[k]))}
    assert {"mpjpe_all", "mpjpe_single", "mpjpe_interacting", "handedness_accuracy"} <= expected.keys()
    assert {k.removeprefix("val/"): v for k, v in val.items() if k.startswith("val/")} == expected  # exactly
    assert m["num_samples"] == json.loads((root / "val" / "manifest.json").read_text())["counts"]["total"]
