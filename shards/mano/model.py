"""MANO models: safe loading of the official pickles, the left-hand fix, the smplx layer, and a
numpy forward pass.

The official MANO_RIGHT.pkl / MANO_LEFT.pkl hold chumpy objects and Python 2 module names
(`chumpy.ch.Ch`, `scipy.sparse.csc.csc_matrix`, `numpy.core.multiarray._reconstruct`); chumpy does
not import on current numpy / Python. load_model reads them with a restricted unpickler: numpy's
array constructors are allowed, chumpy arrays and scipy sparse matrices become numpy arrays (their
stored values; nothing of chumpy or scipy runs), every other class or function is refused - a pickle
from a user's folder never runs code. smplx then gets the arrays through `data_struct`, so it never
opens the file with the plain pickle module.

    models = load_models(MANO_DIR)                 # {"right": arrays, "left": arrays} (left fixed)
    layers = build_layers(models, device="cpu")    # smplx.create(..., "mano", use_pca=False, ...)
    verts_mm = mano_vertices(layers["right"], pose, shape, trans)   # (N, 778, 3), batched

`lbs` is the same forward pass in float64 numpy (no torch import), used by the synthetic generator;
the tests prove it equals smplx's.
"""
import contextlib
import io
import os
import pickle

import numpy as np

try:  # numpy >= 2
    from numpy._core import multiarray as _np_multiarray
    from numpy._core import numeric as _np_numeric
except ImportError:  # numpy 1.26
    from numpy.core import multiarray as _np_multiarray
    from numpy.core import numeric as _np_numeric

SIDES = ("right", "left")
FILES = {"right": "MANO_RIGHT.pkl", "left": "MANO_LEFT.pkl"}
N_JOINTS = 16
# field -> expected shape (None: any length on that axis; V vertices)
FIELDS = {"v_template": ("V", 3), "f": (None, 3), "shapedirs": ("V", 3, None), "posedirs": ("V", 3, 135),
          "J_regressor": (N_JOINTS, "V"), "weights": ("V", N_JOINTS), "kintree_table": (2, N_JOINTS),
          "hands_components": (45, 45), "hands_mean": (45,)}


class ManoError(ValueError):
    """A MANO file or parameter that cannot be used; the message names the file and the field."""


# ---- restricted unpickling ------------------------------------------------------------------
class _Held:
    """Stands in for a chumpy or scipy object: keeps its pickled state, runs none of its code."""
    origin = "?"

    def __setstate__(self, state):
        self.state = state


_STUBS = {}


def _stub(module, name):
    key = f"{module}.{name}"
    if key not in _STUBS:
        _STUBS[key] = type(name, (_Held,), {"origin": key})
    return _STUBS[key]


def _reconstructor(cls, base, state):  # copy_reg._reconstructor, for stand-ins only
    if not (isinstance(cls, type) and issubclass(cls, _Held)) or base is not object:
        raise pickle.UnpicklingError(f"refused: copy_reg._reconstructor of {cls!r}")
    return cls.__new__(cls)


def _latin1(text, encoding):  # how Python 3 pickles bytes at protocol 2 (_codecs.encode)
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused: _codecs.encode with {encoding!r}")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _np_multiarray.scalar,
    ("numpy.core.numeric", "_frombuffer"): _np_numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _np_numeric._frombuffer,
    ("copyreg", "_reconstructor"): _reconstructor, ("copy_reg", "_reconstructor"): _reconstructor,
    ("_codecs", "encode"): _latin1,
}
for _mod in ("builtins", "__builtin__"):  # Python 3 and 2 names (find_class sees them unmapped)
    _ALLOWED.update({(_mod, "set"): set, (_mod, "frozenset"): frozenset, (_mod, "object"): object})
_SPARSE = ("csc_matrix", "csr_matrix")


class SafeUnpickler(pickle.Unpickler):
    """Maps numpy's array constructors to themselves, chumpy classes and scipy csc/csr matrices to
    inert stand-ins, and refuses everything else."""

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "chumpy" or module.startswith("chumpy."):
            return _stub(module, name)
        if module.startswith("scipy.sparse") and name in _SPARSE:
            return _stub("scipy.sparse", name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name} (only numpy, chumpy arrays and "
                                     "scipy sparse matrices are read from MANO files)")


def _dense_sparse(held):
    st = held.state if isinstance(held.state, dict) else {}
    try:
        data, indices, indptr = (np.asarray(st[k]) for k in ("data", "indices", "indptr"))
        shape = tuple(int(x) for x in st.get("_shape", st.get("shape")))
    except (KeyError, TypeError) as e:
        raise ValueError(f"a scipy sparse matrix without {e}") from None
    out = np.zeros(shape, dtype=np.float64)
    lengths = np.diff(indptr)
    if held.origin.endswith("csc_matrix"):
        np.add.at(out, (indices, np.repeat(np.arange(shape[1]), lengths)), data)
    else:
        np.add.at(out, (np.repeat(np.arange(shape[0]), lengths), indices), data)
    return out


def _to_array(value):
    """A loaded field -> numpy array (chumpy arrays give their stored value `x`)."""
    if isinstance(value, _Held):
        if value.origin.startswith("scipy.sparse"):
            return _dense_sparse(value)
        st = value.state if isinstance(value.state, dict) else {}
        if "x" not in st:
            raise ValueError(f"a chumpy expression ({value.origin}) with no stored value; only plain "
                             "chumpy arrays can be read without chumpy")
        return _to_array(st["x"])
    a = np.asarray(value)
    if a.dtype == object:
        raise ValueError("not a numeric array")
    return a


def read_pickle(path) -> dict:
    """The top-level dict of a MANO pickle, through SafeUnpickler (latin1 for Python 2 strings)."""
    try:
        with open(path, "rb") as f:
            obj = SafeUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise ManoError(f"{path}: MANO model file not found") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise ManoError(f"{path}: not a readable MANO pickle ({e})") from None
    if not isinstance(obj, dict):
        raise ManoError(f"{path}: a MANO pickle holds a dict, this one a {type(obj).__name__}")
    return obj


def load_model(path) -> dict:
    """One MANO file -> dict of numpy arrays (float64; faces int64), shapes checked."""
    raw = read_pickle(path)
    out, n_verts = {}, None
    for key, shape in FIELDS.items():
        if key not in raw:
            raise ManoError(f"{path}: field {key!r}: missing")
        try:
            a = _to_array(raw[key])
        except ValueError as e:
            raise ManoError(f"{path}: field {key!r}: {e}") from None
        n_verts = n_verts or (a.shape[0] if key == "v_template" and a.ndim == 2 else None)
        want = tuple(n_verts if s == "V" else s for s in shape)
        if a.ndim != len(want) or any(w is not None and w != s for w, s in zip(want, a.shape)):
            raise ManoError(f"{path}: field {key!r}: shape {a.shape}, expected {want}")
        out[key] = a.astype(np.int64 if key in ("f", "kintree_table") else np.float64)
    if out["shapedirs"].shape[2] < 10:
        raise ManoError(f"{path}: field 'shapedirs': {out['shapedirs'].shape[2]} shape components, expected 10")
    if out["f"].min() < 0 or out["f"].max() >= n_verts:
        raise ManoError(f"{path}: field 'f': vertex index out of range")
    out["shapedirs"] = out["shapedirs"][:, :, :10]
    return out


def mano_dir(path) -> str:
    """The folder holding MANO_RIGHT.pkl / MANO_LEFT.pkl: `path` itself or `path`/mano (smplx's layout)."""
    path = os.path.abspath(os.fspath(path))
    for d in (path, os.path.join(path, "mano")):
        if any(os.path.isfile(os.path.join(d, f)) for f in FILES.values()):
            return d
    raise ManoError(f"{os.path.join(path, FILES['right'])}: MANO model file not found (nor in {path}/mano)")


def fix_left_shapedirs(right: dict, left: dict) -> bool:
    """The known left-model bug (smplx issue 48): the official MANO_LEFT's shapedirs[:, 0, :] equals
    the right model's where the mirror image needs it negated; the data set's fits assume the fix.
    Negates it in `left` when equal (relative 1e-6); returns whether it did."""
    r, lx = right["shapedirs"][:, 0, :], left["shapedirs"][:, 0, :]
    if r.shape == lx.shape and np.abs(r - lx).sum() <= 1e-6 * max(np.abs(r).sum(), 1e-30):
        left["shapedirs"] = left["shapedirs"].copy()
        left["shapedirs"][:, 0, :] *= -1
        return True
    return False


def load_models(path, sides=SIDES) -> dict:
    """{side: arrays} from a MANO folder, the left-hand fix applied (the left model is compared with
    the right one, which is read for that even when only the left is asked for)."""
    d = mano_dir(path)
    need = list(sides) + (["right"] if "left" in sides and "right" not in sides else [])
    models = {s: load_model(os.path.join(d, FILES[s])) for s in need}
    if "left" in models:
        fix_left_shapedirs(models["right"], models["left"])
    return {s: models[s] for s in sides}


# ---- rotations ------------------------------------------------------------------------------
def axis_angle_to_matrix(aa) -> np.ndarray:
    """Rodrigues: (..., 3) axis-angle -> (..., 3, 3)."""
    aa = np.asarray(aa, dtype=np.float64)
    angle = np.linalg.norm(aa, axis=-1)[..., None, None]
    k = aa / np.where(angle[..., 0] > 0, angle[..., 0], 1.0)
    x, y, z = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(x)
    kx = np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], -2)
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * (kx @ kx)


def matrix_to_axis_angle(rot) -> np.ndarray:
    """(..., 3, 3) rotation -> (..., 3) axis-angle with angle in [0, pi], stable near 0 and pi
    (through the quaternion, Shepperd's choice of the largest component)."""
    r = np.asarray(rot, dtype=np.float64)
    tr = np.trace(r, axis1=-2, axis2=-1)
    d = np.stack([tr, r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]], -1)
    case = np.argmax(d, -1)
    q = np.empty(r.shape[:-2] + (4,))
    s01, s02, s12 = r[..., 0, 1] + r[..., 1, 0], r[..., 0, 2] + r[..., 2, 0], r[..., 1, 2] + r[..., 2, 1]
    d21, d02, d10 = r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        cand = [np.stack([1 + tr, d21, d02, d10], -1),
                np.stack([d21, 1 + 2 * r[..., 0, 0] - tr, s01, s02], -1),
                np.stack([d02, s01, 1 + 2 * r[..., 1, 1] - tr, s12], -1),
                np.stack([d10, s02, s12, 1 + 2 * r[..., 2, 2] - tr], -1)]
    for c in range(4):
        q = np.where((case == c)[..., None], cand[c], q)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    q *= np.where(q[..., :1] < 0, -1.0, 1.0)  # w >= 0: angle <= pi
    v = q[..., 1:]
    sin_half = np.linalg.norm(v, axis=-1)
    angle = 2 * np.arctan2(sin_half, q[..., 0])
    scale = np.where(sin_half > 1e-12, angle / np.where(sin_half > 1e-12, sin_half, 1.0), 2.0)
    return v * scale[..., None]


# ---- forward passes -------------------------------------------------------------------------
def shaped(model: dict, shape) -> np.ndarray:
    """Template with shape blend shapes, (N, V, 3) metres, for shape (N, 10)."""
    return model["v_template"] + np.einsum("nl,vkl->nvk", np.asarray(shape, np.float64), model["shapedirs"])


def root_joint(model: dict, shape) -> np.ndarray:
    """MANO's own root joint (the shaped template's joint 0) for shape (N, 10): (N, 3) metres. The
    root orientation rotates the hand about this point."""
    shape = np.asarray(shape, np.float64)
    return model["J_regressor"][0] @ model["v_template"] + np.einsum(
        "v,vkl,nl->nk", model["J_regressor"][0], model["shapedirs"], shape)


def lbs(model: dict, pose, shape, trans, flat_hand_mean: bool = False):
    """MANO forward pass in float64 numpy, as smplx.MANO(use_pca=False) computes it: pose (N, 48)
    axis-angle (root first; the 45 finger values are offsets from hands_mean unless flat_hand_mean),
    shape (N, 10), trans (N, 3) m -> vertices (N, V, 3) m, joints (N, 16, 3) m."""
    pose = np.asarray(pose, np.float64).reshape(-1, N_JOINTS, 3).copy()
    if not flat_hand_mean:
        pose[:, 1:] += model["hands_mean"].reshape(15, 3)
    n = len(pose)
    v_shaped = shaped(model, shape)
    joints = np.einsum("jv,nvk->njk", model["J_regressor"], v_shaped)
    rot = axis_angle_to_matrix(pose)  # (N, 16, 3, 3)
    feature = (rot[:, 1:] - np.eye(3)).reshape(n, -1)
    v_posed = v_shaped + np.einsum("np,vkp->nvk", feature, model["posedirs"])
    parents = model["kintree_table"][0]
    g_rot, g_pos = np.empty_like(rot), np.empty_like(joints)
    g_rot[:, 0], g_pos[:, 0] = rot[:, 0], joints[:, 0]
    for j in range(1, N_JOINTS):
        p = parents[j]
        g_rot[:, j] = g_rot[:, p] @ rot[:, j]
        g_pos[:, j] = g_pos[:, p] + np.einsum("nij,nj->ni", g_rot[:, p], joints[:, j] - joints[:, p])
    rel_t = g_pos - np.einsum("njik,njk->nji", g_rot, joints)  # each joint's transform of rest points
    w = model["weights"]
    a_rot = np.einsum("vj,njik->nvik", w, g_rot)
    a_t = np.einsum("vj,nji->nvi", w, rel_t)
    trans = np.asarray(trans, np.float64).reshape(n, 1, 3)
    verts = np.einsum("nvik,nvk->nvi", a_rot, v_posed) + a_t + trans
    return verts, g_pos + trans


def build_layers(models: dict, device="cpu", dtype=None, root=None) -> dict:
    """smplx MANO layers {side: smplx.MANO} from loaded arrays: smplx.create(root, "mano",
    use_pca=False, is_rhand=...) with `data_struct`, so smplx never unpickles the file itself."""
    import smplx
    import torch
    from smplx.utils import Struct

    layers = {}
    for side, arrays in models.items():
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note about 10 shape components
            layer = smplx.create(root or ".", "mano", use_pca=False, is_rhand=side == "right",
                                 flat_hand_mean=False, data_struct=Struct(**arrays),
                                 dtype=dtype or torch.float32)
        layers[side] = layer.to(device).eval()
    return layers


def mano_vertices(layer, pose, shape, trans, chunk: int = 4096) -> np.ndarray:
    """Batched smplx forward: pose (N, 48), shape (N, 10), trans (N, 3) m -> vertices (N, 778, 3)
    in mm (float64), on the layer's device in chunks."""
    import torch

    p = torch.as_tensor(np.asarray(pose, np.float64).reshape(-1, 48))
    n = len(p)
    s = torch.as_tensor(np.asarray(shape, np.float64).reshape(n, 10))
    t = torch.as_tensor(np.asarray(trans, np.float64).reshape(n, 3))
    dev, dt = layer.shapedirs.device, layer.shapedirs.dtype
    out = np.empty((n, layer.v_template.shape[0], 3))
    with torch.no_grad():
        for a in range(0, n, chunk):
            sl = slice(a, a + chunk)
            v = layer(global_orient=p[sl, :3].to(dev, dt), hand_pose=p[sl, 3:].to(dev, dt),
                      betas=s[sl].to(dev, dt), transl=t[sl].to(dev, dt)).vertices
            out[sl] = v.double().cpu().numpy() * 1000.0
    return out
