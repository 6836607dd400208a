"""MANO layer, conversion, fitting error and rasteriser (shards.mano), on the synthetic MANO model
and emulated official pickles; each formula against a reference computed differently here.

Run: .venv/bin/python -m pytest -q tests/test_mano.py
"""
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from shards.mano import convert, model, render
from shards.synth import handmodel as hm
from shards.synth import manohands

M = np.array([-1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def models():
    files, posing = manohands.models()
    return {s: {k: v for k, v in posing[s].items() if k in model.FIELDS} for s in model.SIDES}


@pytest.fixture(scope="module")
def layers(models):
    return model.build_layers(models, dtype=torch.float64)


def random_params(rng, n):
    return rng.normal(0, 0.4, (n, 48)), rng.normal(0, 1, (n, 10)), rng.normal(0, 0.5, (n, 3))


# ---- emulated official pickles ----------------------------------------------------------------
class Ch:  # pickled under the name chumpy.ch.Ch, with a chumpy-like state
    pass


class csc_matrix:  # pickled under the name scipy.sparse.csc.csc_matrix, with scipy's old state
    pass


class _Py2Pickler(pickle._Pickler):
    """Writes bytes and str as Python 2 `str` (SHORT_BINSTRING / BINSTRING), as the official files do."""
    dispatch = dict(pickle._Pickler.dispatch)

    def _py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = _py2_str
    dispatch[str] = _py2_str


def official_style_pickle(arrays) -> bytes:
    """A pickle laid out like the official MANO files: chumpy arrays for the blend shapes and
    template, a csc J_regressor, Python 2 strings and numpy.core module names."""
    obj = {}
    for k, v in arrays.items():
        if k in ("v_template", "shapedirs", "posedirs", "weights"):
            c = Ch()
            c.__dict__.update(x=np.asarray(v), _dirty_vars=set(), _itr=None, _depends_on_deps={},
                              _make_dense=False, _make_sparse=False)
            obj[k] = c
        elif k == "J_regressor":
            dense = np.asarray(v)
            cols = [np.flatnonzero(dense[:, j]) for j in range(dense.shape[1])]
            s = csc_matrix()
            s.__dict__.update(_shape=dense.shape, maxprint=50, format="csc",
                              indices=np.concatenate(cols).astype(np.int32),
                              indptr=np.cumsum([0] + [len(c) for c in cols]).astype(np.int32),
                              data=np.concatenate([dense[c, j] for j, c in enumerate(cols)]))
            obj[k] = s
        else:
            obj[k] = np.asarray(v)
    obj["bs_style"] = "lbs"
    import io
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    raw = buf.getvalue()
    for old, new in ((f"c{Ch.__module__}\nCh\n", "cchumpy.ch\nCh\n"),
                     (f"c{csc_matrix.__module__}\ncsc_matrix\n", "cscipy.sparse.csc\ncsc_matrix\n"),
                     ("cnumpy._core.multiarray\n", "cnumpy.core.multiarray\n"), ("c__builtin__\n", "c__builtin__\n")):
        raw = raw.replace(old.encode(), new.encode())
    assert b"chumpy.ch\nCh" in raw and b"scipy.sparse.csc" in raw and b"numpy.core.multiarray" in raw
    assert b"tests" not in raw and b"_codecs" not in raw
    return raw


def test_reads_official_style_pickles_without_chumpy(tmp_path, models, layers):
    d = tmp_path / "mano"
    d.mkdir()
    for side, name in model.FILES.items():
        (d / name).write_bytes(official_style_pickle(manohands.models()[0][side] | {"hands_coeffs": np.zeros((2, 45))}))
    loaded = model.load_models(tmp_path)  # the smplx layout: <root>/mano/MANO_*.pkl
    for side in model.SIDES:
        for k in model.FIELDS:
            np.testing.assert_array_equal(loaded[side][k], models[side][k], err_msg=f"{side} {k}")
    rng = np.random.default_rng(0)
    p = random_params(rng, 8)
    ours = model.build_layers(loaded, dtype=torch.float64)
    for side in model.SIDES:
        np.testing.assert_allclose(model.mano_vertices(ours[side], *p), model.mano_vertices(layers[side], *p), atol=1e-9)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + _Evil.target,))


@pytest.mark.parametrize("payload", ["system", "eval", "chumpy_then_system"])
def test_unpickler_refuses_code(tmp_path, payload):
    target = tmp_path / "owned"
    _Evil.target = str(target)
    if payload == "system":
        data = pickle.dumps({"v_template": _Evil()}, protocol=2)
    elif payload == "eval":
        data = b"cbuiltins\neval\n(Vprint(1)\ntR."
    else:
        data = pickle.dumps([np.zeros(3), _Evil()], protocol=4)
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(data)
    with pytest.raises(model.ManoError, match="refused"):
        model.load_model(path)
    assert not target.exists()


def test_load_errors_name_file_and_field(tmp_path, models):
    with pytest.raises(model.ManoError, match="MANO_RIGHT.pkl: MANO model file not found"):
        model.load_models(tmp_path)
    bad = dict(manohands.models()[0]["right"])
    bad["posedirs"] = bad["posedirs"][:, :, :100]
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(pickle.dumps(bad))
    with pytest.raises(model.ManoError, match=r"MANO_RIGHT.pkl: field 'posedirs': shape \(778, 3, 100\)"):
        model.load_model(tmp_path / "MANO_RIGHT.pkl")
    bad = dict(manohands.models()[0]["right"])
    del bad["weights"]
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(pickle.dumps(bad))
    with pytest.raises(model.ManoError, match="field 'weights': missing"):
        model.load_model(tmp_path / "MANO_RIGHT.pkl")


def test_left_shapedirs_fix(models, tmp_path):
    files = manohands.models()[0]
    right = {k: files["right"][k].copy() for k in model.FIELDS}
    left = {k: files["left"][k].copy() for k in model.FIELDS}
    np.testing.assert_array_equal(left["shapedirs"][:, 0], right["shapedirs"][:, 0])  # the official bug
    assert model.fix_left_shapedirs(right, left)
    np.testing.assert_array_equal(left["shapedirs"][:, 0], -right["shapedirs"][:, 0])
    assert not model.fix_left_shapedirs(right, left)  # a correct left model is left alone
    d = manohands.write_model(tmp_path)
    alone = model.load_models(d, sides=("left",))["left"]  # fixed even when asked for alone
    np.testing.assert_array_equal(alone["shapedirs"], left["shapedirs"])
    # fixed, the left model is the mirror image of the right: same shape, mirrored pose and place
    rng = np.random.default_rng(1)
    pose, shape, trans = random_params(rng, 16)
    mirror_pose = (pose.reshape(-1, 16, 3) * hm_mirror()).reshape(-1, 48)
    mirror_pose[:, 3:] += (right["hands_mean"].reshape(15, 3) * hm_mirror()).reshape(45) - left["hands_mean"]
    v_r, _ = model.lbs(right, pose, shape, trans)
    v_l, _ = model.lbs(left, mirror_pose, shape, trans * M)
    np.testing.assert_allclose(v_l, v_r * M, atol=1e-12)
    buggy = {k: files["left"][k] for k in model.FIELDS}
    v_bug, _ = model.lbs(buggy, mirror_pose, shape, trans * M)
    assert np.abs(v_bug - v_r * M).max() > 1e-3  # > 1 mm: the fix matters


def hm_mirror():
    return manohands.MIRROR_AA


def test_numpy_lbs_equals_smplx(models, layers):
    rng = np.random.default_rng(2)
    p = random_params(rng, 32)
    for side in model.SIDES:
        v, j = model.lbs(models[side], *p)
        # smplx rounds the model's arrays to float32 (smplx.utils.to_np) even in a float64 layer
        np.testing.assert_allclose(model.mano_vertices(layers[side], *p), v * 1000, atol=1e-4)
        # the joints: MANO's J_regressor on the rest shape, moved by the kinematic chain
        out = layers[side](global_orient=torch.as_tensor(p[0][:, :3]), hand_pose=torch.as_tensor(p[0][:, 3:]),
                           betas=torch.as_tensor(p[1]), transl=torch.as_tensor(p[2]))
        np.testing.assert_allclose(out.joints.numpy()[:, :16], j, atol=1e-7)


def test_posed_mesh_joints_are_the_kinematic_joints(models):
    """Independent reference: handmodel.forward_kinematics (the kinematic chain the synthetic model is
    built on). MANO parameters from the kinematic state, their mesh, the 21 regressed joints."""
    rng = np.random.default_rng(3)
    t = np.linspace(0, 1, 24)
    angles = hm.gesture_trajectory(["fist", "spread", "ok_sign"], t, rng)
    rots = np.stack([hm.random_frame(rng) for _ in t])
    wrist = rng.normal(0, 300, (24, 3)) + [0, 0, 1000]
    for side in model.SIDES:
        for scale in (0.9, 1.1):
            beta = manohands.betas(scale, np.zeros(10))
            p = manohands.hand_params(side, rots, angles, wrist, beta)
            got = manohands.regressed_joints(side, p)
            local = hm.forward_kinematics(angles, scale)
            local = hm.mirror(local) if side == "left" else local
            want = np.einsum("tij,tkj->tki", rots, local) + wrist[:, None]
            np.testing.assert_allclose(got, want, atol=2e-3)  # 6-decimal rounding of the written values


def test_thousands_of_hands_per_call(models):
    layer = model.build_layers({"right": models["right"]})["right"]  # float32, as the tools use
    rng = np.random.default_rng(4)
    p = random_params(rng, 3000)
    v = model.mano_vertices(layer, *p, chunk=1024)
    ref, _ = model.lbs(models["right"], *(x[::97] for x in p))
    assert v.shape == (3000, 778, 3)
    np.testing.assert_allclose(v[::97], ref * 1000, atol=1e-3)


def test_axis_angle_round_trip():
    rng = np.random.default_rng(5)
    axis = rng.normal(size=(500, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = np.concatenate([rng.uniform(0, np.pi, 490), [0.0, 1e-9, np.pi - 1e-9, np.pi, 1e-4] * 2])
    rot = hm.rotation(axis, angle)  # handmodel's Rodrigues, an independent implementation
    aa = model.matrix_to_axis_angle(rot)
    np.testing.assert_allclose(model.axis_angle_to_matrix(aa), rot, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(aa, axis=1), angle, atol=1e-7)


# ---- world to camera --------------------------------------------------------------------------
def _random_cameras(rng, n):
    camrot = np.stack([hm.random_frame(rng) for _ in range(n)])
    return camrot, rng.normal(0, 800, (n, 3))


def test_conversion_b_equals_a(models, layers):
    rng = np.random.default_rng(6)
    pose, shape, trans = random_params(rng, 64)
    camrot, campos = _random_cameras(rng, 64)
    for side in model.SIDES:
        world = model.mano_vertices(layers[side], pose, shape, trans)
        a = np.einsum("nij,nvj->nvi", camrot, world - campos[:, None])  # docs/conventions.md §2, written out
        pose_c, trans_c = convert.convert_params(models[side], pose, shape, trans, camrot, campos)
        b = model.mano_vertices(layers[side], pose_c, shape, trans_c)
        assert np.abs(a - b).max() < 1e-3  # mm
        np.testing.assert_array_equal(pose_c[:, 3:], pose[:, 3:])
        np.testing.assert_allclose(convert.points_to_camera(world, camrot, campos), a, atol=1e-9)


def test_original_pivot(models, layers):
    """The original script's translation pivots on the regressed wrist w: it is exact only when w is
    MANO's root joint, and otherwise off by (R - I) (w - J0)."""
    rng = np.random.default_rng(7)
    pose, shape, trans = random_params(rng, 32)
    camrot, campos = _random_cameras(rng, 32)
    m = models["right"]
    pose_c, trans_c = convert.convert_params(m, pose, shape, trans, camrot, campos)
    mesh0 = model.mano_vertices(layers["right"], pose_c, shape, np.zeros((32, 3))) / 1000
    j0 = convert.root_joint(m, shape)
    j0_posed = np.einsum("v,nvk->nk", m["J_regressor"][0], mesh0)  # a regressor whose wrist is J0
    np.testing.assert_allclose(convert.convert_params_original(trans, camrot, campos, j0_posed), trans_c, atol=1e-9)
    wrist = np.einsum("v,nvk->nk", manohands.models()[1]["right"]["ih_regressor"][20], mesh0)
    off = convert.convert_params_original(trans, camrot, campos, wrist) - trans_c
    want = np.einsum("nij,nj->ni", camrot - np.eye(3), wrist - j0)
    np.testing.assert_allclose(off, want, atol=1e-9)
    assert np.linalg.norm(off, axis=1).mean() > 1e-3  # a few mm


def test_fitting_error_matches_the_original_loop():
    rng = np.random.default_rng(8)
    pred, gt = rng.normal(0, 50, (40, 21, 3)), rng.normal(0, 50, (40, 21, 3))
    valid = rng.random((40, 21)) > 0.3
    valid[3] = False
    got = convert.fitting_error(pred, gt, valid)
    for k in range(40):  # the original's get_fitting_error, per hand
        jv = valid[k].astype(np.float32).reshape(-1, 1)
        p = pred[k][np.tile(jv == 1, (1, 3))].reshape(-1, 3)
        g = gt[k][np.tile(jv == 1, (1, 3))].reshape(-1, 3)
        if k == 3:
            assert np.isnan(got[k])
        else:
            assert abs(np.sqrt(np.sum((p - g) ** 2, 1)).mean() - got[k]) < 1e-9
    s = convert.summarize(got, worst=3)
    ok = got[np.isfinite(got)]
    assert s["count"] == 39 and abs(s["mean"] - ok.mean()) < 1e-12 and abs(s["p95"] - np.percentile(ok, 95)) < 1e-12
    assert got[s["worst"][0]] == ok.max() and sorted(got[s["worst"]])[::-1] == list(got[s["worst"]])


# ---- rasteriser -------------------------------------------------------------------------------
def test_rasterizer_coverage_and_depth():
    """One tilted triangle: covered pixels equal a point-in-triangle test by cross-product signs, and
    the depth at each equals the ray-plane intersection."""
    tri = np.array([[-40.0, -30.0, 500.0], [50.0, -10.0, 650.0], [-5.0, 45.0, 560.0]])
    focal, princpt, w, h = (300.0, 310.0), (31.5, 24.25), 64, 48
    ras = render.rasterize(tri, np.array([[0, 1, 2]]), focal, princpt, w, h)
    uv = tri[:, :2] / tri[:, 2:] * focal + princpt
    ys, xs = np.mgrid[0:h, 0:w]
    p = np.stack([xs, ys], -1).astype(float)
    def cross2(a, b):
        return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]

    s = [cross2(uv[(k + 1) % 3] - uv[k], p - uv[k]) for k in range(3)]
    inside = ((s[0] >= 0) & (s[1] >= 0) & (s[2] >= 0)) | ((s[0] <= 0) & (s[1] <= 0) & (s[2] <= 0))
    np.testing.assert_array_equal(ras.face >= 0, inside)
    n = np.cross(tri[1] - tri[0], tri[2] - tri[0])
    ray = np.stack([(xs - princpt[0]) / focal[0], (ys - princpt[1]) / focal[1], np.ones_like(xs, float)], -1)
    z = (n @ tri[0]) / (ray @ n)  # the depth along (u, v, 1)
    np.testing.assert_allclose(ras.depth[inside], z[inside], rtol=1e-5)


def _square(x0, x1, y0, y1, z):
    v = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], float)
    return v, np.array([[0, 1, 2], [0, 2, 3]])


def test_overlay_occlusion_and_colours():
    img = np.zeros((60, 80, 3), np.uint8)
    focal, princpt = (100.0, 100.0), (40.0, 30.0)
    near, far = _square(-10, 10, -10, 10, 200), _square(-5, 30, -5, 20, 300)  # far is bigger on screen
    for order in ((0, 1), (1, 0)):
        meshes = [(near[0], near[1], render.COLOURS["right"]), (far[0], far[1], render.COLOURS["left"])]
        meshes = [meshes[k] for k in order]
        out, ras, which = render.overlay(img, meshes, focal, princpt, alpha=1.0)
        who = np.array(order)[which[which >= 0]]
        centre = which[30, 40]  # both squares cover the centre; the near one wins
        assert order[centre] == 0 and (ras.depth[30, 40] - 200) < 1e-4
        assert order[which[36, 48]] == 1  # only the far square there
        assert set(who.tolist()) == {0, 1}
        assert out[30, 40, 2] > out[30, 40, 0] and out[36, 48, 0] > out[36, 48, 2]  # blue right, orange left


def test_obj_export(tmp_path, models):
    v, _ = model.lbs(models["right"], *random_params(np.random.default_rng(9), 1))
    path = tmp_path / "hand.obj"
    render.write_obj(path, v[0] * 1000, models["right"]["f"])
    lines = path.read_text().splitlines()
    verts = np.array([[float(x) for x in ln.split()[1:]] for ln in lines if ln.startswith("v ")])
    faces = np.array([[int(x) for x in ln.split()[1:]] for ln in lines if ln.startswith("f ")])
    np.testing.assert_allclose(verts, v[0] * 1000, atol=1e-4)
    np.testing.assert_array_equal(faces - 1, models["right"]["f"])
