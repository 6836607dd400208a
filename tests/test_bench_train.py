"""benchmarks/train.py: the original-style loss formula, and every mode end to end with tiny settings."""
import math

import numpy as np
import torch

from benchmarks.train import main, materialised_heatmap_loss
from model.loss import heatmap_loss
from tests.test_pipeline_fixtures import write_split


def test_materialised_loss_matches_a_plain_loop():
    g = torch.Generator().manual_seed(0)
    B, J, D, H, W = 2, 3, 4, 5, 6
    heat = torch.rand(B, J, D, H, W, generator=g) * 255
    coord = torch.rand(B, J, 3, generator=g) * torch.tensor([W, H, D]) - 0.5
    valid = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    ref, sigma = 0.0, 2.5
    for b in range(B):
        for j in range(J):
            x, y, z = coord[b, j].double().tolist()
            for k in range(D):
                for i in range(H):
                    for l in range(W):
                        t = 255 * math.exp(-((l - x) ** 2 + (i - y) ** 2 + (k - z) ** 2) / (2 * sigma ** 2))
                        ref += float(valid[b, j]) * (float(heat[b, j, k, i, l]) - t) ** 2
    ref /= heat.numel()
    got = materialised_heatmap_loss(heat, coord, valid, sigma, 255.0).item()
    assert np.isclose(got, ref, rtol=1e-5)
    assert np.isclose(heatmap_loss(heat, coord, valid, sigma, 255.0).item(), ref, rtol=1e-4)  # ours agrees


def test_every_mode_runs_and_prints_the_table(tmp_path, capsys):
    split_dir, _, _ = write_split(tmp_path / "shards", "train", 6, per_shard=6)
    rows = main(["--model", "tiny", "--batch", "2", "--steps", "1", "--warmup", "1", "--device", "cpu",
                 "--shards", str(tmp_path / "shards"), "--workers", "1", "--no-compile"])
    out = capsys.readouterr().out
    assert [r["mode"] for r in rows] == ["original", "ours", "ceiling"]
    for r in rows:
        assert r["images_per_s"] > 0 and 0 <= r["data_wait"] < 1 and r["peak_mb"] > 0
        assert math.isfinite(r["loss"]) and r["first_step_s"] > 0
    assert "original: eager fp32" in out and "ours: DALI" in out and "ours / original:" in out and "ours / ceiling:" in out
    assert rows[2]["data_wait"] < 0.05  # no loader behind the ceiling's batches


def test_missing_train_split_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="no train/ split folder"):
        main(["--model", "tiny", "--device", "cpu", "--shards", str(tmp_path)])
