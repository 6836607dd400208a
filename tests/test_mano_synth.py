"""The MANO and camera tools end to end on the embedded synthetic set (shards.synth writes its own
MANO model): the model files, the annotations as MANO fits plus the stated noise, overlays on the
drawn hands, and the commands with their errors.

Run: .venv/bin/python -m pytest -q tests/test_mano_synth.py
"""
import json
import os
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from shards import cameras
from shards.mano import __main__ as cli
from shards.mano import render as mrender
from shards.mano.convert import points_to_camera
from shards.mano.data import load_split_annotations
from shards.mano.model import FIELDS, SIDES, build_layers, lbs, load_models, mano_vertices
from shards.synth import common, generate, interhand
from shards.synth import render as srender
from shards.synth.manohands import FIT_NOISE_MM, IH_REGRESSOR

REAL_REGRESSOR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "J_regressor_mano_ih26m.npy"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ih")
    generate(root, size="tiny", seed=0, fmt="interhand")
    return root


@pytest.fixture(scope="module")
def models(data):
    return load_models(data)


def run_cli(argv):
    """(exit message or 0, stdout) of python -m shards.mano in this process."""
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cli.main(argv)
            return 0, out.getvalue()
        except SystemExit as e:
            return e.code, out.getvalue()


def test_model_files_load_in_plain_smplx(data):
    """The pickles are what smplx.create reads itself (its own pickle.load), with MANO's layout."""
    import smplx
    raw = pickle.load(open(data / "mano" / "MANO_RIGHT.pkl", "rb"))
    shapes = {k: np.shape(raw[k]) for k in FIELDS}
    assert shapes == {"v_template": (778, 3), "f": (1538, 3), "shapedirs": (778, 3, 10), "posedirs": (778, 3, 135),
                      "J_regressor": (16, 778), "weights": (778, 16), "kintree_table": (2, 16),
                      "hands_components": (45, 45), "hands_mean": (45,)}
    assert np.load(data / "mano" / IH_REGRESSOR).shape == (21, 778)
    ours = load_models(data)
    for side in SIDES:
        layer = smplx.create(str(data), "mano", use_pca=False, is_rhand=side == "right")
        np.testing.assert_allclose(layer.v_template.numpy(), ours[side]["v_template"], atol=1e-7)
    # one connected, consistently oriented surface with one boundary loop of 16 vertices (the wrist)
    f = raw["f"].astype(np.int64)
    directed = Counter((int(a), int(b)) for t in f for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])))
    assert max(directed.values()) == 1  # no edge used twice in one direction: oriented, manifold
    undirected = Counter(frozenset(e) for e in directed)
    boundary = [e for e, n in undirected.items() if n == 1]
    assert set(undirected.values()) == {1, 2} and len(boundary) == 16
    assert 778 - len(undirected) + len(f) == 1 and len(np.unique(f)) == 778


def test_annotations_are_the_mano_fit_plus_the_stated_noise(data, models):
    """Annotated joints - joints regressed from the MANO mesh of the written parameters = the fitting
    noise: a common offset per hand (std FIT_NOISE_MM offset per axis) plus steps accumulated towards
    the tips (std FIT_NOISE_MM step, clipped)."""
    reg = np.load(data / "mano" / IH_REGRESSOR)
    noise = []
    for split in ("train", "val", "test"):
        ann = load_split_annotations(data, split, images=False)
        for h, side in enumerate(SIDES):
            rows = np.flatnonzero(ann.mano_present[:, h])
            p = ann.mano[rows, h]
            v, _ = lbs(models[side], p[:, :48], p[:, 48:58], p[:, 58:])
            fit = np.einsum("jv,nvk->njk", reg, v) * 1000
            noise.append(ann.world[rows, 21 * h:21 * h + 21] - fit)
    noise = np.concatenate(noise)
    assert len(noise) > 40
    wrist = noise[:, 20]
    assert abs(wrist.std() - np.hypot(FIT_NOISE_MM["offset"], FIT_NOISE_MM["step"])) < 0.5
    steps = noise[:, 0:20:4] - noise[:, 1:20:4]  # tip minus the joint below it: one clipped step
    assert np.abs(steps).max() <= FIT_NOISE_MM["step_clip"] + 2e-3  # + rounding of the written values
    assert abs(steps.std() - FIT_NOISE_MM["step"]) < 0.15
    err = np.linalg.norm(noise, axis=-1).mean()
    assert 4.0 < err < 6.0, err


def test_fit_error_command_reports_the_noise(data, tmp_path):
    out = tmp_path / "report.json"
    code, text = run_cli(["fit-error", "--root", str(data), "--split", "val", "--regressor",
                          str(data / "mano" / IH_REGRESSOR), "--out", str(out), "--quiet", "--worst", "3"])
    assert code == 0, code
    rep = json.loads(out.read_text())
    assert 4.0 < rep["error_mm"]["mean"] < 6.0 and rep["hands"] > 20 and len(rep["worst"]) == 3
    assert f"{rep['error_mm']['mean']:.2f}" in text and "worst frames" in text
    # the same numbers from an independent loop, the original script's way (camera frame, per image)
    ann = load_split_annotations(data, "val")
    reg = np.load(data / "mano" / IH_REGRESSOR)
    ids = dict(zip(rep["per_hand"]["image_id"][:12], rep["per_hand"]["error_mm"][:12]))
    hands = dict(zip(rep["per_hand"]["image_id"][:12], rep["per_hand"]["hand"][:12]))
    for iid, err in ids.items():
        k = int(np.flatnonzero(ann.images["id"] == iid)[0])
        r = ann.frame_rows(ann.images["capture"][k], ann.images["frame_idx"][k])
        h = SIDES.index(hands[iid])
        cam = ann.camera(ann.images["capture"][k], ann.images["camera"][k])
        R, t = cam["camrot"], -cam["camrot"] @ cam["campos"]
        p = ann.mano[r, h]
        mesh, _ = lbs(load_models(data)[hands[iid]], p[None, :48], p[None, 48:58], p[None, 58:])
        mesh = mesh[0] * 1000 @ R.T + t
        joint = ann.world[r, 21 * h:21 * h + 21] @ R.T + t
        valid = ann.joint_valid[r, 21 * h:21 * h + 21]
        assert abs(np.linalg.norm((reg @ mesh - joint)[valid], axis=1).mean() - err) < 1e-3


def test_conversion_command(data):
    code, text = run_cli(["conversion", "--root", str(data), "--split", "val", "--regressor",
                          str(data / "mano" / IH_REGRESSOR), "--quiet"])
    assert code == 0
    ab = float(text.split("max ")[1].split(" mm")[0])
    assert ab < 1e-3  # (a) == (b)
    mean = float(text.split("mean ")[-1].split(",")[0])
    assert 1.0 < mean < 12.0  # the original script's pivot: a few mm


def _drawn_hand(data, split):
    plan = interhand.plan_interhand(str(data), split, common.SIZES["tiny"][split], 0)
    return {os.path.relpath(t.path, data / "images" / split): t for t in plan["tasks"]}


@pytest.mark.parametrize("offset_mm", [0.0, 40.0])
def test_overlays_land_on_the_drawn_hands(data, models, offset_mm):
    """The rendered MANO mesh mask against the synthetic renderer's hand mask (forearm excluded):
    most mesh pixels lie on the drawn hand of the same side, most hand pixels are covered; a mesh
    moved by 40 mm (the control) does not pass."""
    ann = load_split_annotations(data, "val")
    tasks = _drawn_hand(data, "val")
    prec, rec = [], []
    for k in range(len(ann.images["id"])):
        t = tasks[ann.images["file_name"][k]]
        r = ann.frame_rows(ann.images["capture"][k], ann.images["frame_idx"][k])
        cam = ann.camera(ann.images["capture"][k], ann.images["camera"][k])
        sides = [h for h in range(2) if ann.mano_present[r, h]]
        meshes = []
        for h in sides:
            p = ann.mano[r, h]
            v, _ = lbs(models[SIDES[h]], p[None, :48], p[None, 48:58], p[None, 58:])
            vc = points_to_camera(v * 1000, cam["camrot"][None], cam["campos"][None])[0] + [offset_mm, 0, 0]
            meshes.append((vc, models[SIDES[h]]["f"], mrender.COLOURS[SIDES[h]]))
        _, _, which = mrender.overlay(np.zeros((t.height, t.width, 3), np.uint8), meshes, cam["focal"], cam["princpt"])
        mesh_hand = np.where(which >= 0, np.array(sides)[np.maximum(which, 0)], -1)
        drawn = srender.rasterize(t.joints_cam, t.present, t.focal, t.princpt, t.width, t.height, t.elbows)
        hand_of = np.array([q[1] for q in drawn.prims])
        nth = np.array([np.sum(hand_of[:i] == hand_of[i]) for i in range(len(hand_of))])
        forearm = np.r_[False, (nth >= 20) & (nth < 25)][drawn.prim.astype(np.int64) + 1]  # 5 forearm capsules
        m = mesh_hand >= 0
        body = (drawn.hand >= 0) & ~forearm
        prec.append((m & (drawn.hand == mesh_hand)).sum() / max(m.sum(), 1))
        rec.append((body & m).sum() / max(body.sum(), 1))
    prec, rec = np.array(prec), np.array(rec)
    ok = prec.mean() > 0.9 and prec.min() > 0.75 and rec.mean() > 0.85 and rec.min() > 0.7
    assert ok == (offset_mm == 0.0), (prec.mean(), prec.min(), rec.mean(), rec.min())


def test_render_command(data, tmp_path, models):
    ann = load_split_annotations(data, "test")
    k = int(np.flatnonzero(np.array([s.endswith(("dh_grab", "dh_pray", "dh_touchROM", "dh_fingertips", "dh_clap",
                                                  "dh_interlock")) for s in ann.images["seq_name"]]))[0])
    cap, cam, frame = int(ann.images["capture"][k]), ann.images["camera"][k], int(ann.images["frame_idx"][k])
    code, text = run_cli(["render", "--root", str(data), "--split", "test", "--capture", str(cap), "--camera", cam,
                          "--frame", str(frame), "--out", str(tmp_path / "one"), "--quiet"])
    assert code == 0 and "ms per frame" in text
    name = f"{cap}_{ann.images['seq_name'][k]}_cam{cam}_{frame}"
    png = (tmp_path / "one" / f"{name}.png").read_bytes()
    import cv2
    pic = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    src = simplejpeg.decode_jpeg((data / "images" / "test" / ann.images["file_name"][k]).read_bytes())
    assert pic.shape == src.shape and np.abs(pic.astype(int) - src).mean() > 3  # something drawn over it
    objs = sorted(p.name for p in (tmp_path / "one").iterdir() if p.suffix == ".obj")
    assert objs == [f"{name}_left.obj", f"{name}_right.obj"]  # a two-hand frame
    v = np.array([[float(x) for x in ln.split()[1:]] for ln in (tmp_path / "one" / objs[1]).read_text().splitlines()
                  if ln.startswith("v ")])
    r = ann.frame_rows(cap, frame)
    c = ann.camera(cap, cam)
    p = ann.mano[r, 0]
    want = points_to_camera(mano_vertices(build_layers({"right": models["right"]})["right"], p[None, :48], p[None, 48:58],
                                          p[None, 58:]), c["camrot"][None], c["campos"][None])[0]
    np.testing.assert_allclose(v, want, atol=1e-3)  # the camera-frame mesh in mm
    code, _ = run_cli(["render", "--root", str(data), "--split", "test", "--capture", str(cap), "--camera", cam,
                       "--frames", "2", "--out", str(tmp_path / "seq"), "--quiet", "--no-obj"])
    assert code == 0 and len(list((tmp_path / "seq").iterdir())) == 2
    code, _ = run_cli(["render", "--root", str(data), "--split", "test", "--random", "3", "--out",
                       str(tmp_path / "rand"), "--quiet"])
    assert code == 0 and len([p for p in (tmp_path / "rand").iterdir() if p.suffix == ".png"]) == 3


def test_bad_input_is_one_line_naming_file_and_field(data, tmp_path):
    reg = str(data / "mano" / IH_REGRESSOR)
    base = ["--root", str(data), "--split", "val", "--quiet"]
    code, _ = run_cli(["fit-error", *base, "--mano", str(tmp_path), "--regressor", reg])
    assert "MANO_RIGHT.pkl: MANO model file not found" in code
    np.save(tmp_path / "bad.npy", np.zeros((16, 778)))
    code, _ = run_cli(["fit-error", *base, "--regressor", str(tmp_path / "bad.npy")])
    assert code.startswith("error: ") and "bad.npy: joint regressor of shape (16, 778), expected (21, 778)" in code
    code, _ = run_cli(["render", *base, "--capture", "9", "--camera", "400002", "--out", str(tmp_path)])
    assert "InterHand2.6M_val_camera.json: capture 9: not in the file" in code
    code, _ = run_cli(["render", *base, "--capture", "0", "--camera", "123", "--out", str(tmp_path)])
    assert "capture 0: field 'campos': no camera '123'" in code
    # a hand with null parameters where a parameter set is required
    bad = tmp_path / "ih"
    (bad / "annotations" / "val").mkdir(parents=True)
    os.symlink(data / "images", bad / "images")
    for kind in ("data", "camera", "joint_3d"):
        name = f"InterHand2.6M_val_{kind}.json"
        os.symlink(data / "annotations" / "val" / name, bad / "annotations" / "val" / name)
    mano = json.loads((data / "annotations" / "val" / "InterHand2.6M_val_MANO_NeuralAnnot.json").read_text())
    cap = next(iter(mano))
    frame = next(f for f, v in mano[cap].items() if v["right"] is not None)
    mano[cap][frame]["right"]["pose"] = None
    (bad / "annotations" / "val" / "InterHand2.6M_val_MANO_NeuralAnnot.json").write_text(json.dumps(mano))
    code, _ = run_cli(["fit-error", "--root", str(bad), "--mano", str(data), "--regressor", reg, "--quiet"])
    assert f"MANO_NeuralAnnot.json: capture {cap} frame {frame}: field 'right.pose': missing or null" in code
    # the real command: one line on stderr, no traceback
    p = subprocess.run([sys.executable, "-m", "shards.mano", "fit-error", *base, "--regressor", str(tmp_path / "bad.npy")],
                       capture_output=True, text=True)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_camera_layout(data, tmp_path):
    out = tmp_path / "cams.png"
    cameras.main(["--root", str(data), "--split", "train", "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    layout = cameras.camera_layout(load_split_annotations(data, "train", images=False).cameras, {"0"})
    ids, pos, view = layout["0"]
    cams = json.loads((data / "annotations" / "train" / "InterHand2.6M_train_camera.json").read_text())["0"]
    for cam, p, d in zip(ids, pos, view):
        r = np.array(cams["camrot"][cam])
        np.testing.assert_allclose(p, cams["campos"][cam])
        np.testing.assert_allclose(r @ d, [0, 0, 1], atol=1e-6)  # the camera's optical axis
        centre = np.mean([np.array(v) for v in cams["campos"].values()], 0)
        assert d @ (centre - p) > 0  # synthetic cameras look at the capture
    with pytest.raises(SystemExit, match="capture 5: not in the file"):
        cameras.main(["--root", str(data), "--split", "train", "--capture", "5", "--out", str(out)])


@pytest.mark.skipif(not REAL_REGRESSOR.is_file(), reason="the release's J_regressor_mano_ih26m.npy is not here")
def test_release_regressor_is_accepted(data):
    """The release's regressor has the layout the tools expect (it fits the real MANO mesh; on the
    synthetic mesh its numbers mean nothing, so only the shape and the weights are checked)."""
    from shards.mano.tools import load_regressor
    reg = load_regressor(REAL_REGRESSOR, 778)
    assert reg.shape == (21, 778) and np.allclose(reg.sum(1), 1, atol=1e-3) and (reg >= -1e-6).all()


def test_shard_records_carry_mano(data, tmp_path, models):
    """python -m shards: each sample's json has its hands' MANO parameters as given (world) and,
    with --mano, converted to its camera frame (method (b)): that mesh is the world mesh moved into
    the camera, and its regressed joints are the record's joint_cam up to the fitting noise."""
    from shards import writer
    from shards.__main__ import cli as shards_cli
    from shards.index import iter_shard_samples
    from shards.mano.records import ManoRecords
    raw = json.loads((data / "annotations" / "val" / "InterHand2.6M_val_MANO_NeuralAnnot.json").read_text())
    reg = np.load(data / "mano" / IH_REGRESSOR)
    assert shards_cli(["--source", "interhand", "--root", str(data), "--out", str(tmp_path / "with"), "--splits", "val",
                       "--workers", "1", "--quiet", "--mano", str(data / "mano")]) == 0
    man = json.loads((tmp_path / "with" / "val" / "manifest.json").read_text())
    assert man["options"]["mano"] == str(data / "mano") and "MANO_RIGHT.pkl" in man["inputs"]
    layers = build_layers(models)
    n = 0
    for _, js, *_ in iter_shard_samples(str(tmp_path / "with" / "val")):
        given = raw[str(js["capture"])][str(js["frame_idx"])]
        assert js["mano"] == given
        ann_cam = json.loads((data / "annotations" / "val" / "InterHand2.6M_val_camera.json").read_text())[str(js["capture"])]
        r, c = np.array(ann_cam["camrot"][js["camera"]]), np.array(ann_cam["campos"][js["camera"]])
        for h, side in enumerate(SIDES):
            if given[side] is None:
                assert js["mano_cam"][side] is None
                continue
            w, m = given[side], js["mano_cam"][side]
            world = mano_vertices(layers[side], [w["pose"]], [w["shape"]], [w["trans"]])[0]
            cam = mano_vertices(layers[side], [m["pose"]], [m["shape"]], [m["trans"]])[0]
            np.testing.assert_allclose(cam, (world - c) @ r.T, atol=1e-3)
            joints = np.array(js["joint_cam"])[21 * h:21 * h + 21]
            valid = np.array(js["joint_valid"])[21 * h:21 * h + 21] > 0
            if valid.any():  # a hand can be out of this camera's view
                assert np.linalg.norm(reg @ cam - joints, axis=1)[valid].mean() < 12
                n += 1
    assert n > 20
    writer.convert_split("interhand", str(data), str(tmp_path / "plain"), "val", workers=1, progress=False)
    js = next(iter_shard_samples(str(tmp_path / "plain" / "val")))[1]
    assert js["mano_cam"] is None and js["mano"] == raw[str(js["capture"])][str(js["frame_idx"])]
    recs = [{"capture": 0, "frame_idx": 1, "camera": "1"}]
    ManoRecords(str(data), "train", world_source=False).annotate(recs)  # RHD / STB: no MANO file
    assert recs[0]["mano"] is None and recs[0]["mano_cam"] is None
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = shards_cli(["--source", "interhand", "--root", str(data), "--out", str(tmp_path / "bad"), "--splits",
                           "val", "--workers", "1", "--quiet", "--mano", str(tmp_path)])
    assert code == 2 and "MANO_RIGHT.pkl: MANO model file not found" in err.getvalue() and err.getvalue().count("\n") == 1
