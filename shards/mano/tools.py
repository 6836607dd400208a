"""The MANO tools on a split (python -m shards.mano ...): fitting error, the conversion check, and
mesh overlays. Each returns a dict (printing is the caller's business)."""
import os
import time

import numpy as np
from tqdm import tqdm

from .convert import convert_params, convert_params_original, fitting_error, points_to_camera, summarize
from .data import SplitAnnotations
from .model import SIDES, ManoError, build_layers, load_models, mano_vertices
from .render import COLOURS, overlay, write_obj, write_png

CHUNK = 2048  # hands per forward pass


def load_regressor(path, n_verts: int) -> np.ndarray:
    """The 21 x V InterHand joint regressor (.npy); a wrong shape is an error naming the file."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise ManoError(f"{path}: joint regressor file not found")
    try:
        reg = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise ManoError(f"{path}: not a numpy array file ({e})") from None
    if reg.shape != (21, n_verts) or not np.issubdtype(reg.dtype, np.number):
        raise ManoError(f"{path}: joint regressor of shape {reg.shape}, expected (21, {n_verts})")
    return reg.astype(np.float64)


def image_hands(ann: SplitAnnotations):
    """Every (image, hand) of the split that has MANO parameters: image index (M,), side index (M,),
    frame row (M,); and the count of images whose frame has no joint_3d / MANO entry."""
    img = ann.images
    rows = ann.frame_rows(img["capture"], img["frame_idx"])
    known = rows >= 0
    r = np.where(known, rows, 0)
    pres = ann.mano_present[r] & known[:, None]  # (I, 2)
    i, h = np.nonzero(pres)
    return i, h, rows[i], int((~known).sum())


def _cameras_of(ann, idx):
    caps, cams = ann.images["capture"][idx], [ann.images["camera"][k] for k in idx]
    c = [ann.camera(int(a), b) for a, b in zip(caps, cams)]
    return np.array([x["camrot"] for x in c]), np.array([x["campos"] for x in c]), c


def _forward(layers, models, side_idx, params, desc=None):
    """Vertices (M, V, 3) mm of hands given as side index (M,) and params (M, 61)."""
    n_verts = len(models["right"]["v_template"])
    out = np.empty((len(side_idx), n_verts, 3))
    for h, side in enumerate(SIDES):
        sel = np.flatnonzero(side_idx == h)
        if len(sel):
            p = params[sel]
            out[sel] = mano_vertices(layers[side], p[:, :48], p[:, 48:58], p[:, 58:61])
    return out


def fit_error(ann: SplitAnnotations, mano, regressor, device="cpu", worst=10, progress=True) -> dict:
    """The fitting error of the split's MANO parameters: per (image, hand), the 21 joints regressed
    from the MANO mesh against the annotated joints, both in that image's camera frame, mean over the
    valid joints (joint_3d's joint_valid) in mm."""
    models = load_models(mano)
    reg = load_regressor(regressor, len(models["right"]["v_template"]))
    layers = build_layers(models, device=device)
    i, h, r, unknown = image_hands(ann)
    # The regressed joints are computed once per (frame, hand) in the world and mapped to each camera.
    key = r * 2 + h
    uniq, inv = np.unique(key, return_inverse=True)
    ur, uh = uniq // 2, uniq % 2
    joints_world = np.empty((len(uniq), 21, 3))
    for a in tqdm(range(0, len(uniq), CHUNK), desc="MANO forward", unit="chunk", disable=not progress):
        s = slice(a, a + CHUNK)
        verts = _forward(layers, models, uh[s], ann.mano[ur[s], uh[s]])
        joints_world[s] = np.einsum("jv,nvk->njk", reg, verts)
    err = np.empty(len(i))
    for a in range(0, len(i), 1 << 16):  # in blocks: bounded memory on the 1.4M-image train split
        s = slice(a, a + (1 << 16))
        camrot, campos, _ = _cameras_of(ann, i[s])
        half = np.arange(21)[None] + 21 * h[s, None]  # (m, 21) joint indices of each hand
        gt = points_to_camera(ann.world[r[s, None], half], camrot, campos)
        pred = points_to_camera(joints_world[inv[s]], camrot, campos)
        valid = ann.joint_valid[r[s, None], half] & np.isfinite(gt).all(-1)
        err[s] = fitting_error(pred, gt, valid)
    summ = summarize(err, 0)
    # worst frames: the error is the same in every camera of a frame (a rigid map), list each once
    order = np.argsort(-np.nan_to_num(err, nan=-1.0), kind="stable")
    first = order[np.unique(key[order], return_index=True)[1]]
    first = first[np.argsort(-np.nan_to_num(err[first], nan=-1.0), kind="stable")][:worst]
    count = np.bincount(inv, minlength=len(uniq))
    rows = [dict(_row(ann, int(i[k]), int(h[k]), float(err[k])), images=int(count[inv[k]])) for k in first
            if np.isfinite(err[k])]
    absent = int((ann.joint_valid.reshape(-1, 2, 21).any(-1) & ~ann.mano_present).sum())
    return {"split": ann.split, "hands": int(len(err)), "frames": int(len(uniq)), "images": int(len(ann.images["id"])),
            "images_without_frame": unknown, "annotated_hands_without_mano": absent,
            "error_mm": {k: v for k, v in summ.items() if k != "worst"}, "worst": rows,
            "per_hand": {"image_id": ann.images["id"][i].tolist(), "hand": [SIDES[x] for x in h],
                         "error_mm": [None if not np.isfinite(e) else round(float(e), 4) for e in err]}}


def _row(ann, k, h, err):
    img = ann.images
    return {"image_id": int(img["id"][k]), "capture": int(img["capture"][k]), "frame": int(img["frame_idx"][k]),
            "camera": img["camera"][k], "hand": SIDES[h], "file_name": img["file_name"][k], "error_mm": round(err, 4)}


def conversion_check(ann: SplitAnnotations, mano, regressor, device="cpu", limit=None, seed=0,
                     progress=True) -> dict:
    """Per (image, hand): the largest vertex distance between (a) the world mesh moved into the camera
    and (b) the mesh of the converted parameters, and the offset of the original script's conversion
    (pivot on the regressed wrist) from (b), in mm."""
    models = load_models(mano)
    reg = load_regressor(regressor, len(models["right"]["v_template"]))
    layers = build_layers(models, device=device)
    i, h, r, _ = image_hands(ann)
    if limit is not None and limit < len(i):
        pick = np.sort(np.random.default_rng(seed).choice(len(i), limit, replace=False))
        i, h, r = i[pick], h[pick], r[pick]
    ab, orig = np.empty(len(i)), np.empty(len(i))
    for a in tqdm(range(0, len(i), CHUNK), desc="conversion", unit="chunk", disable=not progress):
        s = slice(a, a + CHUNK)
        camrot, campos, _ = _cameras_of(ann, i[s])
        p = ann.mano[r[s], h[s]]
        mesh_a = points_to_camera(_forward(layers, models, h[s], p), camrot, campos)
        cam_p = p.copy()
        for side_i, side in enumerate(SIDES):
            sel = np.flatnonzero(h[s] == side_i)
            if len(sel):
                pose, trans = convert_params(models[side], p[sel, :48], p[sel, 48:58], p[sel, 58:],
                                             camrot[sel], campos[sel])
                cam_p[sel, :48], cam_p[sel, 58:] = pose, trans
        mesh_b = _forward(layers, models, h[s], cam_p)
        ab[s] = np.abs(mesh_a - mesh_b).max((1, 2))
        no_trans = cam_p.copy()
        no_trans[:, 58:] = 0
        wrist = np.einsum("v,nvk->nk", reg[20], _forward(layers, models, h[s], no_trans)) / 1000.0
        t_orig = convert_params_original(p[:, 58:], camrot, campos, wrist)
        orig[s] = np.linalg.norm(t_orig - cam_p[:, 58:], axis=1) * 1000.0
    return {"split": ann.split, "hands": int(len(i)),
            "a_vs_b_max_vertex_mm": {"mean": float(ab.mean()), "max": float(ab.max())} if len(i) else None,
            "original_pivot_offset_mm": summarize(orig, 0) if len(i) else None}


def select_images(ann: SplitAnnotations, capture=None, camera=None, seq=None, frame=None, frames=None,
                  random=None, seed=0) -> np.ndarray:
    """Image indices: one frame (capture, camera, frame), a sequence/camera (capture, camera [, seq]),
    or `random` images (optionally within a capture / camera)."""
    img, data = ann.images, ann.file("data")
    sel = np.ones(len(img["id"]), bool)
    if capture is not None:
        if camera is not None:
            ann.camera(capture, camera)  # unknown capture or camera: an error naming camera.json
        elif str(capture) not in {c for c, _ in ann.cameras}:
            raise ManoError(f"{ann.file('camera')}: capture {capture}: not in the file")
        sel &= img["capture"] == int(capture)
    if camera is not None:
        sel &= np.array([c == str(camera) for c in img["camera"]])
    if seq is not None:
        sel &= np.array([s == seq for s in img["seq_name"]])
        if not sel.any():
            raise ManoError(f"{data}: field 'seq_name': no image of sequence {seq!r} with these filters")
    if frame is not None:
        sel &= img["frame_idx"] == int(frame)
        if not sel.any():
            raise ManoError(f"{data}: field 'frame_idx': no image of frame {frame} with these filters")
    idx = np.flatnonzero(sel)
    if random is not None:
        return np.sort(np.random.default_rng(seed).choice(idx, min(random, len(idx)), replace=False))
    if capture is None or camera is None:
        raise ManoError("render: give --capture and --camera (a frame or a sequence/camera), or --random N")
    idx = idx[np.argsort(img["frame_idx"][idx], kind="stable")]
    return idx[:frames] if frames else idx


def render_images(ann: SplitAnnotations, mano, idx, out_dir, device="cpu", obj=True, progress=True) -> dict:
    """Both hands' meshes over each selected image -> OUT/<capture>_<seq>_cam<camera>_<frame>.png
    (and .._right.obj / .._left.obj in the camera frame, mm)."""
    import simplejpeg

    models = load_models(mano)
    layers = build_layers(models, device=device)
    img = ann.images
    rows = ann.frame_rows(img["capture"][idx], img["frame_idx"][idx])
    written, skipped, seconds = [], [], 0.0
    for k, r in tqdm(list(zip(idx, rows)), desc="render", unit="img", disable=not progress):
        name = f"{img['capture'][k]}_{img['seq_name'][k]}_cam{img['camera'][k]}_{img['frame_idx'][k]}"
        sides = [h for h in range(2) if r >= 0 and ann.mano_present[r, h]]
        if not sides:
            if len(idx) == 1:
                raise ManoError(f"{ann.file('MANO_NeuralAnnot')}: capture {img['capture'][k]} frame "
                                f"{img['frame_idx'][k]}: field 'right' / 'left': no MANO parameters")
            skipped.append(name)
            continue
        path = os.path.join(ann.root, "images", ann.split, img["file_name"][k])
        try:
            with open(path, "rb") as f:
                pic = simplejpeg.decode_jpeg(f.read(), colorspace="RGB")
        except OSError as e:
            raise ManoError(f"{path}: cannot read the image ({e.strerror})") from None
        t0 = time.perf_counter()
        cam = ann.camera(int(img["capture"][k]), img["camera"][k])
        h = np.array(sides)
        verts = _forward(layers, models, h, ann.mano[r, h])
        verts = points_to_camera(verts, np.repeat(cam["camrot"][None], len(h), 0), np.repeat(cam["campos"][None], len(h), 0))
        meshes = [(verts[j], models[SIDES[s]]["f"], COLOURS[SIDES[s]]) for j, s in enumerate(sides)]
        out, _, _ = overlay(pic, meshes, cam["focal"], cam["princpt"])
        seconds += time.perf_counter() - t0
        write_png(os.path.join(out_dir, name + ".png"), out)
        if obj:
            for j, s in enumerate(sides):
                write_obj(os.path.join(out_dir, f"{name}_{SIDES[s]}.obj"), verts[j], models[SIDES[s]]["f"])
        written.append(name + ".png")
    return {"written": written, "skipped_without_mano": skipped, "out": os.path.abspath(out_dir),
            "seconds_per_frame": seconds / max(len(written), 1)}
