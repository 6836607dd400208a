"""Readers (shards.reader + shards.sources): records checked against a plain, independent
implementation of docs/conventions.md §2-§3 written here; bad input gives errors naming file/annotation/field.

Fixture writers (write_interhand, write_inline) are shared with tests/test_shards.py.
"""
import json
import math
import os

import numpy as np
import pytest
import simplejpeg

from shards import jsonstream
from shards.reader import AnnotationError, iter_records, load_split

FIXED_JPEG_SIZE = (24, 32)  # (height, width) of pictures that no annotation describes


def tiny_jpeg(seed, size=FIXED_JPEG_SIZE):
    """A small JPEG of `size` (height, width): a smooth picture that depends on the seed."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 3 + seed * 7) % 256, (y * 5 + seed) % 256, ((x + y) * 2) % 256], -1).astype(np.uint8)
    return simplejpeg.encode_jpeg(img, quality=80)


def _dump(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)  # NaN stays a (non-JSON) NaN literal, as Python writes it


def write_interhand(root, split="val", captures=(1, 2), cams=("400001", "400002"), frames=(10, 15, 20),
                    seed=0, rootnet=True, fps=5):
    """A small InterHand2.6M tree; returns (data, cameras, joints) as written (for the reference)."""
    rng = np.random.default_rng(seed)
    images, anns, cameras, joints = [], [], {}, {}
    hts = ("right", "left", "interacting")
    aid = 100
    for c in captures:
        cameras[str(c)] = {k: {} for k in ("campos", "camrot", "focal", "princpt")}
        for cam in cams:
            a = rng.uniform(-0.3, 0.3, 3)
            R = _rot(a)
            cameras[str(c)]["campos"][cam] = (rng.normal(0, 50, 3) + [0, 0, -900]).tolist()
            cameras[str(c)]["camrot"][cam] = R.tolist()
            cameras[str(c)]["focal"][cam] = [1270.0 + rng.uniform(-20, 20), 1270.0 + rng.uniform(-20, 20)]
            cameras[str(c)]["princpt"][cam] = [256.0 + rng.uniform(-5, 5), 167.0 + rng.uniform(-5, 5)]
        joints[str(c)] = {}
        for fr in frames:
            joints[str(c)][str(fr)] = {"world_coord": rng.normal(0, 60, (42, 3)).tolist(),
                                        "joint_valid": [1] * 42, "hand_type": "interacting", "hand_type_valid": 1}
            for cam in cams:
                ht = hts[aid % 3]
                fname = f"Capture{c}/0001_seq/cam{cam}/image{fr}.jpg"
                images.append({"id": aid + 7, "file_name": fname, "width": 334 if aid % 4 == 0 else 512,
                               "height": 512 if aid % 4 == 0 else 334, "capture": c, "subject": c + 1,
                               "seq_name": "0001_seq", "camera": cam, "frame_idx": fr})
                jv = [[int(rng.random() > 0.2)] for _ in range(42)]
                anns.append({"id": aid, "image_id": aid + 7, "bbox": rng.uniform([50, 40, 20, 60], [200, 150, 120, 90]).tolist(),
                             "joint_valid": jv, "hand_type": ht, "hand_type_valid": int(aid % 5 != 0)})
                path = os.path.join(root, "images", split, fname)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:  # the size data.json says (the converter checks it)
                    f.write(tiny_jpeg(aid, (images[-1]["height"], images[-1]["width"])))
                aid += 1
    data = {"images": images, "annotations": anns}
    ann_dir = os.path.join(root, "annotations", split)
    _dump(os.path.join(ann_dir, f"InterHand2.6M_{split}_data.json"), data)
    _dump(os.path.join(ann_dir, f"InterHand2.6M_{split}_camera.json"), cameras)
    _dump(os.path.join(ann_dir, f"InterHand2.6M_{split}_joint_3d.json"), joints)
    rn = None
    if rootnet:
        rn = [{"annot_id": a["id"], "bbox": rng.uniform(0, 200, 4).tolist(), "abs_depth": rng.uniform(800, 1000, 2).tolist()}
              for a in anns]
        _dump(os.path.join(root, "rootnet_output", f"rootnet_interhand2.6m_output_{split}{'_30fps' if fps == 30 else ''}.json"), rn)
    return data, cameras, joints, rn


def _rot(a):
    cx, cy, cz, sx, sy, sz = *np.cos(a), *np.sin(a)
    return (np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]))


def write_inline(root, fmt, split="test", n=6, seed=0):
    """RHD / STB COCO file (wrist-first 21-joint hands) with tiny images; returns the data dict."""
    rng = np.random.default_rng(seed)
    name = {"rhd": {"train": "RHD_training.json", "test": "RHD_evaluation.json"},
            "stb": {"train": "STB_train.json", "test": "STB_test.json"}}[fmt][split]
    images, anns = [], []
    for i in range(n):
        seq = f"B{i % 2 + 1}Counting"
        images.append({"id": i, "file_name": f"{i:05d}.jpg", "width": 320, "height": 320, "seq_name": seq,
                       "cam_param": {"focal": [280.0 + i, 281.0], "princpt": [160.0, 158.0 + i]}})
        jc = rng.normal(0, 40, (21, 3)) + [0, 0, 600]
        ji = rng.uniform(0, 320, (21, 2))
        anns.append({"id": 1000 + i, "image_id": i, "bbox": [10.0 + i, 20.0, 100.0, 60.0 + 10 * i],
                     "joint_cam": jc.tolist(), "joint_img": ji.tolist(),
                     "joint_valid": [int(rng.random() > 0.2) for _ in range(21)], "hand_type": ("right", "left")[i % 2]})
        rel = {"rhd": f"{'training' if split == 'train' else 'evaluation'}/color/{i:05d}.jpg",
               "stb": f"images/{seq}/{i:05d}.jpg"}[fmt]
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(tiny_jpeg(i, (320, 320)))
    data = {"images": images, "annotations": anns}
    _dump(os.path.join(root, name), data)
    return data


# ---- the plain reference (docs/conventions.md §2-§3), one annotation at a time, no numpy broadcasting tricks ----
def ref_bbox(b):
    x, y, w, h = b
    cx, cy = x + w / 2, y + h / 2
    if w > h:
        h = w
    elif w < h:
        w = h
    w, h = w * 1.25, h * 1.25
    return [cx - w / 2, cy - h / 2, w, h]


def ref_root_rule(valid):
    v = list(valid)
    for lo, root in ((0, 20), (21, 41)):
        if v[root] == 0:
            for j in range(lo, lo + 21):
                v[j] = 0
    return v


def ref_interhand(ann, img, cameras, joints):
    cam = cameras[str(img["capture"])]
    c = img["camera"]
    R, t = cam["camrot"][c], cam["campos"][c]
    (fx, fy), (px, py) = cam["focal"][c], cam["princpt"][c]
    jc, ji = [], []
    for X in joints[str(img["capture"])][str(img["frame_idx"])]["world_coord"]:
        d = [X[k] - t[k] for k in range(3)]
        p = [sum(R[i][k] * d[k] for k in range(3)) for i in range(3)]
        jc.append(p)
        ji.append([p[0] / p[2] * fx + px, p[1] / p[2] * fy + py])
    return {"joint_cam": jc, "joint_img": ji, "joint_valid": ref_root_rule([v[0] for v in ann["joint_valid"]]),
            "bbox": ref_bbox(ann["bbox"]), "abs_depth": [jc[20][2], jc[41][2]], "focal": [fx, fy], "princpt": [px, py],
            "hand_type_vec": {"right": [1, 0], "left": [0, 1], "interacting": [1, 1]}[ann["hand_type"]],
            "hand_type_valid": ann["hand_type_valid"]}


def ref_inline(ann, img):
    off = 0 if ann["hand_type"] == "right" else 21
    jc, ji, jv = [[0.0] * 3 for _ in range(42)], [[0.0] * 2 for _ in range(42)], [0] * 42
    for k in range(21):
        native = 0 if k == 20 else k + 1  # native order: wrist, then fingers tip..base
        jc[off + k], ji[off + k], jv[off + k] = ann["joint_cam"][native], ann["joint_img"][native], ann["joint_valid"][native]
    return {"joint_cam": jc, "joint_img": ji, "joint_valid": ref_root_rule(jv), "bbox": ref_bbox(ann["bbox"]),
            "abs_depth": [jc[20][2], jc[41][2]], "focal": img["cam_param"]["focal"], "princpt": img["cam_param"]["princpt"],
            "hand_type_vec": [1, 0] if ann["hand_type"] == "right" else [0, 1], "hand_type_valid": 1}


def assert_matches(rec, ref):
    for k, v in ref.items():
        np.testing.assert_allclose(np.asarray(rec[k], dtype=np.float64), np.asarray(v, dtype=np.float64),
                                   rtol=1e-5, atol=2e-3, err_msg=k)


def test_interhand_records_match_reference(tmp_path):
    data, cameras, joints, rn = write_interhand(tmp_path)
    data["annotations"][1]["bbox"][2] = 0.0  # zero width: docs/conventions.md §3.1 still gives a square box
    _dump(os.path.join(tmp_path, "annotations", "val", "InterHand2.6M_val_data.json"), data)
    recs = list(iter_records("interhand", str(tmp_path), "val"))
    assert [r["annot_id"] for r in recs] == [a["id"] for a in data["annotations"]]
    imgs = {i["id"]: i for i in data["images"]}
    rn = {e["annot_id"]: e for e in rn}
    for rec, ann in zip(recs, data["annotations"]):
        img = imgs[ann["image_id"]]
        assert_matches(rec, ref_interhand(ann, img, cameras, joints))
        assert rec["file_name"] == img["file_name"] and rec["camera"] == img["camera"]
        assert rec["image_path"] == os.path.join(str(tmp_path), "images", "val", img["file_name"])
        assert (rec["capture"], rec["subject"], rec["frame_idx"], rec["width"], rec["height"]) == (
            img["capture"], img["subject"], img["frame_idx"], img["width"], img["height"])
        assert rec["hand_type"] == ann["hand_type"] and rec["image_id"] == img["id"]
        np.testing.assert_allclose(rec["bbox_raw"], ann["bbox"], rtol=1e-6)
        np.testing.assert_allclose(rec["rootnet_bbox"], rn[ann["id"]]["bbox"], rtol=1e-6)
        np.testing.assert_allclose(rec["rootnet_abs_depth"], rn[ann["id"]]["abs_depth"], rtol=1e-6)
    assert {r["hand_type"] for r in recs} == {"right", "left", "interacting"}
    assert any(r["joint_valid"][20] == 0 or r["joint_valid"][41] == 0 for r in recs)  # the root rule was exercised


def test_rootnet_optional_and_30fps_name(tmp_path):
    write_interhand(tmp_path, split="test", rootnet=True, fps=30)
    assert load_split("interhand", str(tmp_path), "test", fps=5).rootnet_file is None  # 5 fps name absent
    d = load_split("interhand", str(tmp_path), "test", fps=30)
    assert d.rootnet_file.endswith("rootnet_interhand2.6m_output_test_30fps.json")
    assert load_split("interhand", str(tmp_path), "test", rootnet=None, fps=30).records([0])[0]["rootnet_bbox"] is None


@pytest.mark.parametrize("fmt", ["rhd", "stb"])
def test_inline_sources_match_reference(tmp_path, fmt):
    data = write_inline(tmp_path, fmt)
    recs = list(iter_records(fmt, str(tmp_path), "test"))
    assert len(recs) == len(data["annotations"])
    for rec, ann, img in zip(recs, data["annotations"], data["images"]):
        assert_matches(rec, ref_inline(ann, img))
        assert rec["hand_type"] == ann["hand_type"] and rec["subject"] is None
        assert os.path.isfile(rec["image_path"])


def _break(tmp_path, edit):
    data, cameras, joints, _ = write_interhand(tmp_path, rootnet=False)
    edit(data, cameras, joints)
    d = os.path.join(tmp_path, "annotations", "val")
    for name, obj in (("data", data), ("camera", cameras), ("joint_3d", joints)):
        _dump(os.path.join(d, f"InterHand2.6M_val_{name}.json"), obj)
    return data


@pytest.mark.parametrize("edit, words", [
    (lambda d, c, j: c.pop("2"), ["camera.json", "no capture 2"]),
    (lambda d, c, j: c["1"]["campos"].pop("400002") and None, ["camera.json", "no camera '400002'"]),
    (lambda d, c, j: j["1"].pop("15"), ["joint_3d.json", "no frame 15"]),
    (lambda d, c, j: j["1"]["10"].__setitem__("world_coord", [[float("nan")] * 3] * 42), ["joint_3d.json", "NaN"]),
    (lambda d, c, j: d["annotations"][0].__setitem__("joint_valid", [[1]] * 41), ["data.json", "annotation 100", "joint_valid", "shape"]),
    (lambda d, c, j: d["annotations"][0]["bbox"].__setitem__(1, float("nan")), ["data.json", "annotation 100", "bbox", "NaN"]),
    (lambda d, c, j: d["annotations"][0].__setitem__("hand_type", "both"), ["annotation 100", "hand_type"]),
    (lambda d, c, j: d["annotations"][0]["bbox"].__setitem__(slice(2, 4), [0.0, 0.0]), ["annotation 100", "bbox", "no extent"]),
    (lambda d, c, j: d["annotations"][0].__setitem__("image_id", 5), ["annotation 100", "image_id", "no image"]),
])
def test_bad_input_named(tmp_path, edit, words):
    _break(tmp_path, edit)
    with pytest.raises(AnnotationError) as e:
        list(iter_records("interhand", str(tmp_path), "val"))
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    d = load_split("interhand", str(tmp_path), "val")  # non-strict: listed, the rest still usable
    assert 1 <= len(d.problems) < len(d)
    good = [r for r in range(len(d)) if r not in d.problems]
    assert len(d.records(good)) == len(good)


def test_missing_file_named(tmp_path):
    write_interhand(tmp_path)
    os.remove(os.path.join(tmp_path, "annotations", "val", "InterHand2.6M_val_joint_3d.json"))
    with pytest.raises(FileNotFoundError, match="InterHand2.6M_val_joint_3d.json"):
        load_split("interhand", str(tmp_path), "val")
    with pytest.raises(ValueError, match="no split"):
        load_split("rhd", str(tmp_path), "val")


def test_nan_literal_split_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonstream, "_CHUNK", 7)
    p = tmp_path / "x.json"
    p.write_text('{"a": [1.5, NaN, -Infinity, "NaN, ok", 2]}')
    (out,) = list(jsonstream.stream_items(str(p), "a"))
    assert out[0] == 1.5 and out[1] is None and out[2] is None and out[3] == "NaN, ok" and out[4] == 2
    assert math.isnan(np.asarray(out[:3], dtype=float)[1])
    p.write_text('{"a": [1, }')
    with pytest.raises(ValueError, match="x.json: not valid JSON"):
        list(jsonstream.stream_items(str(p), "a"))


def test_rootnet_entries(tmp_path):
    data, _, _, rn = write_interhand(tmp_path / "ih", split="test")
    _dump(os.path.join(tmp_path, "ih", "rootnet_output", "rootnet_interhand2.6m_output_test.json"), rn[1:])
    d = load_split("interhand", str(tmp_path / "ih"), "test")
    assert list(d.problems) == [0] and "no RootNet entry for annotation 100" in d.problems[0]
    # RHD's RootNet file lies beside the data root and gives one depth per (single-hand) sample.
    data = write_inline(tmp_path / "rhd" / "data", "rhd", split="test", n=3)
    _dump(os.path.join(tmp_path, "rhd", "rootnet_output", "rootnet_rhd_output.json"),
          [{"annot_id": a["id"], "bbox": [1.0, 2.0, 30.0, 30.0], "abs_depth": 700.0 + k} for k, a in enumerate(data["annotations"])])
    recs = list(iter_records("rhd", str(tmp_path / "rhd" / "data"), "test"))
    assert [r["rootnet_abs_depth"].tolist() for r in recs] == [[700.0, 700.0], [701.0, 701.0], [702.0, 702.0]]
    assert recs[0]["rootnet_bbox"].tolist() == [1.0, 2.0, 30.0, 30.0]
