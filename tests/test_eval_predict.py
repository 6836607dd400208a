"""`python -m eval --checkpoint` through the real pipeline and model, and predict() under DDP (the
single-image demo: tests/test_eval_demo.py, tests/test_eval_demo_detect.py)."""
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from eval.__main__ import main
from eval.predict import predict, unique_rows
from model.config import get_config

from .test_pipeline_fixtures import write_split


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from model import build_model, save_checkpoint

    root = tmp_path_factory.mktemp("ck")
    torch.manual_seed(0)
    path = save_checkpoint(root / "tiny.pt", build_model("tiny"))
    split_dir, records, _ = write_split(root / "shards", "test", 7, per_shard=3)
    return str(path), str(root / "shards"), records


def test_checkpoint_path_end_to_end(tmp_path, tiny):
    ckpt, shards, records = tiny
    out = str(tmp_path / "gt")
    m = main(["--checkpoint", ckpt, "--shards", shards, "--split", "test", "--out", out, "--device", "cpu",
              "--batch-size", "4", "--pictures", "1", "--quiet"])
    p = np.load(os.path.join(out, "predictions.npz"))
    assert sorted(p["annot_id"].tolist()) == sorted(r["annot_id"] for r in records)
    assert p["joint_coord"].shape == (7, 42, 3) and p["heatmap_size"].tolist() == [16, 16, 16]
    assert m["num_samples"] == 7 and np.isfinite(m["mpjpe_all"])
    for f in ("metrics.json", "per_joint.csv", "per_joint.png", "best.png", "worst.png"):
        assert os.path.exists(os.path.join(out, f)), f
    # Re-scoring the written predictions gives the same numbers.
    m2 = main(["--predictions", os.path.join(out, "predictions.npz"), "--shards", shards, "--split", "test",
               "--out", str(tmp_path / "again"), "--pictures", "0", "--quiet"])
    assert m2["mpjpe_all"] == m["mpjpe_all"] and m2["mrrpe"] == m["mrrpe"]
    # With --rootnet the pipeline crops RootNet's bbox, and the stored crop must match it.
    m3 = main(["--checkpoint", ckpt, "--shards", shards, "--split", "test", "--out", str(tmp_path / "rn"),
               "--device", "cpu", "--batch-size", "4", "--pictures", "0", "--quiet", "--rootnet"])
    assert m3["mpjpe_all"] != m["mpjpe_all"]
    with pytest.raises(ValueError, match="differs from the GT crop.*--rootnet"):
        main(["--predictions", str(tmp_path / "rn" / "predictions.npz"), "--shards", shards, "--split", "test",
              "--out", str(tmp_path / "x"), "--pictures", "0", "--quiet"])


class _Model(torch.nn.Module):
    """Predictions that encode the input, so the test can check every row."""

    def forward(self, images):
        b = images.shape[0]
        v = images[:, 0, 0, 0]
        return {"heatmaps": v.reshape(b, 1, 1, 1, 1).expand(b, 42, 2, 2, 2),
                "rel_root_depth": v * 2, "hand_type": torch.stack([v, -v], 1)}


def _batches(ids):
    for chunk in np.array_split(np.asarray(ids), max(1, len(ids) // 3)):
        t = torch.as_tensor(chunk, dtype=torch.float32)
        yield {"images": t.reshape(-1, 1, 1, 1).expand(-1, 3, 4, 4), "annot_id": torch.as_tensor(chunk),
               "inv_trans": torch.zeros(len(chunk), 2, 3)}


class _Loader(list):
    """Batches with what predict() reads off a loader: the rank and the model geometry."""

    def __init__(self, batches, rank):
        super().__init__(batches)
        self.rank, self.config = rank, get_config("tiny")


def _fake_decode(h):
    return h[:, :, 0, 0, :1].expand(-1, -1, 3)


def _worker(rank, world, init, parts, out):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    loader = _Loader(list(_batches(parts[rank])), rank)
    res = predict(_Model(), loader, torch.device("cpu"), decode=_fake_decode, progress=False)
    if rank == 0:
        np.savez(out, **res)
    else:
        assert res is None
    dist.destroy_process_group()


def test_predict_gathers_and_deduplicates_under_ddp(tmp_path):
    parts = [[5, 1, 9, 3], [7, 3, 11]]  # 3 appears on both ranks (padding): kept once
    out = str(tmp_path / "p.npz")
    mp.spawn(_worker, args=(2, f"file://{tmp_path}/rdv", parts, out), nprocs=2, join=True)
    r = np.load(out)
    np.testing.assert_array_equal(r["annot_id"], [1, 3, 5, 7, 9, 11])
    np.testing.assert_array_equal(r["rel_root_depth"], r["annot_id"] * 2.0)
    np.testing.assert_array_equal(r["joint_coord"][:, 5, 2], r["annot_id"])
    np.testing.assert_array_equal(r["hand_type"][:, 1], -r["annot_id"])
    assert r["input_size"].tolist() == [64, 64] and r["heatmap_size"].tolist() == [16, 16, 16]  # the geometry
    assert r["root_bins"] == 16 and r["depth_range_mm"] == r["root_depth_range_mm"] == 400.0


def test_unique_rows_without_ddp():
    r = unique_rows({"annot_id": np.array([4, 2, 4]), "x": np.array([1.0, 2.0, 3.0])})
    np.testing.assert_array_equal(r["annot_id"], [2, 4])
    np.testing.assert_array_equal(r["x"], [2.0, 1.0])
