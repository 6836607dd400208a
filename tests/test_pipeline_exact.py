"""The pipeline against an independent reference of docs/conventions.md §3 (numpy, the original's order of
operations: mirror the image, warp with OpenCV's pixel-centre convention, transform the joints).
Both warps are checked on the CPU: 'host' (the CPU path, OpenCV in the loader) and 'dali' (the GPU
path's in-graph warp, run on the CPU here).

Run: .venv/bin/python -m pytest -q tests/test_pipeline_exact.py
"""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline import build_loader
from pipeline.graph import AUG_FIELDS, ROI_MARGIN, aug_vector, build_pipeline
from shards import geometry
from shards.geometry import DEPTH_RANGE_MM
from shards.index import open_split
from shards.skeleton import FLIP_PERM
from tests.test_pipeline_fixtures import _texture, write_split

N = 10  # landscape + portrait, right / left / interacting, hands at the frame edge (see fixtures)
SIZE = 128  # a smaller patch keeps the test fast; the maths does not depend on it
HM = (32, 16, 16)  # depth, height, width: distinct so a swapped axis would show
ROOT_BINS = 48
# The loader takes the model's geometry as one object (model.ModelConfig ties H = W = input / 4; a
# duck-typed one lets the test use distinct sizes).
GEOMETRY = SimpleNamespace(input_size=SIZE, heatmap_size=HM, root_bins=ROOT_BINS, depth_range_mm=DEPTH_RANGE_MM,
                           root_depth_range_mm=DEPTH_RANGE_MM)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    split_dir, records, images = write_split(tmp_path_factory.mktemp("shards"), "val", N, per_shard=4, seed=3)
    return split_dir, {r["annot_id"]: (r, img) for r, img in zip(records, images)}


def bilinear_warp(img, inv, size, clamp=False):
    """Plain bilinear warp, OpenCV convention: pixel centres at integers, zero outside the image
    (clamp=True: the nearest edge pixel instead, only to prove the border matters).
    inv (2, 3) maps patch pixels to image pixels."""
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
    sy = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    h, w = img.shape[:2]

    def tap(yy, xx):
        ok = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h) | clamp
        return np.where(ok[..., None], img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)], 0.0)

    return ((1 - fy) * ((1 - fx) * tap(y0, x0) + fx * tap(y0, x0 + 1))
            + fy * ((1 - fx) * tap(y0 + 1, x0) + fx * tap(y0 + 1, x0 + 1)))


def reference(rec, img, aug, use_rootnet=False, clamp=False):
    """docs/conventions.md §3.1-§3.7 for one sample, step by step as the original's augmentation does it."""
    tx, ty, scale, rot, flip = aug[:5]
    color = np.asarray(aug[5:8])
    x, y, w, h = (rec["rootnet_bbox"] if use_rootnet else rec["bbox"]).astype(np.float64)
    x, y = x + w * tx, y + h * ty
    img = img.astype(np.float32)
    width = img.shape[1]
    cx, cy = x + w / 2, y + h / 2
    joints = np.concatenate([rec["joint_img"], rec["joint_cam"][:, 2:]], 1).astype(np.float64)
    valid = rec["joint_valid"].astype(np.float64).copy()
    hand_type = rec["hand_type_vec"].astype(np.float64).copy()
    if flip:
        img = img[:, ::-1]
        cx = width - cx - 1
        joints[:, 0] = width - joints[:, 0] - 1
        joints, valid, hand_type = joints[FLIP_PERM], valid[FLIP_PERM], hand_type[::-1]
    trans = geometry.patch_affine((cx, cy), (w, h), scale, rot, (SIZE, SIZE))
    inv = geometry.patch_affine((cx, cy), (w, h), scale, rot, (SIZE, SIZE), inverse=True)
    patch = np.clip(bilinear_warp(img, inv, SIZE, clamp) * color, 0, 255)
    joints[:, :2] = geometry.apply_affine(joints[:, :2], trans)
    inside = (joints[:, 0] >= 0) & (joints[:, 0] < SIZE) & (joints[:, 1] >= 0) & (joints[:, 1] < SIZE)
    valid = valid * inside
    rel_root = joints[41, 2] - joints[20, 2]
    root_valid = valid[20] * valid[41] if hand_type[0] * hand_type[1] == 1 else 0.0
    depth, hm_h, hm_w = HM
    out = joints.copy()
    out[:, 0] = joints[:, 0] / SIZE * hm_w
    out[:, 1] = joints[:, 1] / SIZE * hm_h
    out[:21, 2] = joints[:21, 2] - joints[20, 2]
    out[21:, 2] = joints[21:, 2] - joints[41, 2]
    out[:, 2] = (out[:, 2] / 200 + 1) / 2 * depth
    valid = valid * ((out[:, 2] >= 0) & (out[:, 2] < depth))
    rel_root = (rel_root / 200 + 1) / 2 * ROOT_BINS
    root_valid = root_valid * (0 <= rel_root < ROOT_BINS)
    # Patch -> image pixels. The original's inv_trans ends in the mirrored image when flipped; ours
    # goes back to the stored image (they are equal in evaluation, which never flips).
    inv_img = inv.copy()
    if flip:
        inv_img[0] = -inv[0]
        inv_img[0, 2] += width - 1
    return {"images": patch / 255.0, "joint_coord": out, "joint_valid": valid, "rel_root_depth": rel_root,
            "root_valid": root_valid, "hand_type": hand_type, "hand_type_valid": float(rec["hand_type_valid"]),
            "inv_trans": inv_img}


def run_loader(split_dir, **kw):
    kw.setdefault("train", False)
    loader = build_loader(split_dir, GEOMETRY, batch_size=4, device=kw.pop("device", torch.device("cpu")),
                          num_threads=1, **kw)
    batches = list(loader)
    return {k: torch.cat([b[k] for b in batches]).cpu().numpy() for k in batches[0]}


def compare(out, samples, use_rootnet=False, max_mad=1.0):
    """Every sample of `out` against the reference with the augmentation the pipeline reports."""
    mads = []
    for i, aid in enumerate(out["annot_id"]):
        rec, img = samples[int(aid)]
        ref = reference(rec, img, out["aug"][i], use_rootnet)
        got_img = out["images"][i].transpose(1, 2, 0)
        mads.append(np.abs(got_img - ref["images"]).mean() * 255)
        np.testing.assert_allclose(out["joint_coord"][i], ref["joint_coord"], atol=1e-3, err_msg=f"annot {aid}")
        np.testing.assert_array_equal(out["joint_valid"][i], ref["joint_valid"], err_msg=f"annot {aid}")
        np.testing.assert_allclose(out["rel_root_depth"][i], ref["rel_root_depth"], atol=1e-3)
        assert out["root_valid"][i] == ref["root_valid"], aid
        np.testing.assert_array_equal(out["hand_type"][i], ref["hand_type"])
        assert out["hand_type_valid"][i] == ref["hand_type_valid"]
        if "inv_trans" in out:
            np.testing.assert_allclose(out["inv_trans"][i], ref["inv_trans"], atol=2e-3, rtol=1e-5)
    assert max(mads) < max_mad, f"patch mean absolute difference {max(mads):.3f} grey levels"
    return max(mads)


CASES = {
    "identity": aug_vector(),
    "flip_rot_shift": aug_vector(trans=(0.1, -0.05), scale=1.2, rot=30.0, flip=True, color=(0.9, 1.1, 1.0)),
    "rot_small_scale_clip": aug_vector(trans=(-0.15, 0.15), scale=0.8, rot=-70.0, color=(1.2, 0.8, 1.15)),
    "flip_only": aug_vector(flip=True),
    "big_rot_flip": aug_vector(trans=(0.15, 0.1), scale=0.75, rot=90.0, flip=True, color=(0.8, 1.2, 0.85)),
}


WARPS = ("host", "dali")


@pytest.mark.parametrize("warp", WARPS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_forced_augmentation_matches_reference(data, case, warp):
    split_dir, samples = data
    out = run_loader(split_dir, force_aug=CASES[case], warp=warp)
    assert len(out["annot_id"]) == N
    np.testing.assert_allclose(out["aug"], np.tile(CASES[case], (N, 1)), atol=1e-6)
    compare(out, samples)


def test_cases_cover_what_spec_3_asks(data):
    """The fixtures and cases above exercise every branch: flips, rotations, portrait and landscape
    frames, one- and two-hand samples, joints that leave the patch or the depth range."""
    split_dir, samples = data
    recs = [r for r, _ in samples.values()]
    assert {r["width"] > r["height"] for r in recs} == {True, False}
    assert {r["hand_type"] for r in recs} == {"right", "left", "interacting"}
    assert any(c[4] for c in CASES.values()) and any(c[3] for c in CASES.values())
    out = run_loader(split_dir, force_aug=CASES["rot_small_scale_clip"])
    stored = np.stack([samples[int(a)][0]["joint_valid"] for a in out["annot_id"]])
    xy = out["joint_coord"][..., :2]
    outside = (xy < 0).any(-1) | (xy[..., 0] >= HM[2]) | (xy[..., 1] >= HM[1])
    assert (outside & (stored > 0)).sum() > 5 and not out["joint_valid"][outside].any()  # left the patch
    z = out["joint_coord"][..., 2]
    assert ((z >= HM[0]) & (stored > 0)).any() and not out["joint_valid"][z >= HM[0]].any()  # beyond 200 mm
    gt = run_loader(split_dir)
    assert gt["root_valid"].sum() >= 2 and (gt["root_valid"] == 0).sum() >= 2


def test_rootnet_bbox_in_evaluation(data):
    split_dir, samples = data
    out = run_loader(split_dir, use_rootnet=True)
    compare(out, samples, use_rootnet=True)
    gt = run_loader(split_dir)
    assert np.abs(out["inv_trans"] - gt["inv_trans"]).max() > 1.0  # really another bbox
    with pytest.raises(ValueError, match="evaluation only"):
        build_loader(split_dir, GEOMETRY, batch_size=2, train=True, device="cpu", use_rootnet=True)


def test_half_pixel_compensation_is_needed(data):
    """Without the half-pixel conjugation DALI's warp is off by half a pixel: labels still agree
    (they never see DALI's convention) but the patch no longer matches the OpenCV-style reference."""
    split_dir, samples = data
    out = run_loader(split_dir, force_aug=CASES["flip_rot_shift"], half_pixel=False, warp="dali")
    with pytest.raises(AssertionError, match="mean absolute difference"):
        compare(out, samples)


@pytest.mark.parametrize("warp", WARPS)
def test_random_augmentation_matches_reference(data, warp):
    """Training mode: parameters drawn in DALI come back with the batch and reproduce it exactly."""
    split_dir, samples = data
    out = run_loader(split_dir, train=True, seed=7, initial_fill=8, warp=warp)
    assert len(out["annot_id"]) == 8 and len(AUG_FIELDS) == out["aug"].shape[1]
    compare(out, samples)


def test_zero_border_is_needed(data, monkeypatch):
    """The cases reach beyond the frame: an edge-clamped border would differ from the zero border by
    more than the tolerance, and the host warp with a replicated border fails the comparison."""
    split_dir, samples = data
    worst = []
    for case in ("flip_rot_shift", "rot_small_scale_clip"):
        for rec, img in samples.values():
            a, b = reference(rec, img, CASES[case]), reference(rec, img, CASES[case], clamp=True)
            worst.append(np.abs(a["images"] - b["images"]).mean() * 255)
    assert sum(w > 2.0 for w in worst) >= 4, worst
    import cv2

    real = cv2.warpAffine
    monkeypatch.setattr(cv2, "warpAffine", lambda *a, **k: real(*a, **{**k, "borderMode": cv2.BORDER_REPLICATE}))
    out = run_loader(split_dir, force_aug=CASES["flip_rot_shift"])
    with pytest.raises(AssertionError, match="mean absolute difference"):
        compare(out, samples)


def test_roi_holds_every_sampled_pixel(data):
    """The decoded region contains both bilinear taps of every patch pixel inside the image (else
    image pixels would read as border) and is only the margin larger than needed."""
    split_dir, samples = data
    split = open_split(str(split_dir))
    tars, idxs = split.tars, split.idxs
    pipe = build_pipeline(tars, idxs, batch_size=N, train=True, device_id=None, num_threads=1, seed=5,
                          shuffle_seed=0, shard_id=0, num_shards=1, input_size=SIZE, initial_fill=8, warp="host")
    pipe.build()
    smaller = 0
    for _ in range(6):
        rois, _, inv_affine, _, ids, _, _, origin = pipe.run()
        for i in range(N):
            rec = samples[int(ids.at(i)[0])][0]
            inv = inv_affine.at(i).astype(np.float64)  # patch -> image
            corners = np.array([[0, 0], [SIZE - 1, 0], [0, SIZE - 1], [SIZE - 1, SIZE - 1]], np.float64)
            pts = geometry.apply_affine(corners, inv)
            lo = np.clip(np.floor(pts.min(0)), 0, [rec["width"] - 1, rec["height"] - 1])
            hi = np.clip(np.floor(pts.max(0)) + 2, lo + 1, [rec["width"], rec["height"]])  # exclusive
            h, w = rois.at(i).shape[:2]
            x0, y0 = origin.at(i)
            assert x0 <= lo[0] and y0 <= lo[1] and x0 + w >= hi[0] and y0 + h >= hi[1], (i, lo, hi, x0, y0, w, h)
            step = np.abs(inv[:, :2]).sum(1)  # image pixels per patch pixel (the far corners sit at S - 1)
            assert lo[0] - x0 <= ROI_MARGIN + 1 + step[0] and lo[1] - y0 <= ROI_MARGIN + 1 + step[1]
            assert x0 + w - hi[0] <= ROI_MARGIN + 1 + step[0] and y0 + h - hi[1] <= ROI_MARGIN + 1 + step[1]
            smaller += w * h < rec["width"] * rec["height"]
    assert smaller > 10  # ROI decoding really happens


def test_random_augmentation_distribution(data):
    split_dir, _ = data
    loader = build_loader(split_dir, SimpleNamespace(**{**vars(GEOMETRY), "input_size": 32}), batch_size=5,
                          train=True, device="cpu", num_threads=1, seed=11, initial_fill=8)
    aug = torch.cat([b["aug"] for _, b in zip(range(40), _forever(loader))]).numpy()  # 200 draws
    tx, scale, rot, flip, color = aug[:, :2], aug[:, 2], aug[:, 3], aug[:, 4], aug[:, 5:]
    assert np.abs(tx).max() <= 0.15 and np.abs(tx).max() > 0.12 and abs(tx.mean()) < 0.03
    assert scale.min() >= 0.75 and scale.max() <= 1.25 and (scale == 1.25).any()  # clipped normal
    assert np.abs(rot).max() <= 90.0 and 0.25 < (rot == 0).mean() < 0.55  # 40 % without rotation
    assert set(np.unique(flip)) == {0.0, 1.0} and 0.35 < flip.mean() < 0.65
    assert color.min() >= 0.8 and color.max() <= 1.2 and np.std(color[:, 0] - color[:, 1]) > 0.05


def _forever(loader):
    while True:
        yield from loader


def test_reference_warp_is_opencvs(data):
    """The plain warp above follows cv2.warpAffine (the original's call), up to OpenCV's 1/32-pixel
    interpolation tables. Skipped where opencv-python-headless is not installed (test-only tool)."""
    cv2 = pytest.importorskip("cv2")
    _, samples = data
    rec, img = next(iter(samples.values()))
    c = rec["bbox"][:2] + rec["bbox"][2:] / 2
    trans = geometry.patch_affine(c, rec["bbox"][2:], 1.1, 25.0, (SIZE, SIZE))
    inv = geometry.patch_affine(c, rec["bbox"][2:], 1.1, 25.0, (SIZE, SIZE), inverse=True)
    ours = bilinear_warp(img.astype(np.float32), inv, SIZE)
    ref = cv2.warpAffine(img.astype(np.float32), trans, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    assert np.abs(ours - ref).mean() < 0.2
    shifted = cv2.warpAffine(img.astype(np.float32), trans + [[0, 0, 0.5], [0, 0, 0.5]], (SIZE, SIZE))
    assert np.abs(ours - shifted).mean() > 2.0  # a half-pixel error would show


@pytest.mark.parametrize("subsampling", ["444", "420"])
def test_exif_orientation_is_ignored_as_the_original_does(tmp_path, subsampling):
    """The original reads with cv2.IMREAD_IGNORE_ORIENTATION: pixels as stored, which the annotations
    refer to. A decoder that applied an EXIF rotation would crop the wrong region."""
    split_dir, records, images = write_split(tmp_path, "val", 4, per_shard=4, seed=9, exif_orientation=6,
                                             subsampling=subsampling)
    samples = {r["annot_id"]: (r, img) for r, img in zip(records, images)}
    for warp in WARPS:
        compare(run_loader(split_dir, force_aug=CASES["flip_rot_shift"], warp=warp), samples)


@pytest.mark.parametrize("subsampling", ["444", "422", "420"])
def test_cpu_decode_is_bit_exact_with_the_originals_imread(subsampling):
    """DALI's CPU decoder (whole image and region, odd offsets) gives exactly cv2.imread's pixels,
    for every chroma subsampling (real camera JPEGs are mostly 4:2:0; the synthetic set is 4:4:4)."""
    cv2 = pytest.importorskip("cv2")
    import simplejpeg
    from nvidia.dali import fn, pipeline_def, types

    img = np.clip(_texture(np.random.default_rng(4), 334, 512), 0, 255).astype(np.uint8)
    jpg = simplejpeg.encode_jpeg(img, quality=90, colorsubsampling=subsampling)
    ref = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)[:, :, ::-1]

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def decode():
        data = fn.external_source(source=lambda: [np.frombuffer(jpg, np.uint8)], batch=True, dtype=types.UINT8)
        full = fn.decoders.image(data, device="cpu", output_type=types.RGB, adjust_orientation=False)
        roi = fn.decoders.image_slice(data, start=[37, 21], end=[301, 290], device="cpu", output_type=types.RGB,
                                      adjust_orientation=False)
        return full, roi

    pipe = decode()
    pipe.build()
    full, roi = (o.as_array()[0] for o in pipe.run())
    np.testing.assert_array_equal(full, ref)
    np.testing.assert_array_equal(roi, ref[21:290, 37:301])
