"""InterNet output space -> image pixels -> camera space (docs/conventions.md §7), vectorised over samples.

The original's evaluate() does this per sample and per joint; here every step is one array operation:
  x, y bins -> patch pixels (x input / heatmap) -> image pixels through the inverse affine of the
  unaugmented crop (the processed GT bbox, or RootNet's bbox), z bins -> mm relative to the hand's root,
  + the root's absolute depth (GT or RootNet), then back-projection with the camera intrinsics.
"""
import numpy as np

from shards.geometry import DEPTH_RANGE_MM, patch_affine, pixel2cam
from shards.skeleton import NUM_JOINTS, ROOT

CHUNK = 2048  # samples per step of the large (N, 42, 3) computations
# The output space of form (a) predictions, carried in every predictions file (eval.predict writes
# them from the loader's model config; eval.score.check_predictions reads them, with defaults).
GEOMETRY_KEYS = ("input_size", "heatmap_size", "root_bins", "depth_range_mm", "root_depth_range_mm")


def geometry_arrays(config) -> dict:
    """A model config's output space (model.ModelConfig) as the arrays a predictions file carries."""
    return {"input_size": np.array([config.input_size, config.input_size]),
            "heatmap_size": np.array(config.heatmap_size), "root_bins": np.array(config.root_bins),
            "depth_range_mm": np.array(float(config.depth_range_mm)),
            "root_depth_range_mm": np.array(float(config.root_depth_range_mm))}


def as_hw(size, n: int, name: str) -> tuple:
    """An int or a sequence -> a tuple of `n` ints (input size (W, H); heatmap size (D, H, W))."""
    s = np.atleast_1d(np.asarray(size)).astype(np.int64).reshape(-1)
    if s.size == 1:
        s = np.repeat(s, n)
    if s.size != n or np.any(s <= 0):
        raise ValueError(f"{name} must be a positive int or {n} positive ints, got {size!r}")
    return tuple(int(v) for v in s)


def crop_inv_trans(bbox, input_size=256) -> np.ndarray:
    """(N, 4) processed bbox [x, y, w, h] -> (N, 2, 3) patch pixels -> image pixels of the unaugmented
    crop (scale 1, no rotation, no shift, no flip: the original's test-time `augmentation`)."""
    b = np.asarray(bbox, dtype=np.float64)
    if b.shape[-1] != 4:
        raise ValueError(f"bbox must have shape (N, 4), got {b.shape}")
    W, H = as_hw(input_size, 2, "input_size")
    center = b[..., :2] + 0.5 * b[..., 2:4]
    ones = np.ones(b.shape[:-1])
    return patch_affine(center, b[..., 2:4], ones, 0.0 * ones, (W, H), inverse=True)


def bins_to_image(joint_coord, inv_trans, input_size=256, heatmap_size=64,
                  depth_range_mm: float = DEPTH_RANGE_MM) -> np.ndarray:
    """(N, 42, 3) heatmap bins -> (N, 42, 3) [u, v] image pixels and z in mm relative to the hand root.
    x, y: bins -> patch pixels (x input / heatmap size) -> image through the inverse crop affine, with
    the scale folded into the affine's linear part; z: (z / D * 2 - 1) * range / 2, folded to
    z * range / D - range / 2 (range 400 mm: the original's)."""
    jc = np.asarray(joint_coord, dtype=np.float64)  # NB: float32 * a Python float stays float32 in numpy 2
    if jc.ndim != 3 or jc.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"joint_coord must have shape (N, {NUM_JOINTS}, 3), got {jc.shape}")
    W, H = as_hw(input_size, 2, "input_size")
    D, Hh, Wh = as_hw(heatmap_size, 3, "heatmap_size")
    a = np.asarray(inv_trans, dtype=np.float64)
    lin = a[:, :, :2] * np.array([W / Wh, H / Hh])  # (N, 2, 2): bins -> image pixels
    x, y = jc[..., 0], jc[..., 1]
    out = np.empty(jc.shape)
    for k in (0, 1):
        out[..., k] = lin[:, None, k, 0] * x + lin[:, None, k, 1] * y + a[:, None, k, 2]
    out[..., 2] = jc[..., 2] * (depth_range_mm / D) - depth_range_mm / 2.0
    return out


def rel_root_to_mm(rel_root_depth, root_bins=64, root_depth_range_mm: float = DEPTH_RANGE_MM) -> np.ndarray:
    """(N,) relative root depth in bins -> mm (left root minus right root), docs/conventions.md §7.4."""
    d = np.asarray(rel_root_depth, dtype=np.float64).reshape(-1)
    return (d / float(root_bins) * 2.0 - 1.0) * (root_depth_range_mm / 2.0)


def image_to_camera(pred_img, abs_depth, focal, princpt, out=None) -> np.ndarray:
    """(N, 42, 3) [u, v, z relative to the hand root] + (N, 2) root depth [right, left] -> camera mm
    (pixel2cam of docs/conventions.md §2, written per component to avoid temporaries)."""
    p = np.asarray(pred_img, dtype=np.float64)
    d = np.asarray(abs_depth, dtype=np.float64)
    f = np.asarray(focal, dtype=np.float64)[:, None]
    c = np.asarray(princpt, dtype=np.float64)[:, None]
    out = np.empty(p.shape) if out is None else out
    out[:, :21, 2] = p[:, :21, 2] + d[:, 0:1]  # right joints + the right root's depth
    out[:, 21:, 2] = p[:, 21:, 2] + d[:, 1:2]  # left joints + the left root's depth
    z = out[..., 2]
    out[..., 0] = (p[..., 0] - c[..., 0]) / f[..., 0] * z
    out[..., 1] = (p[..., 1] - c[..., 1]) / f[..., 1] * z
    return out


def root_vector(pred_img, rel_root_mm, right_abs_depth, focal, princpt) -> np.ndarray:
    """The predicted left-root minus right-root vector in camera mm, as the original's MRRPE builds it:
    both roots at the RIGHT root's absolute depth (+ their own predicted relative z), the left one
    further shifted by the predicted relative root depth. pred_img (N, 42, 3) or just the roots
    (N, 2, 3) [right, left], in [u, v, z_rel mm]. -> (N, 3)."""
    p = np.asarray(pred_img, dtype=np.float64)
    if p.shape[1] == NUM_JOINTS:
        p = p[:, [ROOT["right"], ROOT["left"]]]
    r = np.asarray(right_abs_depth, dtype=np.float64).reshape(-1)
    left, right = p[:, 1].copy(), p[:, 0].copy()
    left[:, 2] += r + np.asarray(rel_root_mm, dtype=np.float64).reshape(-1)
    right[:, 2] += r
    f, c = np.asarray(focal), np.asarray(princpt)
    return pixel2cam(left, f, c) - pixel2cam(right, f, c)


def output_to_camera(joint_coord, rel_root_depth, bbox, abs_depth, focal, princpt, geometry: dict,
                     keep_image=False) -> dict:
    """Form (a) predictions -> dict(joint_cam (N, 42, 3) mm, root_vec (N, 3) mm for MRRPE, inv_trans
    (N, 2, 3), and with keep_image joint_img (N, 42, 3) [u, v, z_rel mm]). `bbox` and `abs_depth` are
    the GT ones or RootNet's (the original's trans_test). geometry: the output space the predictions
    are in, as a predictions file carries it (GEOMETRY_KEYS; eval.score.check_predictions fills them)."""
    input_size, heatmap_size = geometry["input_size"], geometry["heatmap_size"]
    jc = np.asarray(joint_coord)
    n = jc.shape[0]
    abs_depth, focal, princpt = (np.asarray(a, dtype=np.float64) for a in (abs_depth, focal, princpt))
    for name, a, shape in (("bbox", np.asarray(bbox), (n, 4)), ("abs_depth", abs_depth, (n, 2)),
                           ("focal", focal, (n, 2)), ("princpt", princpt, (n, 2))):
        if a.shape != shape:
            raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    inv = crop_inv_trans(bbox, input_size)
    cam = np.empty((n, NUM_JOINTS, 3))
    img = np.empty((n, NUM_JOINTS, 3)) if keep_image else None
    roots = np.empty((n, 2, 3))  # the two roots in image space, for MRRPE
    for s in range(0, n, CHUNK):  # chunks keep the temporaries in cache
        c = slice(s, s + CHUNK)
        im = bins_to_image(jc[c], inv[c], input_size, heatmap_size, geometry["depth_range_mm"])
        image_to_camera(im, abs_depth[c], focal[c], princpt[c], out=cam[c])
        roots[c] = im[:, [ROOT["right"], ROOT["left"]]]
        if keep_image:
            img[c] = im
    rel = rel_root_to_mm(rel_root_depth, geometry["root_bins"], geometry["root_depth_range_mm"])
    vec = root_vector(roots, rel, abs_depth[:, 0], focal, princpt)
    out = {"joint_cam": cam, "root_vec": vec, "inv_trans": inv}
    if keep_image:
        out["joint_img"] = img
    return out
