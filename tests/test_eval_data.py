"""Fixtures for the evaluation tests (tiny synthetic records and shards) and the tests of eval/gt.py."""
import json
import os

import numpy as np
import pytest
import simplejpeg
import webdataset as wds

from eval.gt import align, crop_source, load_gt, load_images
from shards.geometry import cam2pixel, process_bbox
from shards.index import open_split
from shards.labels import encode
from shards.skeleton import HAND_TYPES, LEFT, RIGHT, ROOT, hand_type_vec

W_IMG, H_IMG = 160, 120


def make_records(n, seed=0, rootnet=True):
    """n random but self-consistent records (the fields the label component needs)."""
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n):
        ht = HAND_TYPES[rng.integers(3)]
        focal = np.array([180.0, 175.0]) + rng.uniform(-10, 10, 2)
        princpt = np.array([W_IMG / 2, H_IMG / 2]) + rng.uniform(-5, 5, 2)
        roots = {"right": np.array([rng.uniform(-60, 0), rng.uniform(-40, 40), rng.uniform(700, 1100)]),
                 "left": np.array([rng.uniform(0, 60), rng.uniform(-40, 40), 0.0])}
        roots["left"][2] = roots["right"][2] + rng.uniform(-150, 150)
        cam = np.zeros((42, 3))
        for h, idx in (("right", RIGHT), ("left", LEFT)):
            cam[idx] = roots[h] + rng.uniform(-70, 70, (21, 3))
            cam[ROOT[h]] = roots[h]
        valid = (rng.random(42) > 0.15).astype(np.float32)
        if ht != "interacting":  # the absent hand is invalid
            valid[LEFT if ht == "right" else RIGHT] = 0
        valid[RIGHT] *= valid[ROOT["right"]]
        valid[LEFT] *= valid[ROOT["left"]]
        img = cam2pixel(cam, focal, princpt)
        lo, hi = img[:, :2].min(0), img[:, :2].max(0)
        bbox_raw = np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])
        bbox = process_bbox(bbox_raw)
        rec = {"annot_id": 1000 + 7 * i, "image_id": 50 + i, "width": W_IMG, "height": H_IMG,
               "focal": focal.astype(np.float32), "princpt": princpt.astype(np.float32),
               "bbox": bbox, "joint_cam": cam.astype(np.float32), "joint_img": img[:, :2].astype(np.float32),
               "joint_valid": valid, "hand_type": ht, "hand_type_vec": hand_type_vec(ht),
               "hand_type_valid": int(rng.random() > 0.2),
               "abs_depth": np.array([cam[20, 2], cam[41, 2]], dtype=np.float32),
               "rootnet_bbox": None, "rootnet_abs_depth": None}
        if rootnet:
            rec["rootnet_bbox"] = (bbox + rng.uniform(-6, 6, 4)).astype(np.float32)
            rec["rootnet_abs_depth"] = (rec["abs_depth"] + rng.uniform(-40, 40, 2)).astype(np.float32)
        recs.append(rec)
    return recs


def write_shards(root, split, records, per_shard=5, seed=0):
    """Write the records as OUT/<split>/<split>-NNNNNN.tar with jpg/lbl/ids members, shuffled."""
    os.makedirs(os.path.join(root, split), exist_ok=True)
    order = np.random.default_rng(seed).permutation(len(records))
    shards = []
    for s in range(0, len(records), per_shard):
        name = f"{split}-{s // per_shard:06d}"
        with wds.TarWriter(os.path.join(root, split, name + ".tar")) as w:
            for i in order[s:s + per_shard]:
                r = records[i]
                lbl, ids = encode(r)
                pix = np.full((H_IMG, W_IMG, 3), 40 + (r["annot_id"] % 200), np.uint8)
                w.write({"__key__": f"{r['annot_id']:09d}", "jpg": simplejpeg.encode_jpeg(pix),
                         "lbl": lbl, "ids": ids})
        shards.append({"tar": name + ".tar", "idx": name + ".idx", "count": len(order[s:s + per_shard])})
    with open(os.path.join(root, split, "manifest.json"), "w") as f:  # no index files: load_gt does not need them
        json.dump({"complete": True, "counts": {"total": len(records)}, "shards": shards}, f)
    return root


def gt_arrays(records):
    """The GT arrays of the records, sorted by annot_id, as load_gt gives them."""
    recs = sorted(records, key=lambda r: r["annot_id"])
    return {"annot_id": np.array([r["annot_id"] for r in recs]),
            "joint_cam": np.stack([r["joint_cam"] for r in recs]),
            "joint_valid": np.stack([r["joint_valid"] for r in recs]),
            "hand_type": [r["hand_type"] for r in recs]}


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shards"))
    return write_shards(root, "test", make_records(23)), make_records(23)


def test_load_gt_round_trip(shard_dir):
    root, recs = shard_dir
    assert len(open_split(f"{root}/test", check_files=False).tars) == 5
    gt = load_gt(f"{root}/test", progress=False)
    ref = gt_arrays(recs)
    np.testing.assert_array_equal(gt["annot_id"], ref["annot_id"])
    np.testing.assert_allclose(gt["joint_cam"], ref["joint_cam"])
    np.testing.assert_array_equal(gt["joint_valid"], ref["joint_valid"])
    assert [HAND_TYPES[c] for c in gt["hand_code"]] == ref["hand_type"]
    bbox, depth = crop_source(gt, rootnet=True)
    byid = {r["annot_id"]: r for r in recs}
    np.testing.assert_allclose(bbox[3], byid[int(gt["annot_id"][3])]["rootnet_bbox"])
    np.testing.assert_allclose(depth[3], byid[int(gt["annot_id"][3])]["rootnet_abs_depth"])
    imgs = load_images(gt, [0, 22])
    first = simplejpeg.decode_jpeg(imgs[22])
    assert first.shape == (H_IMG, W_IMG, 3)
    assert abs(int(first[5, 5, 0]) - (40 + int(gt["annot_id"][22]) % 200)) <= 2


def test_missing_split_and_rootnet_errors(tmp_path, shard_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_gt(str(tmp_path / "val"), progress=False)
    root = write_shards(str(tmp_path), "val", make_records(4, rootnet=False))
    gt = load_gt(f"{root}/val", progress=False)
    with pytest.raises(ValueError, match="no RootNet output"):
        crop_source(gt, rootnet=True)


def test_duplicate_annot_in_shards(tmp_path):
    recs = make_records(3)
    recs[2]["annot_id"] = recs[0]["annot_id"]
    for per_shard in (1, 3):  # across shards, and the same key twice in one tar
        root = write_shards(str(tmp_path / str(per_shard)), "test", recs, per_shard=per_shard)
        with pytest.raises(ValueError, match="more than once"):
            load_gt(f"{root}/test", progress=False)


def test_align_errors():
    gt_ids = np.array([3, 5, 9])
    np.testing.assert_array_equal(align(gt_ids, np.array([9, 3, 5])), [1, 2, 0])
    with pytest.raises(ValueError, match="duplicated annot_id.*5"):
        align(gt_ids, np.array([9, 3, 5, 5]))
    with pytest.raises(ValueError, match="not in the split.*11"):
        align(gt_ids, np.array([9, 3, 5, 11]))
    with pytest.raises(ValueError, match="no prediction.*5"):
        align(gt_ids, np.array([9, 3]))
    with pytest.raises(ValueError, match="integers"):
        align(gt_ids, np.array([9.0, 3.0, 5.0]))


def test_incomplete_conversion_is_an_error(tmp_path):
    root = write_shards(str(tmp_path), "test", make_records(2))
    (tmp_path / "test" / "manifest.json").write_text('{"complete": false}')
    with pytest.raises(ValueError, match="did not finish"):
        load_gt(f"{root}/test", progress=False)
