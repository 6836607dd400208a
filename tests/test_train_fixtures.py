"""Synthetic shards for the trainer tests (no tests here; imported by tests/test_train_*.py).

`train_shards(tmp_path_factory)` generates the tiny synthetic InterHand2.6M set and converts it once
per pytest session (72 train samples in 18 shards of 4, 26 val samples); `subset(...)` makes a
shard root with the first few train shards (symlinks, or copies to corrupt) and the whole val split.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PER_SHARD = 4
# Fast settings for the tiny model on 2 busy cores.
FAST = ["--model=tiny", "--batch_size=2", "--num_threads=1", "--compile=false", "--log_every=1"]


def train_shards(tmp_path_factory) -> Path:
    """The converted tiny synthetic set (built on first use in this session)."""
    from shards.__main__ import main as shards_main
    from shards.synth import generate

    root = tmp_path_factory.getbasetemp() / "train_data"
    out = root / "shards"
    if not (out / "val" / "manifest.json").is_file():
        shutil.rmtree(root, ignore_errors=True)
        generate(root / "synth", size="tiny", seed=0, workers=2)
        shards_main(["--source", "interhand", "--root", str(root / "synth"), "--out", str(out), "--quiet",
                     "--shard-count", str(PER_SHARD), "--workers", "2", "--splits", "train,val"])
    return out


def subset(shards: Path, dest: Path, n_train_shards: int, copy: bool = False) -> Path:
    """dest/train holding the first n train shards (with their manifest entries) and dest/val -> the
    full val split. copy=True copies the tars (to corrupt them)."""
    man = json.loads((shards / "train" / "manifest.json").read_text())
    man["shards"] = [e for e in man["shards"] if e["count"]][:n_train_shards]
    man["counts"]["total"] = sum(e["count"] for e in man["shards"])
    tars = [shards / "train" / e["tar"] for e in man["shards"]]
    (dest / "train").mkdir(parents=True)
    (dest / "train" / "manifest.json").write_text(json.dumps(man))
    for tar in tars:
        for src in (tar, tar.with_suffix(".idx")):
            target = dest / "train" / src.name
            if copy and src.suffix == ".tar":
                shutil.copyfile(src, target)
            else:
                os.symlink(src, target)
    os.symlink(shards / "val", dest / "val")
    return dest


def python() -> str:
    return sys.executable
