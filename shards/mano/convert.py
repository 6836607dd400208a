"""World-to-camera conversion of MANO parameters and the fitting error, vectorised over hands.

A camera maps world mm to camera mm by X_cam = R (X - campos) = R X + t with R = camrot,
t = -R campos (docs/conventions.md §2). MANO poses a hand as V = R_root (v - J0) + J0 + trans, where J0 is MANO's
own root joint (joint 0 of the shaped template; the finger pose does not move it). So
    (a) transform the mesh:       V_cam = R V + t
    (b) transform the parameters: root_cam = R R_root,
                                  trans_cam = R (trans + J0) - J0 + t       (metres)
give the same mesh exactly. The original release's script pivots on the InterHand wrist regressed
from the rotated mesh instead of J0 (trans' = R trans - w + R w + t); its mesh is off by
(R - I)(w - J0), a few mm (convert_params_original, for measuring that).
"""
import numpy as np

from .model import axis_angle_to_matrix, matrix_to_axis_angle, root_joint


def camera_extrinsics(camrot, campos):
    """R (..., 3, 3) and t = -R campos (..., 3) in mm."""
    r = np.asarray(camrot, np.float64)
    return r, -np.einsum("...ij,...j->...i", r, np.asarray(campos, np.float64))


def points_to_camera(points_mm, camrot, campos):
    """(a): (N, P, 3) world mm -> camera mm, per hand camera (N, 3, 3), (N, 3)."""
    r, t = camera_extrinsics(camrot, campos)
    return np.einsum("nij,npj->npi", r, np.asarray(points_mm, np.float64)) + t[:, None]


def convert_params(model, pose, shape, trans, camrot, campos):
    """(b): MANO parameters in the world frame -> the camera frame, pivoting on MANO's root joint.
    pose (N, 48), shape (N, 10), trans (N, 3) m, camrot (N, 3, 3), campos (N, 3) mm -> (pose, trans)."""
    pose = np.array(pose, np.float64).reshape(-1, 48)
    r, t = camera_extrinsics(camrot, campos)
    j0 = root_joint(model, shape)
    root = r @ axis_angle_to_matrix(pose[:, :3])
    pose[:, :3] = matrix_to_axis_angle(root)
    trans_cam = np.einsum("nij,nj->ni", r, np.asarray(trans, np.float64) + j0) - j0 + t / 1000.0
    return pose, trans_cam


def convert_params_original(trans, camrot, campos, wrist_m):
    """The original script's translation: trans' = R trans - w + R w + t, where w (N, 3) m is the
    InterHand wrist regressed from the mesh of the converted pose (root already rotated) without
    translation. Returns trans' (N, 3) m."""
    r, t = camera_extrinsics(camrot, campos)
    rt = np.einsum("nij,nj->ni", r, np.asarray(trans, np.float64))
    rw = np.einsum("nij,nj->ni", r, np.asarray(wrist_m, np.float64))
    return rt - wrist_m + rw + t / 1000.0


def fitting_error(pred, gt, valid) -> np.ndarray:
    """Per hand, the mean Euclidean distance (mm) over its valid joints: pred, gt (N, J, 3), valid
    (N, J) -> (N,), NaN for a hand with no valid joint."""
    d = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)
    v = np.asarray(valid, bool)
    n = v.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(v, d, 0.0).sum(-1) / n, np.nan)


def summarize(errors, worst: int = 10) -> dict:
    """mean, median, 95th percentile, max, count of per-hand errors (NaN skipped), and the indices
    of the `worst` largest."""
    e = np.asarray(errors, np.float64)
    ok = np.flatnonzero(np.isfinite(e))
    if not len(ok):
        return {"count": 0, "mean": None, "median": None, "p95": None, "max": None, "worst": []}
    v = e[ok]
    order = ok[np.argsort(-v, kind="stable")[:worst]]
    return {"count": int(len(ok)), "mean": float(v.mean()), "median": float(np.median(v)),
            "p95": float(np.percentile(v, 95)), "max": float(v.max()), "worst": order.tolist()}
