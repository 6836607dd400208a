"""Camera and crop geometry of docs/conventions.md §2-§3, in plain numpy (vectorised over leading axes).

These are the conventions every stage shares: the readers use them to build records, the
pipeline's exactness test and the evaluation's back-projection use the same functions.
"""
import numpy as np

BBOX_SCALE = 1.25  # docs/conventions.md §3.1
# The depth range of the output space around each hand's root, and of the relative root depth (the
# original's bbox_3d_size and bbox_3d_size_root): bins <-> mm. model.ModelConfig's defaults.
DEPTH_RANGE_MM = 400.0


def world2cam(x_world, camrot, campos):
    """X_cam = R (X_world - campos). x_world (..., 3) mm, camrot (3, 3), campos (3,)."""
    x = np.asarray(x_world, dtype=np.float64) - np.asarray(campos, dtype=np.float64)
    return x @ np.asarray(camrot, dtype=np.float64).T


def cam2pixel(x_cam, focal, princpt):
    """(..., 3) camera mm -> (..., 3) [u, v, Z]: u = X/Z fx + cx, v = Y/Z fy + cy, Z kept."""
    x = np.asarray(x_cam, dtype=np.float64)
    f = np.asarray(focal, dtype=np.float64)
    c = np.asarray(princpt, dtype=np.float64)
    z = x[..., 2]
    u = x[..., 0] / z * f[..., 0] + c[..., 0]
    v = x[..., 1] / z * f[..., 1] + c[..., 1]
    return np.stack([u, v, z], axis=-1)


def pixel2cam(x_img, focal, princpt):
    """Inverse of cam2pixel: (..., 3) [u, v, Z] -> camera mm."""
    x = np.asarray(x_img, dtype=np.float64)
    f = np.asarray(focal, dtype=np.float64)
    c = np.asarray(princpt, dtype=np.float64)
    z = x[..., 2]
    X = (x[..., 0] - c[..., 0]) / f[..., 0] * z
    Y = (x[..., 1] - c[..., 1]) / f[..., 1] * z
    return np.stack([X, Y, z], axis=-1)


def process_bbox(bbox, aspect_ratio: float = 1.0, scale: float = BBOX_SCALE):
    """docs/conventions.md §3.1: grow the shorter side to `aspect_ratio` (w/h), then scale both by `scale` about
    the centre. bbox (..., 4) [x, y, w, h] -> same shape, float32."""
    b = np.asarray(bbox, dtype=np.float64)
    w, h = b[..., 2], b[..., 3]
    cx, cy = b[..., 0] + w / 2.0, b[..., 1] + h / 2.0
    wide = w > aspect_ratio * h
    h2 = np.where(wide, w / aspect_ratio, h)
    w2 = np.where(w < aspect_ratio * h, h * aspect_ratio, w)
    w2, h2 = w2 * scale, h2 * scale
    return np.stack([cx - w2 / 2.0, cy - h2 / 2.0, w2, h2], axis=-1).astype(np.float32)


def patch_affine(center, size, scale, rot_deg, out_size, inverse=False):
    """The 2x3 affine of docs/conventions.md §3.3 (the original's gen_trans_from_patch_cv), vectorised.

    center (..., 2) bbox centre in image pixels (already shifted / flipped), size (..., 2) bbox
    [w, h], scale (...,), rot_deg (...,), out_size (W, H) of the patch. Maps image -> patch, or
    patch -> image when `inverse`. Pixel centres at integer coordinates (OpenCV convention).
    Returns (..., 2, 3) float64.
    """
    c = np.asarray(center, dtype=np.float64)
    sz = np.asarray(size, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)[..., None]
    r = np.deg2rad(np.asarray(rot_deg, dtype=np.float64))
    cos, sin = np.cos(r), np.sin(r)
    half = sz * s * 0.5  # (..., 2) source half width / half height
    # Source right direction (half_w, 0) and down direction (0, half_h), rotated by r.
    right = np.stack([half[..., 0] * cos, half[..., 0] * sin], axis=-1)
    down = np.stack([-half[..., 1] * sin, half[..., 1] * cos], axis=-1)
    W, H = float(out_size[0]), float(out_size[1])
    # Linear part A maps the basis (right, down) onto (W/2, 0) and (0, H/2).
    src = np.stack([right, down], axis=-1)  # (..., 2, 2) columns = directions
    dst = np.diag([W / 2.0, H / 2.0])
    dst_c = np.array([W / 2.0, H / 2.0])
    if inverse:
        A = src @ np.linalg.inv(dst)
        t = c - A @ dst_c if A.ndim == 2 else c - np.einsum("...ij,j->...i", A, dst_c)
    else:
        A = dst @ np.linalg.inv(src)
        t = dst_c - np.einsum("...ij,...j->...i", A, c)
    return np.concatenate([A, t[..., None]], axis=-1)


def apply_affine(points, affine):
    """points (..., N, 2), affine (..., 2, 3) -> (..., N, 2)."""
    p = np.asarray(points, dtype=np.float64)
    a = np.asarray(affine, dtype=np.float64)
    return np.einsum("...ij,...nj->...ni", a[..., :2], p) + a[..., None, :, 2]
