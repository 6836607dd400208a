"""`python -m pipeline.preview` writes the batch (.npz) and a contact sheet (.png).

Run: .venv/bin/python -m pytest -q tests/test_pipeline_preview.py
"""
import numpy as np

from pipeline import preview
from tests.test_pipeline_fixtures import write_split


def test_preview_writes_batch_and_sheet(tmp_path):
    write_split(tmp_path / "shards", "train", 6, per_shard=3, seed=2)
    out = tmp_path / "out"
    preview.main(["--shards", str(tmp_path / "shards"), "--split", "train", "--augment", "--out", str(out),
                  "--batch-size", "4", "--input-size", "64"])
    batch = np.load(out / "train_batch.npz")
    assert batch["images"].shape == (4, 3, 64, 64) and batch["joint_coord"].shape == (4, 42, 3)
    assert {"joint_valid", "rel_root_depth", "root_valid", "hand_type", "aug", "annot_id"} <= set(batch.files)
    png = (out / "train_batch.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not list(out.glob("*.tmp"))
