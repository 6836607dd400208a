"""`python -m eval --predictions ...` end to end on tiny shards: both forms, outputs, bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from eval.__main__ import main
from eval.convert import output_to_camera
from shards.skeleton import JOINT_NAMES

from .test_eval_data import make_records, write_shards
from .test_eval_metrics import _perfect_bins

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    recs = make_records(24, seed=11)
    root = write_shards(str(tmp_path_factory.mktemp("shards")), "test", recs, per_shard=7)
    return root, sorted(recs, key=lambda r: r["annot_id"])


def _run(tmp_path, root, arrays, *extra, name="p.npz"):
    path = str(tmp_path / name)
    np.savez(path, **arrays)
    out = str(tmp_path / "out")
    m = main(["--predictions", path, "--shards", root, "--split", "test", "--out", out, "--quiet",
              "--pictures", "2", *extra])
    return m, out


def test_perfect_form_a_and_outputs(tmp_path, data):
    root, recs = data
    jc, rel = _perfect_bins(recs)
    prob = np.stack([np.where(r["hand_type_vec"] > 0, 0.8, 0.2) for r in recs])
    ids = np.array([r["annot_id"] for r in recs])
    perm = np.random.default_rng(0).permutation(len(recs))  # any row order
    arrays = {"annot_id": ids[perm], "joint_coord": jc[perm], "rel_root_depth": rel[perm], "hand_type": prob[perm],
              "input_size": 256, "heatmap_size": [64, 64, 64]}
    m, out = _run(tmp_path, root, arrays)
    for k in ("mpjpe_single", "mpjpe_interacting", "mpjpe_all", "mrrpe"):
        assert m[k] == pytest.approx(0, abs=1e-3), k
    assert m["handedness_accuracy"] == 1.0
    js = json.load(open(os.path.join(out, "metrics.json")))
    assert js["meta"]["form"] == "a" and js["num_samples"] == 24 and len(js["mpjpe_per_joint_all"]) == 42
    rows = open(os.path.join(out, "per_joint.csv")).read().splitlines()
    assert len(rows) == 43 and rows[1].split(",")[1] == JOINT_NAMES[0]
    for png in ("per_joint.png", "best.png", "worst.png"):
        assert os.path.getsize(os.path.join(out, png)) > 1000
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]


def test_forms_a_and_b_agree(tmp_path, data):
    root, recs = data
    rng = np.random.default_rng(1)
    n = len(recs)
    jc = rng.uniform(0, 64, (n, 42, 3))
    abs_d = np.stack([r["abs_depth"] for r in recs]).astype(np.float64)
    jc[:, 41, 2] = 32.0  # the left root at its own root depth, and a relative root depth that agrees with
    rel = ((abs_d[:, 1] - abs_d[:, 0]) / 200 + 1) / 2 * 64  # the GT's: then MRRPE agrees too
    prob = rng.uniform(0, 1, (n, 2))
    ids = np.array([r["annot_id"] for r in recs])
    ma, _ = _run(tmp_path, root, {"annot_id": ids, "joint_coord": jc, "rel_root_depth": rel, "hand_type": prob})
    st = lambda k: np.stack([r[k] for r in recs])  # noqa: E731
    geometry = {"input_size": (256, 256), "heatmap_size": (64, 64, 64), "root_bins": 64, "depth_range_mm": 400.0,
                "root_depth_range_mm": 400.0}  # the defaults a file without them gets
    cam = output_to_camera(jc, rel, st("bbox"), abs_d, st("focal"), st("princpt"), geometry)["joint_cam"]
    mb, out = _run(tmp_path, root, {"annot_id": ids[::-1], "joint_cam": cam[::-1], "hand_type": prob[::-1]},
                   name="b.npz")
    assert json.load(open(os.path.join(out, "metrics.json")))["meta"]["form"] == "b"
    for k in ("mpjpe_single", "mpjpe_interacting", "mpjpe_all", "mrrpe", "handedness_accuracy"):
        assert mb[k] == pytest.approx(ma[k], rel=1e-6), k
    np.testing.assert_allclose(mb["mpjpe_per_joint_all"], ma["mpjpe_per_joint_all"], rtol=1e-6)
    assert ma["mpjpe_all"] > 1 and ma["mrrpe_count"] > 0


def test_rootnet_flag_changes_the_numbers(tmp_path, data):
    root, recs = data
    jc, rel = _perfect_bins(recs)
    arrays = {"annot_id": [r["annot_id"] for r in recs], "joint_coord": jc, "rel_root_depth": rel,
              "hand_type": np.full((len(recs), 2), 0.7)}
    m_gt, _ = _run(tmp_path, root, arrays)
    m_rn, out = _run(tmp_path, root, arrays, "--rootnet")
    assert m_gt["mpjpe_all"] < 1e-3 < m_rn["mpjpe_all"] and m_rn["mrrpe"] > 1e-3
    assert m_rn["handedness_accuracy"] == m_gt["handedness_accuracy"]
    assert json.load(open(os.path.join(out, "metrics.json")))["meta"]["rootnet"] is True


def test_bad_predictions_raise(tmp_path, data):
    root, recs = data
    n = len(recs)
    ids = np.array([r["annot_id"] for r in recs])
    good = {"annot_id": ids, "joint_cam": np.ones((n, 42, 3)), "hand_type": np.zeros((n, 2))}
    cases = [({**good, "annot_id": ids[:-1], "joint_cam": good["joint_cam"][:-1], "hand_type": good["hand_type"][:-1]},
              "no prediction"),
             ({**good, "annot_id": np.concatenate([ids[:-1], ids[:1]])}, "duplicated"),
             ({**good, "annot_id": np.concatenate([ids[:-1], [1]])}, "not in the split"),
             ({**good, "joint_coord": np.zeros((n, 42, 3))}, "exactly one of"),
             ({k: v for k, v in good.items() if k != "hand_type"}, "missing field"),
             ({**good, "joint_cam": np.ones((n, 21, 3))}, "joint_cam.*shape"),
             ({"annot_id": ids, "joint_coord": np.zeros((n, 42, 3)), "rel_root_depth": np.zeros(n),
               "hand_type": np.zeros((n, 2)), "input_size": 128}, "input_size is")]
    for arrays, msg in cases:
        with pytest.raises(ValueError, match=msg):
            _run(tmp_path, root, arrays, *(["--input-size", "256"] if "input_size" in arrays else []))


def test_command_line_error_exit(tmp_path, data):
    root, _ = data
    path = str(tmp_path / "bad.npz")
    np.savez(path, annot_id=np.array([1, 2]), joint_cam=np.zeros((2, 42, 3)), hand_type=np.zeros((2, 2)))
    r = subprocess.run([sys.executable, "-m", "eval", "--predictions", path, "--shards", root, "--split", "test",
                        "--out", str(tmp_path / "o"), "--quiet"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "not in the split" in r.stderr and "bad.npz" in r.stderr
