"""Synthetic hands posed through the synthetic MANO model (shards/synth/manomodel.py).

For each hand and frame the generator has the kinematic state of handmodel.py (finger angles, wrist
rotation and position) and the subject's scale and shape; hand_params turns it into the MANO
NeuralAnnot parameters written to MANO_NeuralAnnot.json (pose 48 with the root first and the fingers
as offsets from hands_mean, shape 10, trans 3 in metres, world frame; rounded as written), and
annotated_joints gives the 21 InterHand joints regressed from the MANO mesh of exactly those
parameters plus the fitting noise (FIT_NOISE_MM). Pictures are drawn from the annotated joints, the
"truth" of a capture, and the MANO parameters are its fit, a few mm off - as in the real data.

write_model puts the model beside the data set: DATA/mano/MANO_RIGHT.pkl, MANO_LEFT.pkl (plain
numpy arrays, pickle protocol 4: smplx and shards.mano read them) and DATA/mano/IH_REGRESSOR.
"""
import io
import os
import pickle
from functools import lru_cache

import numpy as np

from ..atomic import atomic_write_bytes
from ..mano.model import FIELDS, axis_angle_to_matrix, fix_left_shapedirs, lbs, matrix_to_axis_angle, root_joint
from . import handmodel as hm
from . import manomodel

IH_REGRESSOR = "J_regressor_synth_ih26m.npy"
# Fitting noise added to the regressed joints: per hand and frame a common offset N(0, 2.5 mm) per
# axis, plus per-joint steps N(0, 1 mm) per axis (clipped at 2.5 mm) accumulated from the wrist
# along each finger, so errors grow towards the tips like real MANO fits (mean ~5 mm).
FIT_NOISE_MM = {"offset": 2.5, "step": 1.0, "step_clip": 2.5}
MIRROR_AA = manomodel.MIRROR_AA


@lru_cache(maxsize=1)
def models():
    """(files, posing): the arrays written to the pickles ({side: dict}; MANO_LEFT with the official
    file's shapedirs bug) and the arrays the hands are posed with (the left one fixed)."""
    right = manomodel.build_right()
    left = manomodel.mirror_left(right)
    files = {"right": right, "left": left}
    posing = {s: {k: v for k, v in m.items() if k in FIELDS or k == "ih_regressor"} for s, m in files.items()}
    posing["left"]["shapedirs"] = posing["left"]["shapedirs"].copy()
    assert fix_left_shapedirs(posing["right"], posing["left"])
    return files, posing


def write_model(out_dir) -> str:
    """Write DATA/mano/{MANO_RIGHT.pkl, MANO_LEFT.pkl, IH_REGRESSOR}; returns the folder."""
    files, _ = models()
    d = os.path.join(out_dir, "mano")
    for side, name in (("right", "MANO_RIGHT.pkl"), ("left", "MANO_LEFT.pkl")):
        m = files[side]
        obj = {k: m[k] for k in ("hands_components", "f", "J_regressor", "kintree_table", "J", "weights",
                                 "posedirs", "hands_mean", "v_template", "shapedirs")}
        obj.update(bs_style="lbs", bs_type="lrotmin")
        atomic_write_bytes(os.path.join(d, name), pickle.dumps(obj, protocol=4), fsync=False)
    buf = io.BytesIO()
    np.save(buf, files["right"]["ih_regressor"])
    atomic_write_bytes(os.path.join(d, IH_REGRESSOR), buf.getvalue(), fsync=False)
    return d


def betas(scale: float, shape) -> np.ndarray:
    """A subject's MANO shape: beta 0 is the kinematic scale (5 % per unit about the wrist), the
    other nine the drawn shape variation."""
    b = np.asarray(shape, dtype=np.float64).copy()
    b[0] = (scale - 1.0) / manomodel.SHAPE_SIZE
    return np.round(b, 6)


def hand_params(side: str, rots, angles, wrist_mm, beta) -> dict:
    """MANO parameters of one hand over T frames, rounded as written (pose 6, shape 6, trans 6
    decimals): rots (T, 3, 3) hand-local -> world, angles (T, 5, 4), wrist_mm (T, 3) world position
    of the InterHand wrist, beta (10,). Returns {"pose" (T, 48), "shape" (T, 10), "trans" (T, 3)}."""
    model = models()[1][side]
    fingers = hm.finger_pose(angles)  # (T, 45), right hand
    if side == "left":  # the mirror image: axis-angle (x, -y, -z) per joint
        fingers = (fingers.reshape(-1, 15, 3) * MIRROR_AA).reshape(-1, 45)
    t = len(fingers)
    pose = np.round(np.concatenate([matrix_to_axis_angle(rots), fingers - model["hands_mean"]], 1), 6)
    shape = np.broadcast_to(beta, (t, 10)).copy()
    # Vertices are R (v - J0) + J0 + trans (J0: MANO's root joint), so the InterHand wrist w lands
    # at wrist_mm for trans = wrist - J0 - R (w - J0).
    j0 = root_joint(model, shape)
    w = model["ih_regressor"][20] @ model["v_template"] + np.einsum(
        "v,vkl,nl->nk", model["ih_regressor"][20], model["shapedirs"], shape)
    rot = axis_angle_to_matrix(pose[:, :3])
    trans = np.asarray(wrist_mm, np.float64) / 1000.0 - j0 - np.einsum("nij,nj->ni", rot, w - j0)
    return {"pose": pose, "shape": shape, "trans": np.round(trans, 6)}


def regressed_joints(side: str, params: dict) -> np.ndarray:
    """The 21 InterHand joints (T, 21, 3) mm regressed from the MANO mesh of `params`."""
    model = models()[1][side]
    verts, _ = lbs(model, params["pose"], params["shape"], params["trans"])
    return np.einsum("jv,nvk->njk", model["ih_regressor"], verts) * 1000.0


def fit_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 21, 3) mm: FIT_NOISE_MM's offset plus steps accumulated from the wrist to each tip."""
    c = FIT_NOISE_MM
    step = np.clip(rng.normal(0, c["step"], (n, 21, 3)), -c["step_clip"], c["step_clip"])
    out = np.empty((n, 21, 3))
    out[:, 20] = rng.normal(0, c["offset"], (n, 3)) + step[:, 20]
    for f in range(5):
        prev = out[:, 20]
        for k in (3, 2, 1, 0):  # base .. tip
            prev = out[:, 4 * f + k] = prev + step[:, 4 * f + k]
    return out
