"""Metrics and output-space conversion (docs/conventions.md §7) against hand-checked numbers and a plain loop reference."""
import math

import numpy as np
import pytest

from eval.convert import output_to_camera
from eval.metrics import compute_metrics, hand_type_codes, roc_auc
from shards.skeleton import HAND_TYPES

from .test_eval_data import make_records

IN, HM = 256, 64


def test_hand_checked_case():
    gt = np.zeros((4, 42, 3))
    gt[:, :, 2] = 1000.0
    gt[:, 21:, 0] = 30.0  # left hand 30 mm to the right of the right hand
    pred = gt.copy()
    pred[:, :21] += [10.0, 10.0, 10.0]  # a shift of a whole hand cancels in root alignment
    valid = np.zeros((4, 42))
    pred[0, 0] += [3, 4, 0]          # right sample: joint 0 error 5
    valid[0, [0, 20]] = 1
    pred[1, 21] += [0, 0, 16]        # left sample: joint 21 error 16
    valid[1, [21, 41]] = 1
    pred[2, 0] += [6, 8, 0]          # interacting: joint 0 error 10, joint 21 error 2
    pred[2, 21] += [0, 2, 0]
    valid[2, [0, 20, 21, 41]] = 1
    pred[3, 0] += [0, 30, 0]         # interacting, left root invalid: joint 0 error 30
    valid[3, [0, 20]] = 1
    root_vec = np.tile([30.0, 4.0, 3.0], (4, 1))  # MRRPE counts sample 2 only: |(0, 4, 3)| = 5
    ht = ["right", "left", "interacting", "interacting"]
    htv = [1, 1, 0, 1]
    p_ht = np.array([[0.9, 0.1], [0.6, 0.4], [0.1, 0.1], [0.7, 0.8]])  # right ok, left wrong, -, ok
    m = compute_metrics(pred, gt, valid, ht, htv, p_ht, root_vec)
    # single: j0 5, j20 0, j21 16, j41 0 -> 21 / 4
    assert m["mpjpe_single"] == pytest.approx(5.25)
    # interacting: j0 (10 + 30) / 2, j20 0, j21 2, j41 0 -> 22 / 4
    assert m["mpjpe_interacting"] == pytest.approx(5.5)
    # all: j0 (5 + 10 + 30) / 3 = 15, j20 0, j21 (16 + 2) / 2 = 9, j41 0 -> 24 / 4
    assert m["mpjpe_all"] == pytest.approx(6.0)
    assert m["mpjpe_per_joint_all"][0] == pytest.approx(15.0)
    assert np.isnan(m["mpjpe_per_joint_all"][1]) and m["joint_count_all"][0] == 3
    assert m["mrrpe"] == pytest.approx(5.0) and m["mrrpe_count"] == 1
    assert m["handedness_accuracy"] == pytest.approx(2 / 3) and m["handedness_count"] == 3
    assert (m["num_single"], m["num_interacting"]) == (2, 2)
    # diagnostics over the 3 hand_type_valid samples: count = interacting (0.7+0.8) above both singles (1.0)
    assert m["hand_count_auc"] == 1.0
    # chirality: the right sample's p0-p1 = 0.8 above the left's 0.2
    assert m["chirality_auc"] == 1.0


def _pair_count_auc(score, positive):
    """The definition: the share of (positive, negative) pairs ordered right, ties one half."""
    pos = [s for s, y in zip(score, positive) if y]
    neg = [s for s, y in zip(score, positive) if not y]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def test_roc_auc_equals_pair_count():
    rng = np.random.default_rng(3)
    for n in (2, 7, 60, 301):
        score = rng.integers(0, 6, n) / 5.0  # many ties
        positive = rng.random(n) < 0.4
        positive[0], positive[1] = True, False
        assert roc_auc(score, positive) == pytest.approx(_pair_count_auc(score, positive), abs=1e-12)
        assert roc_auc(-score, positive) == pytest.approx(1 - _pair_count_auc(score, positive), abs=1e-12)
    assert roc_auc(np.full(9, 0.3), np.arange(9) < 4) == 0.5  # a constant output is chance
    assert math.isnan(roc_auc([0.1, 0.2], [True, True]))
    # a network that counts hands but has no chirality: count AUC 1, chirality 0.5, accuracy at the majority
    ht = ["right", "left", "interacting", "right", "left", "interacting"]
    p = np.array([[0.6, 0.6], [0.6, 0.6], [0.9, 0.9], [0.6, 0.6], [0.6, 0.6], [0.9, 0.9]])
    gt = np.zeros((6, 42, 3))
    m = compute_metrics(gt, gt, np.ones((6, 42)), ht, np.ones(6), p)
    assert (m["hand_count_auc"], m["chirality_auc"]) == (1.0, 0.5)
    assert m["handedness_accuracy"] == pytest.approx(2 / 6)


def test_empty_sets_give_nan_not_crash():
    gt = np.zeros((2, 42, 3))
    m = compute_metrics(gt, gt, np.ones((2, 42)), ["right", "left"], [0, 0], np.zeros((2, 2)))
    assert m["mpjpe_single"] == 0.0
    assert math.isnan(m["mpjpe_interacting"]) and m["num_interacting"] == 0
    assert math.isnan(m["mrrpe"]) and m["mrrpe_count"] == 0
    assert math.isnan(m["handedness_accuracy"]) and m["handedness_count"] == 0


def test_hand_type_codes_and_bad_input():
    np.testing.assert_array_equal(hand_type_codes(["left", "interacting", "right"]), [1, 2, 0])
    np.testing.assert_array_equal(hand_type_codes(np.array([[0, 1], [1, 1], [1, 0]])), [1, 2, 0])
    with pytest.raises(ValueError, match="unknown hand type"):
        hand_type_codes(["both"])
    with pytest.raises(ValueError, match="pred_cam has shape"):
        compute_metrics(np.zeros((2, 21, 3)), np.zeros((2, 42, 3)), np.ones((2, 42)), ["right"] * 2, [1, 1],
                        np.zeros((2, 2)))


# --- an independent reference: the original's evaluate(), one sample and one joint at a time ----------
def reference_evaluate(recs, joint_coord, rel_root, hand_prob, rootnet=False):
    sh, ih = [[] for _ in range(42)], [[] for _ in range(42)]
    mrrpe, acc, cnt = [], 0, 0
    for n, r in enumerate(recs):
        bbox = r["rootnet_bbox"] if rootnet else r["bbox"]
        depth = r["rootnet_abs_depth"] if rootnet else r["abs_depth"]
        x0, y0, bw, bh = [float(v) for v in bbox]
        cx, cy = x0 + bw / 2, y0 + bh / 2
        (fx, fy), (px, py) = r["focal"].astype(float), r["princpt"].astype(float)
        img = []
        for j in range(42):  # bins -> patch -> image (unrotated crop: a scale about the centre)
            xp, yp = joint_coord[n, j, 0] / HM * IN, joint_coord[n, j, 1] / HM * IN
            img.append([cx + (xp - IN / 2) * bw / IN, cy + (yp - IN / 2) * bh / IN,
                        (joint_coord[n, j, 2] / HM * 2 - 1) * 200.0])

        def back(u, v, z):
            return np.array([(u - px) / fx * z, (v - py) / fy * z, z])

        gt = r["joint_cam"].astype(float)
        valid = r["joint_valid"]
        if r["hand_type"] == "interacting" and valid[41] and valid[20]:
            rel = (rel_root[n] / HM * 2 - 1) * 200.0
            lr = back(img[41][0], img[41][1], img[41][2] + depth[0] + rel)
            rr = back(img[20][0], img[20][1], img[20][2] + depth[0])
            mrrpe.append(float(np.sqrt(np.sum(((lr - rr) - (gt[41] - gt[20])) ** 2))))
        cam = np.array([back(u, v, z + depth[0 if j < 21 else 1]) for j, (u, v, z) in enumerate(img)])
        for j in range(42):
            root = 20 if j < 21 else 41
            if valid[j]:
                e = float(np.sqrt(np.sum(((cam[j] - cam[root]) - (gt[j] - gt[root])) ** 2)))
                (sh if r["hand_type"] != "interacting" else ih)[j].append(e)
        if r["hand_type_valid"]:
            p = hand_prob[n]
            acc += {"right": p[0] > .5 and p[1] < .5, "left": p[0] < .5 and p[1] > .5,
                    "interacting": p[0] > .5 and p[1] > .5}[r["hand_type"]]
            cnt += 1
    return {"mpjpe_single": np.mean([np.mean(v) for v in sh]),
            "mpjpe_interacting": np.mean([np.mean(v) for v in ih]),
            "mpjpe_all": np.mean([np.mean(a + b) for a, b in zip(sh, ih)]),
            "mpjpe_per_joint_all": np.array([np.mean(a + b) for a, b in zip(sh, ih)]),
            "mrrpe": np.mean(mrrpe), "handedness_accuracy": acc / cnt}


def _arrays(recs, rootnet):
    st = lambda k: np.stack([r[k] for r in recs])  # noqa: E731
    bbox, depth = (st("rootnet_bbox"), st("rootnet_abs_depth")) if rootnet else (st("bbox"), st("abs_depth"))
    return bbox, depth, st("focal"), st("princpt")


def _ours(recs, jc, rel, prob, rootnet):
    bbox, depth, f, c = _arrays(recs, rootnet)
    geometry = {"input_size": (IN, IN), "heatmap_size": (HM, HM, HM), "root_bins": HM, "depth_range_mm": 400.0,
                "root_depth_range_mm": 400.0}
    conv = output_to_camera(jc, rel, bbox, depth, f, c, geometry, keep_image=True)
    return compute_metrics(conv["joint_cam"], np.stack([r["joint_cam"] for r in recs]),
                           np.stack([r["joint_valid"] for r in recs]), [r["hand_type"] for r in recs],
                           [r["hand_type_valid"] for r in recs], prob, conv["root_vec"]), conv


@pytest.mark.parametrize("rootnet", [False, True])
def test_vectorised_equals_loop_reference(rootnet):
    recs = make_records(300, seed=3)
    for r in recs[:3]:  # make sure every joint has entries in both sets
        r["joint_valid"][:] = 1
        r["hand_type"] = "interacting"
    recs[3]["joint_valid"][:21] = 1
    recs[3]["hand_type"], recs[4]["hand_type"] = "right", "left"
    recs[4]["joint_valid"][21:] = 1
    rng = np.random.default_rng(4)
    jc = rng.uniform(0, HM, (len(recs), 42, 3))
    rel = rng.uniform(0, HM, len(recs))
    prob = rng.uniform(0, 1, (len(recs), 2))
    ref = reference_evaluate(recs, jc, rel, prob, rootnet)
    ours, _ = _ours(recs, jc, rel, prob, rootnet)
    for k, v in ref.items():
        np.testing.assert_allclose(ours[k], v, rtol=1e-10, err_msg=k)


def _perfect_bins(recs):
    """GT -> InterNet output space through the forward crop (docs/conventions.md §3.3-§3.6), written out plainly."""
    jc, rel = np.zeros((len(recs), 42, 3)), np.zeros(len(recs))
    for n, r in enumerate(recs):
        x0, y0, bw, bh = r["bbox"].astype(float)
        cx, cy = x0 + bw / 2, y0 + bh / 2
        u, v = r["joint_img"][:, 0].astype(float), r["joint_img"][:, 1].astype(float)
        z = r["joint_cam"][:, 2].astype(float)
        root_z = np.where(np.arange(42) < 21, z[20], z[41])
        jc[n, :, 0] = ((u - cx) * IN / bw + IN / 2) / IN * HM
        jc[n, :, 1] = ((v - cy) * IN / bh + IN / 2) / IN * HM
        jc[n, :, 2] = ((z - root_z) / 200 + 1) / 2 * HM
        rel[n] = ((z[41] - z[20]) / 200 + 1) / 2 * HM
    return jc, rel


def test_perfect_predictions_score_zero():
    recs = make_records(40, seed=5)
    jc, rel = _perfect_bins(recs)
    prob = np.stack([np.where(r["hand_type_vec"] > 0, 0.9, 0.1) for r in recs])
    m, conv = _ours(recs, jc, rel, prob, rootnet=False)
    for k in ("mpjpe_single", "mpjpe_interacting", "mpjpe_all", "mrrpe"):
        assert m[k] == pytest.approx(0.0, abs=1e-3), k
    assert m["handedness_accuracy"] == 1.0
    np.testing.assert_allclose(conv["joint_cam"], np.stack([r["joint_cam"] for r in recs]), atol=2e-3)


def test_gt_and_rootnet_paths_differ_exactly_where_they_should():
    recs = make_records(30, seed=6)
    for r in recs:
        r["hand_type"] = HAND_TYPES[2]
        r["joint_valid"][:] = 1
    rng = np.random.default_rng(7)
    jc, rel = rng.uniform(0, HM, (30, 42, 3)), rng.uniform(0, HM, 30)
    prob = rng.uniform(0, 1, (30, 2))
    base, cb = _ours(recs, jc, rel, prob, rootnet=False)
    # RootNet fields equal to the GT's: identical numbers.
    for r in recs:
        r["rootnet_bbox"], r["rootnet_abs_depth"] = r["bbox"].copy(), r["abs_depth"].copy()
    same, cs = _ours(recs, jc, rel, prob, rootnet=True)
    np.testing.assert_array_equal(cs["joint_cam"], cb["joint_cam"])
    assert same["mrrpe"] == base["mrrpe"] and same["mpjpe_all"] == base["mpjpe_all"]
    # Only the left root depth changes: left joints move, right joints, MRRPE and handedness do not.
    for r in recs:
        r["rootnet_abs_depth"][1] += 50
    m, c = _ours(recs, jc, rel, prob, rootnet=True)
    np.testing.assert_array_equal(c["joint_cam"][:, :21], cb["joint_cam"][:, :21])
    assert np.all(np.abs(c["joint_cam"][:, 21:, 2] - cb["joint_cam"][:, 21:, 2] - 50) < 1e-3)
    assert m["mrrpe"] == base["mrrpe"] and m["handedness_accuracy"] == base["handedness_accuracy"]
    np.testing.assert_array_equal(m["mpjpe_per_joint_all"][:21], base["mpjpe_per_joint_all"][:21])
    assert np.all(m["mpjpe_per_joint_all"][21:41] != base["mpjpe_per_joint_all"][21:41])
    # The right root depth too: the right joints and MRRPE move.
    for r in recs:
        r["rootnet_abs_depth"][0] += 50
    m2, c2 = _ours(recs, jc, rel, prob, rootnet=True)
    assert np.all(c2["joint_cam"][:, :21] != cb["joint_cam"][:, :21]) and m2["mrrpe"] != base["mrrpe"]
    # The bbox: image positions move by the bbox's shift and scale; z relative to the root does not.
    for r in recs:
        r["rootnet_abs_depth"] = r["abs_depth"].copy()
        r["rootnet_bbox"] = r["bbox"] + np.float32([4, -3, 0, 0])
    m3, c3 = _ours(recs, jc, rel, prob, rootnet=True)
    np.testing.assert_allclose(c3["joint_img"][..., :2] - cb["joint_img"][..., :2], np.broadcast_to([4, -3], (30, 42, 2)),
                               atol=1e-4)  # float32 bbox rounding
    np.testing.assert_array_equal(c3["joint_img"][..., 2], cb["joint_img"][..., 2])
