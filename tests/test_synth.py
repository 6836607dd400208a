"""Tests of the synthetic data set generator (the shards.synth package).

Run: .venv/bin/python -m pytest -q tests/test_synth.py
"""
import hashlib
import json
import os

import numpy as np
import pytest
import simplejpeg
from pycocotools.coco import COCO

from shards import synth
from shards.mano.model import lbs, load_models
from shards.skeleton import JOINT_NAMES, parents
from shards.synth import common, interhand, render
from shards.synth import single as synth_single

SPLITS = ("train", "val", "test")
KINDS = ("data", "camera", "joint_3d", "MANO_NeuralAnnot")


@pytest.fixture(scope="module")
def ih(tmp_path_factory):
    root = tmp_path_factory.mktemp("interhand")
    summary = synth.generate(root, size="tiny", seed=0, fmt="interhand")
    ann = {s: {k: json.load(open(root / "annotations" / s / f"InterHand2.6M_{s}_{k}.json")) for k in KINDS}
           for s in SPLITS}
    return root, summary, ann


def _project(world, cam, cam_id):
    """Plain docs/conventions.md §2 projection: X_cam = R (X - campos); u = X/Z fx + cx, v = Y/Z fy + cy."""
    r = np.array(cam["camrot"][cam_id], dtype=np.float64)
    t = np.array(cam["campos"][cam_id], dtype=np.float64)
    f = np.array(cam["focal"][cam_id], dtype=np.float64)
    c = np.array(cam["princpt"][cam_id], dtype=np.float64)
    xc = np.einsum("ij,nj->ni", r, np.asarray(world, dtype=np.float64) - t)
    return xc, np.stack([xc[:, 0] / xc[:, 2] * f[0] + c[0], xc[:, 1] / xc[:, 2] * f[1] + c[1]], 1)


def _rows(ann, split):
    d = ann[split]
    for img, a in zip(d["data"]["images"], d["data"]["annotations"]):
        cap, frame = str(img["capture"]), str(img["frame_idx"])
        yield img, a, d["camera"][cap], d["joint_3d"][cap][frame], d["MANO_NeuralAnnot"][cap][frame]


def test_layout_and_data_schema(ih):
    root, summary, ann = ih
    assert summary["seconds"] > 0 and sum(summary["images"].values()) >= 60
    for s in SPLITS:
        db = COCO(str(root / "annotations" / s / f"InterHand2.6M_{s}_data.json"))
        assert len(db.anns) == len(db.imgs) == summary["images"][s] > 0
        for img, a, *_ in _rows(ann, s):
            assert set(img) == {"id", "file_name", "width", "height", "capture", "subject", "seq_name",
                                "camera", "frame_idx"}
            assert all(isinstance(img[k], int) for k in ("id", "width", "height", "capture", "subject", "frame_idx"))
            assert isinstance(img["camera"], str) and isinstance(img["seq_name"], str)
            assert img["file_name"] == (f"Capture{img['capture']}/{img['seq_name']}/cam{img['camera']}/"
                                        f"image{img['frame_idx']}.jpg")
            assert set(a) == {"id", "image_id", "bbox", "joint_valid", "hand_type", "hand_type_valid"}
            assert a["image_id"] == img["id"] and len(a["bbox"]) == 4
            assert all(isinstance(v, float) for v in a["bbox"])
            assert len(a["joint_valid"]) == 42 and all(len(v) == 1 and v[0] in (0, 1) for v in a["joint_valid"])
            assert a["hand_type"] in ("right", "left", "interacting") and a["hand_type_valid"] in (0, 1)
            h, w, _, _ = simplejpeg.decode_jpeg_header(open(root / "images" / s / img["file_name"], "rb").read())
            assert (w, h) == (img["width"], img["height"])
    lines = [ln.split() for ln in open(root / "annotations" / "skeleton.txt") if not ln.startswith("#")]
    assert [ln[0] for ln in lines] == list(JOINT_NAMES)
    assert [int(ln[1]) for ln in lines] == list(range(42))
    assert [int(ln[2]) for ln in lines] == parents().tolist()


def test_camera_joint3d_mano_schema(ih):
    root, _, ann = ih
    models = load_models(root / "mano")
    regressor = np.load(root / "mano" / "J_regressor_synth_ih26m.npy")
    for s in SPLITS:
        for cap, c in ann[s]["camera"].items():
            assert set(c) == {"campos", "camrot", "focal", "princpt"} and cap.isdigit()
            for cam in c["camrot"]:
                r = np.array(c["camrot"][cam])
                assert r.shape == (3, 3) and np.allclose(r @ r.T, np.eye(3), atol=1e-6)
                assert abs(np.linalg.det(r) - 1) < 1e-6
                assert len(c["campos"][cam]) == 3 and 1150 < c["focal"][cam][0] < 1400
        for img, a, cam, j3, mano in _rows(ann, s):
            assert set(j3) == {"world_coord", "joint_valid", "hand_type", "hand_type_valid"}
            world = np.array(j3["world_coord"])
            assert world.shape == (42, 3) and len(j3["joint_valid"]) == 42
            assert j3["hand_type"] == a["hand_type"] and j3["hand_type_valid"] == a["hand_type_valid"]
            pp = np.array(cam["princpt"][img["camera"]])
            assert np.abs(pp - [img["width"] / 2, img["height"] / 2]).max() < 20
            dist = np.linalg.norm(world[np.array(j3["joint_valid"], bool)].mean(0) - cam["campos"][img["camera"]])
            assert 550 < dist < 1300
            for side, sl in (("right", slice(0, 21)), ("left", slice(21, 42))):
                present = a["hand_type"] in (side, "interacting")
                if present:
                    m = mano[side]
                    assert (len(m["pose"]), len(m["shape"]), len(m["trans"])) == (48, 10, 3)
                    # the MANO fit's regressed wrist is the annotated one up to the fitting noise (trans is
                    # not the wrist: MANO rotates about its own root joint; tests/test_mano_synth.py has more)
                    verts, _ = lbs(models[side], [m["pose"]], [m["shape"]], [m["trans"]])
                    wrist = regressor[20] @ verts[0] * 1000
                    assert np.abs(wrist - world[20 if side == "right" else 41]).max() < 15
                else:  # an absent hand: MANO null, every joint invalid
                    assert mano[side] is None
                    assert not any(j3["joint_valid"][sl]) and not any(v[0] for v in a["joint_valid"][sl])


def test_variety_like_the_real_data(ih):
    _, _, ann = ih
    sizes, types, htv0, dropped = set(), set(), 0, 0
    for s in SPLITS:
        for img, a, _, j3, _ in _rows(ann, s):
            sizes.add((img["width"], img["height"]))
            types.add(a["hand_type"])
            htv0 += a["hand_type_valid"] == 0
            present = np.repeat([a["hand_type"] != "left", a["hand_type"] != "right"], 21)
            dropped += int((present & ~np.array(a["joint_valid"], bool).ravel()).sum())
        assert {a["hand_type"] for a in ann[s]["data"]["annotations"]} == {"right", "left", "interacting"}
    assert sizes == {(512, 334), (334, 512)}
    assert types == {"right", "left", "interacting"} and htv0 > 0 and dropped > 0


def test_hand_anatomy(ih):
    _, _, ann = ih
    for _, a, _, j3, _ in _rows(ann, "train"):
        w = np.array(j3["world_coord"])
        for side, off in (("right", 0), ("left", 21)):
            if a["hand_type"] not in (side, "interacting"):
                continue
            bones = np.linalg.norm(w[off:off + 20] - w[off + parents()[:20]], axis=1)  # child - parent
            assert 70 < np.linalg.norm(w[off + 11] - w[off + 20]) < 110  # wrist -> middle base
            assert (bones > 12).all() and (bones < 110).all()


def test_bbox_covers_valid_joints(ih):
    _, _, ann = ih
    for img, a, cam, j3, _ in _rows(ann, "val"):
        _, uv = _project(j3["world_coord"], cam, img["camera"])
        v = np.array(a["joint_valid"], bool).ravel()
        x, y, bw, bh = a["bbox"]
        assert (uv[v, 0] >= x).all() and (uv[v, 0] <= x + bw).all()
        assert (uv[v, 1] >= y).all() and (uv[v, 1] <= y + bh).all()
        assert x >= 0 and y >= 0 and x + bw <= img["width"] and y + bh <= img["height"]
        span = uv[v].max(0) - uv[v].min(0)
        assert bw <= 1.2 * span[0] + 20 and bh <= 1.2 * span[1] + 20
        assert ((uv[:, 0] < 0) | (uv[:, 0] > img["width"] - 1) | (uv[:, 1] < 0)
                | (uv[:, 1] > img["height"] - 1))[v].sum() == 0


def test_rootnet_output(ih):
    root, _, ann = ih
    for s in ("val", "test"):
        rn = json.load(open(root / "rootnet_output" / f"rootnet_interhand2.6m_output_{s}.json"))
        assert [r["annot_id"] for r in rn] == [a["id"] for a in ann[s]["data"]["annotations"]]
        errs = []
        for r, (img, a, cam, j3, _) in zip(rn, _rows(ann, s)):
            assert set(r) == {"annot_id", "bbox", "abs_depth"} and len(r["abs_depth"]) == 2
            assert abs(r["bbox"][2] - r["bbox"][3]) < 1e-3  # processed: square
            xc, _ = _project(j3["world_coord"], cam, img["camera"])
            for k, root_j in ((0, 20), (1, 41)):
                if a["hand_type"] in (("right", "left")[k], "interacting"):
                    errs.append(r["abs_depth"][k] - xc[root_j, 2])
        assert 5 < np.abs(errs).mean() < 40 and np.abs(errs).max() < 100


def test_projected_joints_land_on_the_drawn_hand(ih):
    root, _, ann = ih
    plan = interhand.plan_interhand(str(root), "val", common.SIZES["tiny"]["val"], 0)
    tasks = {os.path.relpath(t.path, root / "images" / "val"): t for t in plan["tasks"]}
    near = total = own_hand = 0
    for img, a, cam, j3, _ in _rows(ann, "val"):
        xc, uv = _project(j3["world_coord"], cam, img["camera"])
        task = tasks[img["file_name"]]
        v = np.array(a["joint_valid"], bool).ravel()
        np.testing.assert_allclose(task.joints_cam[v], xc[v], atol=1e-6)  # the picture's geometry
        jpeg = simplejpeg.decode_jpeg(open(root / "images" / "val" / img["file_name"], "rb").read())
        diff = jpeg.astype(float) - common.render_task(task)  # the JPEG is this JSON's picture
        h4, w4 = img["height"] // 4 * 4, img["width"] // 4 * 4
        assert np.abs(diff[:h4, :w4].reshape(h4 // 4, 4, w4 // 4, 4, 3).mean((1, 3))).mean() < 1.5
        ras = render.rasterize(task.joints_cam, task.present, task.focal, task.princpt, img["width"], img["height"],
                               task.elbows)
        px = np.rint(uv[v]).astype(int)
        depth, hand = ras.depth[px[:, 1], px[:, 0]], ras.hand[px[:, 1], px[:, 0]]
        assert (hand >= 0).all()  # every valid joint is on a hand
        assert (depth <= xc[v, 2] + 0.5).all()  # the joint is inside the drawn solid
        near += int((depth >= xc[v, 2] - 30).sum())  # the visible surface is at the joint
        own_hand += int((hand == (np.flatnonzero(v) >= 21)).sum())
        total += int(v.sum())
    assert near > 0.5 * total and own_hand > 0.9 * total


def test_one_rig_for_every_capture_and_split(ih):
    """InterHand2.6M's dome: the same cameras (and so the same backdrops) in every capture of every split."""
    _, _, ann = ih
    rigs = [json.dumps(cams, sort_keys=True) for s in SPLITS for cams in ann[s]["camera"].values()]
    assert len(rigs) > 3 and len(set(rigs)) == 1
    plans = [interhand.plan_interhand("/x", s, common.SIZES["tiny"][s], 0) for s in ("train", "test")]
    backdrop = {}
    for plan in plans:
        for t in plan["tasks"]:
            cam = t.path.split("/cam")[1].split("/")[0]
            assert backdrop.setdefault(cam, t.look.background_seed) == t.look.background_seed


def test_hands_hang_on_the_arms_of_a_subject_facing_the_rig():
    """Body frame: +x the subject's right, +y forward, +z up. Forearms come from the body's side of
    their hand, from behind and below; wrists bend within a human range; the left arm mirrors the right."""
    from shards.synth.body import WRIST_FLEX, place_hands

    rng = np.random.default_rng(0)
    draws = [place_hands(rng, t) for t in ("right", "left", "interacting") for _ in range(300)]
    for side, sign in (("right", 1.0), ("left", -1.0)):
        hands = [d[side] for d in draws if side in d]
        rot = np.stack([h[0] for h in hands])
        elbow = np.stack([h[2] for h in hands])
        np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-9)  # a left hand's own frame is mirrored
        np.testing.assert_allclose(rot.transpose(0, 2, 1) @ rot, np.broadcast_to(np.eye(3), rot.shape), atol=1e-9)
        assert np.mean(sign * elbow[:, 0] > 0) > 0.9  # outwards: the body's side of this hand
        assert np.mean(elbow[:, 1] < 0) > 0.95 and np.mean(elbow[:, 2] < 0) > 0.95  # behind, below
        # fingers point along the forearm within the wrist's flexion / deviation
        axis = -elbow / np.linalg.norm(elbow, axis=1, keepdims=True)
        bend = np.degrees(np.arccos(np.clip(np.einsum("ni,ni->n", rot[:, :, 1], axis), -1, 1)))
        assert bend.max() < np.hypot(max(np.abs(WRIST_FLEX)), 25.0) + 1
        # the palm (+z of the hand's frame) faces down, in or up, rarely outwards
        palm = rot[:, :, 2]
        assert np.mean(sign * palm[:, 0] > 0.7) < 0.1


def test_forearm_points_at_the_elbow():
    rng = np.random.default_rng(1)
    joints = rng.normal(0, 30, (21, 3)) + [0.0, 0.0, 800.0]
    joints[20] = [0.0, 0.0, 800.0]  # the wrist
    f, c = np.array([600.0, 600.0]), np.array([200.0, 200.0])
    for elbow in ([260.0, 0.0, 800.0], [0.0, -260.0, 800.0]):
        ras = render.rasterize(np.concatenate([joints, joints]), (True, False), f, c, 400, 400,
                               np.array([elbow, elbow]))
        u, v = (np.array(elbow[:2]) * 0.8 / 800.0 * f + c).astype(int)  # 80 % of the way to the elbow
        assert ras.hand[v, u] == 0
        mirrored = (2 * c - [u, v]).astype(int)  # the opposite direction: no arm there
        assert ras.hand[mirrored[1], mirrored[0]] == -1


def test_capsule_depth_and_endpoints():
    # a capsule across the optical axis at depth 500: the centre ray hits at 500 - r
    rays = render._rays(0, 1, 0, 1, np.array([1000.0, 1000.0]), np.array([0.0, 0.0]))
    t = render.capsule_depth(rays, np.array([-50.0, 0, 500]), np.array([50.0, 0, 500]), 10.0)
    assert abs(t[0, 0] - 490.0) < 1e-9
    t = render.capsule_depth(rays, np.array([-50.0, 30, 500]), np.array([50.0, 30, 500]), 10.0)
    assert np.isinf(t[0, 0])
    j = np.random.default_rng(0).normal(0, 40, (21, 3)) + [0, 0, 800]
    (pa, pb, _, _), _, _ = render.hand_solids(j, 1)
    ends = np.concatenate([pa, pb])
    assert all(np.abs(ends - p).sum(1).min() < 1e-9 for p in j)  # each joint is a capsule centre


def test_deterministic(ih, tmp_path):
    root, _, _ = ih
    synth.generate(tmp_path, size="tiny", seed=0, fmt="interhand", workers=1)

    def digest(d):
        out = {}
        for dirpath, _, files in os.walk(d):
            for f in files:
                p = os.path.join(dirpath, f)
                out[os.path.relpath(p, d)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
        return out

    assert digest(root) == digest(tmp_path)


@pytest.mark.parametrize("fmt", ["rhd", "stb"])
def test_rhd_stb_layout(fmt, tmp_path):
    summary = synth.generate(tmp_path, size="tiny", seed=0, fmt=fmt)
    splits = ("training", "evaluation") if fmt == "rhd" else ("train", "test")
    assert set(summary["images"]) == set(splits)
    lines = [ln.split() for ln in open(tmp_path / "skeleton.txt") if not ln.startswith("#")]
    assert len(lines) == 42 and lines[0][0] == "l_wrist" and lines[21][0] == "r_wrist"
    for split in splits:
        db = COCO(str(tmp_path / f"{fmt.upper()}_{split}.json"))
        assert len(db.anns) == summary["images"][split] > 0
        for a in db.anns.values():
            img = db.imgs[a["image_id"]]
            path = (tmp_path / split / "color" / img["file_name"] if fmt == "rhd"
                    else tmp_path / "images" / img["seq_name"] / img["file_name"])
            assert path.is_file()
            ji, jc, jv = np.array(a["joint_img"]), np.array(a["joint_cam"]), np.array(a["joint_valid"])
            assert ji.shape == (21, 2) and jc.shape == (21, 3) and jv.shape == (21,)
            assert a["hand_type"] in ("right", "left") and len(a["bbox"]) == 4
            f, c = np.array(img["cam_param"]["focal"]), np.array(img["cam_param"]["princpt"])
            np.testing.assert_allclose(jc[:, :2] / jc[:, 2:] * f + c, ji, atol=1e-3)
            base = np.linalg.norm(jc[[4, 8, 12, 16, 20]] - jc[0], axis=1)  # wrist at 0
            assert (base > 15).all() and (base < 115).all()
            joints = np.zeros((42, 3))
            off = 0 if a["hand_type"] == "right" else 21  # back into the InterHand layout
            joints[off:off + 21] = jc[np.argsort(synth_single.ONE_HAND_PERM)]
            ras = render.rasterize(joints, (a["hand_type"] == "right", a["hand_type"] == "left"), f, c,
                                   img["width"], img["height"])
            px = np.rint(ji[jv.astype(bool)]).astype(int)
            assert (ras.hand[px[:, 1], px[:, 0]] >= 0).all()
