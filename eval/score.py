"""Scoring a predictions file (either accepted form) against the ground truth of a split.

Form (a), InterNet's output space, one row per annotation: annot_id (N,), joint_coord (N, 42, 3)
heatmap bins (x, y, z), rel_root_depth (N,) bins, hand_type (N, 2) probabilities; optional
input_size (W, H or one int) and heatmap_size (D, H, W or one int), default 256 and 64, and
root_bins (the relative root depth's bins, default the heatmap depth D), depth_range_mm and
root_depth_range_mm (default 400, the original's): eval.convert.GEOMETRY_KEYS, which eval.predict
writes from the model's config.
Optional inv_trans (N, 2, 3): the patch -> image affine the predictions were made with (the
checkpoint path stores the pipeline's); when present it must match the crop used here (GT bbox, or
RootNet's with --rootnet) within INV_TRANS_TOL pixels.
Form (b), camera space: annot_id, joint_cam (N, 42, 3) mm, hand_type (N, 2).
"""
import zipfile

import numpy as np

from shards.geometry import DEPTH_RANGE_MM, cam2pixel
from shards.skeleton import NUM_JOINTS

from . import convert
from .gt import align, crop_source
from .metrics import compute_metrics, sample_mpjpe

DEFAULT_INPUT_SIZE = 256
DEFAULT_HEATMAP_SIZE = 64
BIN_MARGIN = 10  # form (a) bins may lie this many heatmap sizes outside the heatmap (soft-argmax heads)
INV_TRANS_TOL = 0.05  # pixels (the pipeline's float32 affine agrees to ~1e-4)


def _pick_size(npz_value, flag_value, default, n, name, source):
    a = None if npz_value is None else convert.as_hw(npz_value, n, name)
    b = None if flag_value is None else convert.as_hw(flag_value, n, name)
    if a is not None and b is not None and a != b:
        raise ValueError(f"{source}: {name} is {a} in the file but {b} on the command line")
    return a or b or convert.as_hw(default, n, name)


def load_predictions(path: str, input_size=None, heatmap_size=None) -> dict:
    """Read and validate a predictions .npz -> dict with 'form' ('a' or 'b') and its arrays."""
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable predictions .npz ({type(e).__name__}: {e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single array ({type(z).__name__}), not a predictions .npz of named fields")
    try:
        with z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: a field does not read ({type(e).__name__}: {e})") from None
    return check_predictions(data, path, input_size, heatmap_size)


def check_predictions(data: dict, source: str = "predictions", input_size=None, heatmap_size=None) -> dict:
    has_a, has_b = "joint_coord" in data, "joint_cam" in data
    if has_a == has_b:
        raise ValueError(f"{source}: need exactly one of 'joint_coord' (form a, heatmap bins) or 'joint_cam' "
                         f"(form b, camera mm); found keys {sorted(data)}")
    need = ["annot_id", "hand_type"] + (["joint_coord", "rel_root_depth"] if has_a else ["joint_cam"])
    lacking = [k for k in need if k not in data]
    if lacking:
        raise ValueError(f"{source}: missing field(s) {lacking}")
    n = np.asarray(data["annot_id"]).reshape(-1).shape[0]
    joints = np.asarray(data["joint_coord" if has_a else "joint_cam"], dtype=np.float64)
    shapes = {"joint_coord" if has_a else "joint_cam": (joints, (n, NUM_JOINTS, 3)),
              "hand_type": (np.asarray(data["hand_type"], dtype=np.float64), (n, 2))}
    if has_a and "inv_trans" in data:
        shapes["inv_trans"] = (np.asarray(data["inv_trans"], dtype=np.float64), (n, 2, 3))
    if has_a:
        shapes["rel_root_depth"] = (np.asarray(data["rel_root_depth"], dtype=np.float64).reshape(-1), (n,))
    for k, (a, shape) in shapes.items():
        if a.shape != shape:
            raise ValueError(f"{source}: field {k!r} has shape {a.shape}, expected {shape} for {n} annot_id")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{source}: field {k!r} has non-finite values at rows "
                             f"{np.flatnonzero(~np.isfinite(a).reshape(n, -1).all(1))[:5].tolist()}")
    ht = shapes["hand_type"][0]
    _check_range(ht, 0.0, 1.0, "hand_type", "probabilities in [0, 1]", source)
    out = {"form": "a" if has_a else "b", "annot_id": np.asarray(data["annot_id"]).reshape(-1)}
    out.update({k: a for k, (a, _) in shapes.items()})
    if has_a:
        out["input_size"] = _pick_size(data.get("input_size"), input_size, DEFAULT_INPUT_SIZE, 2, "input_size", source)
        out["heatmap_size"] = _pick_size(data.get("heatmap_size"), heatmap_size, DEFAULT_HEATMAP_SIZE, 3,
                                         "heatmap_size", source)
        rb = data.get("root_bins")
        out["root_bins"] = out["heatmap_size"][0] if rb is None else convert.as_hw(rb, 1, "root_bins")[0]
        for k in ("depth_range_mm", "root_depth_range_mm"):
            v = np.asarray(data.get(k, DEPTH_RANGE_MM), dtype=np.float64).reshape(-1)
            if v.size != 1 or not np.isfinite(v[0]) or v[0] <= 0:
                raise ValueError(f"{source}: field {k!r} must be one positive number (mm), got {v.tolist()}")
            out[k] = float(v[0])
        # Heatmap bins far outside the heatmap are no heatmap prediction (and 1e18 would reach the
        # metrics as a perfect score in float32 arithmetic): refuse them, naming rows.
        d, h, w = out["heatmap_size"]
        for axis, size in enumerate((w, h, d)):
            _check_range(out["joint_coord"][..., axis], -BIN_MARGIN * size, (1 + BIN_MARGIN) * size, "joint_coord",
                         f"{'xyz'[axis]} bins within {BIN_MARGIN} heatmap sizes of the {size}-bin heatmap", source)
        rb = out["root_bins"]
        _check_range(out["rel_root_depth"], -BIN_MARGIN * rb, (1 + BIN_MARGIN) * rb, "rel_root_depth",
                     f"bins within {BIN_MARGIN} ranges of the {rb} root bins", source)
    return out


def _check_range(a, lo, hi, field, what, source):
    bad = (a < lo) | (a > hi)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(a), -1).any(1))
        raise ValueError(f"{source}: field {field!r} must hold {what}; {rows.size} rows do not, e.g. rows "
                         f"{rows[:5].tolist()} (value {a[rows[0]].reshape(-1)[bad[rows[0]].reshape(-1)][0]:.6g})")


def score(pred: dict, gt: dict, rootnet: bool = False, source: str = "predictions") -> dict:
    """-> dict(metrics, joint_cam (N, 42, 3), sample_error (N,), rows (N,) the prediction row of each GT
    sample); arrays in the GT's (annot_id) order."""
    idx = align(gt["annot_id"], pred["annot_id"], source)
    hand_type = pred["hand_type"][idx]
    if pred["form"] == "a":
        bbox, abs_depth = crop_source(gt, rootnet)
        conv = convert.output_to_camera(pred["joint_coord"][idx], pred["rel_root_depth"][idx], bbox, abs_depth,
                                        gt["focal"], gt["princpt"], {k: pred[k] for k in convert.GEOMETRY_KEYS})
        cam, root_vec = conv["joint_cam"], conv["root_vec"]
        if "inv_trans" in pred:
            check_crop(pred["inv_trans"][idx], conv["inv_trans"], pred["input_size"], gt["annot_id"], rootnet,
                       source)
    else:
        cam, root_vec = pred["joint_cam"][idx], None
    m, err = compute_metrics(cam, gt["joint_cam"], gt["joint_valid"], gt["hand_code"], gt["hand_type_valid"],
                             hand_type, root_vec, return_errors=True)
    return {"metrics": m, "joint_cam": cam, "rows": idx, "sample_error": sample_mpjpe(err, gt["joint_valid"])}


def check_crop(theirs, ours, input_size, annot_id, rootnet, source):
    """The crop the predictions were made with must be the one we convert back with: compare where
    both affines send the patch corners, in image pixels."""
    W, H = input_size
    corners = np.array([[0.0, 0.0, 1.0], [W, 0.0, 1.0], [0.0, H, 1.0], [W, H, 1.0]])
    diff = np.abs(np.einsum("nij,kj->nki", theirs - ours, corners)).max(axis=(1, 2))
    bad = np.flatnonzero(diff > INV_TRANS_TOL)
    if bad.size:
        raise ValueError(f"{source}: the stored inv_trans of {bad.size} samples differs from the "
                         f"{'RootNet' if rootnet else 'GT'} crop by up to {diff.max():.2f} px (e.g. annot_id "
                         f"{annot_id[bad[:5]].tolist()}); were the predictions made with"
                         f"{'out' if rootnet else ''} --rootnet?")


def image_points(pred: dict, gt: dict, result: dict, rows, rootnet: bool = False) -> np.ndarray:
    """Predicted joints in image pixels (len(rows), 42, 2) for GT rows `rows` (for drawing): form (a)
    through the crop, form (b) projected with the GT intrinsics."""
    rows = np.asarray(rows, dtype=np.int64)
    if pred["form"] == "a":
        bbox, _ = crop_source(gt, rootnet)
        inv = convert.crop_inv_trans(bbox[rows], pred["input_size"])
        return convert.bins_to_image(pred["joint_coord"][result["rows"][rows]], inv, pred["input_size"],
                                     pred["heatmap_size"], pred["depth_range_mm"])[..., :2]
    return cam2pixel(result["joint_cam"][rows], gt["focal"][rows, None], gt["princpt"][rows, None])[..., :2]
