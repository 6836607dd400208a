"""benchmarks/pipeline.py: its original-style baseline computes what our loader computes (same
forced augmentation: same labels, every patch pixel within a grey level), and the benchmark runs end to end.

Run: .venv/bin/python -m pytest -q tests/test_bench_pipeline.py
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmarks.pipeline import OriginalStyleDataset, extract, main
from pipeline import build_loader
from shards.geometry import DEPTH_RANGE_MM
from tests.test_pipeline_exact import CASES
from tests.test_pipeline_fixtures import write_split

SIZE, HM = 128, (32, 16, 16)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    split_dir, _, _ = write_split(root / "shards", "train", 8, per_shard=4, seed=5)
    assert extract(split_dir, root / "files", 100) == 8
    return split_dir, root / "files"


@pytest.mark.parametrize("case", ["identity", "flip_rot_shift", "big_rot_flip"])
def test_baseline_agrees_with_our_loader(split, case):
    split_dir, files = split
    ds = OriginalStyleDataset(files, input_size=SIZE, hm=HM, aug=CASES[case])
    geometry = SimpleNamespace(input_size=SIZE, heatmap_size=HM, root_bins=64, depth_range_mm=DEPTH_RANGE_MM,
                               root_depth_range_mm=DEPTH_RANGE_MM)
    loader = build_loader(split_dir, geometry, batch_size=4, train=False, device=torch.device("cpu"), num_threads=1,
                          force_aug=CASES[case])
    ours = {int(a): (b, i) for b in loader for i, a in enumerate(b["annot_id"])}
    assert sorted(ours) == sorted(ds.ids.tolist())
    for k, aid in enumerate(ds.ids):
        ref, (b, i) = ds[k], ours[int(aid)]
        np.testing.assert_allclose(b["joint_coord"][i].numpy(), ref["joint_coord"], atol=1e-3, err_msg=str(aid))
        np.testing.assert_array_equal(b["joint_valid"][i].numpy(), ref["joint_valid"])
        np.testing.assert_array_equal(b["hand_type"][i].numpy(), ref["hand_type"])
        assert b["root_valid"][i].item() == ref["root_valid"]
        if ref["root_valid"]:
            assert abs(b["rel_root_depth"][i].item() - ref["rel_root_depth"]) < 1e-3
        worst = (b["images"][i] - ref["images"]).abs().max().item() * 255  # the colour clip shows here
        assert worst < 1.0, f"annot {aid}: patch differs by up to {worst:.2f} grey levels"


def test_benchmark_prints_the_table(split, capsys):
    split_dir, _ = split
    main(["--shards", str(split_dir.parent), "--split", "train", "--batch-size", "2", "--batches", "2",
          "--warmup", "1", "--rounds", "1", "--pause", "0", "--cores", "1", "--input-size", "64"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("(")]
    assert rows[0].startswith("(a) original-style") and rows[1].startswith("(b) ours on the CPU")
    assert float(rows[1].split()[-3]) > 0 and rows[1].split()[-1].endswith("x")
