"""Single-image demo (the original's demo/demo.py): find the hands, crop, run InterNet, draw both hands.

    python -m eval.demo --checkpoint CKPT --image IMG --out DIR [--bbox X Y W H]
        [--focal FX FY] [--princpt CX CY] [--root-depth MM] [--detect-confidence P] [--device cpu|cuda]
        [--debug]

Without --bbox the hands are found by MediaPipe's hand detector (the optional extra `.[detect]`; see
eval.detect) and the bbox is the one InterHand2.6M's annotations would give them: the tight box of the
detected keypoints of all hands found, x1.2 about its centre. No hand found: an error naming the image.
--bbox X Y W H (image pixels) replaces the detector. Either bbox is then processed (docs/conventions.md
§3.1: aspect ratio, x1.25) and cropped without augmentation; the model's joints go back to image pixels through the
inverse crop, depths to mm relative to each hand's root, and the left hand is placed at the predicted
relative root depth (right root depth 0), as the original. Camera-space mm additionally need intrinsics
and the right root's depth, which a single image does not give: they are assumptions (--focal, default
1500 px as RootNet's demo; --princpt, default the image centre; --root-depth, default the RootNet-style
estimate sqrt(fx fy A_real / A_bbox) with a 300 x 300 mm hand extent), written to the JSON as such.

Writes, all or none (every file is made in a temporary folder inside DIR, then moved into place):
OUT/result_2d.png (the skeletons of the hands the hand-type output says are present, and the crop),
OUT/result_3d.png (their joints in mm relative to the right root), OUT/result_3d.html (the same, both
hands, interactive, self-contained: opens offline) and OUT/result.json. Every input is checked before any
work; a bad one ends in one line naming it and exit status 1 (--debug: the traceback).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from shards.atomic import atomic_write, atomic_write_bytes, atomic_write_files
from shards.geometry import process_bbox
from shards.skeleton import JOINT_NAMES, NUM_JOINTS

from . import convert, plots

DEFAULT_FOCAL = 1500.0
HAND_EXTENT_MM = 300.0
OUTPUTS = ("result_2d.png", "result_3d.png", "result_3d.html", "result.json")


class DemoError(Exception):
    """A bad input or an unusable result, said in one line."""


def crop(image: np.ndarray, bbox, size: int):
    """(H, W, 3) uint8 -> (1, 3, size, size) float [0, 1] patch of the processed bbox (bilinear, zero
    outside, OpenCV pixel centres) and the (2, 3) patch -> image affine."""
    inv = convert.crop_inv_trans(np.asarray(bbox, dtype=np.float64)[None], size)[0]
    j, i = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    src_x = inv[0, 0] * j + inv[0, 1] * i + inv[0, 2]
    src_y = inv[1, 0] * j + inv[1, 1] * i + inv[1, 2]
    h, w = image.shape[:2]
    grid = np.stack([src_x / max(w - 1, 1) * 2 - 1, src_y / max(h - 1, 1) * 2 - 1], axis=-1)
    img = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0
    patch = F.grid_sample(img, torch.from_numpy(grid)[None].float(), mode="bilinear", padding_mode="zeros",
                          align_corners=True)
    return patch, inv


def check_inputs(bbox=None, focal=None, princpt=None, root_depth=None, image_size=None) -> None:
    """ValueError naming the option when an assumption is unusable; with image_size (W, H), also when
    the bbox does not overlap the image (a crop of black border would still 'find' a hand)."""
    def vec(v):
        return None if v is None else np.asarray(v, dtype=np.float64).reshape(-1)

    b, f, c = vec(bbox), vec(focal), vec(princpt)
    if b is not None and (b.shape != (4,) or not np.all(np.isfinite(b)) or b[2] <= 0 or b[3] <= 0):
        raise ValueError(f"--bbox must be 4 finite numbers X Y W H with W, H > 0, got {np.ravel(bbox).tolist()}")
    if f is not None and (f.shape != (2,) or not np.all(np.isfinite(f)) or np.any(f <= 0)):
        raise ValueError(f"--focal must be 2 finite numbers > 0 (pixels), got {np.ravel(focal).tolist()}")
    if c is not None and (c.shape != (2,) or not np.all(np.isfinite(c))):
        raise ValueError(f"--princpt must be 2 finite numbers (pixels), got {np.ravel(princpt).tolist()}")
    if root_depth is not None and not 0 < float(root_depth) < np.inf:
        raise ValueError(f"--root-depth must be a finite number > 0 (mm), got {root_depth}")
    if b is not None and image_size is not None:
        w, h = image_size
        if not (b[0] < w and b[1] < h and b[0] + b[2] > 0 and b[1] + b[3] > 0):
            raise ValueError(f"--bbox {b.tolist()} does not overlap the {w}x{h} image")


def run(model, config, image: np.ndarray, bbox=None, device="cpu", focal=None, princpt=None, root_depth=None,
        decode=None) -> dict:
    """Everything the demo computes, as arrays (see the module docstring). bbox: the raw [x, y, w, h]
    (an annotation's, the detector's or the user's; default the whole image), processed here."""
    if decode is None:
        from model import decode
    h, w = image.shape[:2]
    raw = np.array([0.0, 0.0, w, h]) if bbox is None else np.asarray(bbox, dtype=np.float64)
    check_inputs(raw, focal, princpt, root_depth, image_size=(w, h))
    box = process_bbox(raw).astype(np.float64)
    patch, inv = crop(image, box, config.input_size)
    model.eval()
    with torch.inference_mode():
        out = model(patch.to(device))
        bins = decode(out["heatmaps"]).float().cpu().numpy()  # (1, 42, 3)
        rel_bins = out["rel_root_depth"].float().cpu().numpy().reshape(1)
        prob = out["hand_type"].float().cpu().numpy()[0]
        finite = all(bool(torch.isfinite(v).all()) for v in out.values())
    if not finite:
        raise DemoError("the model's outputs are not finite (NaN/inf in the checkpoint's weights?)")
    img = convert.bins_to_image(bins, inv[None], config.input_size, config.heatmap_size,
                                config.depth_range_mm)[0]  # u, v, z_rel own root
    rel_mm = float(convert.rel_root_to_mm(rel_bins, config.root_bins, config.root_depth_range_mm)[0])
    f = np.full(2, DEFAULT_FOCAL) if focal is None else np.asarray(focal, dtype=np.float64)
    c = np.array([w / 2.0, h / 2.0]) if princpt is None else np.asarray(princpt, dtype=np.float64)
    given = "--root-depth" if root_depth is not None else "the right root depth estimated from the bbox,"
    if root_depth is None:  # RootNet's k value: the depth at which a 300 mm square spans the bbox
        root_depth = float(np.sqrt(f[0] * f[1] * HAND_EXTENT_MM ** 2 / (box[2] * box[3])))
    if root_depth + rel_mm <= 0:  # the back-projection would mirror the left hand through the camera
        raise ValueError(f"{given} {root_depth:g} mm puts the left root at {root_depth + rel_mm:g} mm (the predicted "
                         f"relative root depth is {rel_mm:g} mm): behind the camera; give a larger --root-depth")
    cam = convert.image_to_camera(img[None], np.array([[root_depth, root_depth + rel_mm]]), f[None], c[None])[0]
    present = prob > 0.5
    return {"bbox_raw": raw, "bbox": box, "joint_img": img, "rel_root_depth_mm": rel_mm, "hand_prob": prob,
            "present": present, "joint_cam_rel": cam - cam[20], "focal": f, "princpt": c,
            "root_depth": float(root_depth)}


def result_doc(res: dict, image_name: str, detection=None) -> dict:
    """result.json: the bbox and where it came from, hand presence, assumptions, the 42 joints."""
    valid = np.repeat(res["present"], 21)
    joints = [{"name": JOINT_NAMES[j], "hand": "right" if j < 21 else "left", "present": bool(valid[j]),
               "u_px": float(res["joint_img"][j, 0]), "v_px": float(res["joint_img"][j, 1]),
               "depth_rel_own_root_mm": float(res["joint_img"][j, 2]),
               "xyz_rel_right_root_mm": [float(v) for v in res["joint_cam_rel"][j]]} for j in range(NUM_JOINTS)]
    det = None
    if detection is not None:
        from .detect import ANNOT_BBOX_SCALE, DETECTOR

        det = {"detector": DETECTOR, "min_confidence": detection["min_confidence"],
               "bbox_rule": f"tight box of all keypoints x {ANNOT_BBOX_SCALE} about its centre",
               "hands": [{"handedness": side, "score": score,
                          "keypoints_px": [[float(u), float(v)] for u, v in kp],
                          "keypoint_names": [n[2:] for n in JOINT_NAMES[:21]]}
                         for kp, side, score in zip(detection["hands"].keypoints, detection["hands"].handedness,
                                                    detection["hands"].scores)]}
    return {"image": image_name, "bbox_source": "--bbox" if detection is None else "detector",
            "bbox": [float(v) for v in res["bbox_raw"]], "bbox_processed": [float(v) for v in res["bbox"]],
            "detection": det,
            "hand_presence": {"right": bool(res["present"][0]), "left": bool(res["present"][1]),
                              "right_prob": float(res["hand_prob"][0]), "left_prob": float(res["hand_prob"][1])},
            "rel_root_depth_mm": res["rel_root_depth_mm"],
            "assumed": {"focal_px": res["focal"].tolist(), "princpt_px": res["princpt"].tolist(),
                        "right_root_depth_mm": res["root_depth"]},
            "joints": joints}


def write_outputs(res: dict, image: np.ndarray, out: str, image_name: str, detection=None) -> list:
    """All of OUTPUTS or none: each is written into a temporary folder in `out`, then moved in."""
    from .view3d import hands_html

    valid = np.repeat(res["present"], 21)
    doc = result_doc(res, image_name, detection)  # refuses NaN/inf below, before any file exists
    data = (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode()
    p = res["hand_prob"]
    html = hands_html(res["joint_cam_rel"], res["present"], p, "joints relative to the right root, camera mm "
                      f"(assumed intrinsics and depth); right p={p[0]:.2f}, left p={p[1]:.2f}").encode()

    def overlay(path):
        fig = plots.plt.figure(figsize=(image.shape[1] / 100, image.shape[0] / 100), dpi=100)
        ax = fig.add_axes([0, 0, 1, 1])
        ax.imshow(image)
        ax.axis("off")
        x, y, bw, bh = res["bbox"]
        ax.add_patch(plots.plt.Rectangle((x, y), bw, bh, fill=False, ls="--", lw=0.8, color="white"))
        plots.draw_skeleton(ax, res["joint_img"][:, :2], valid)
        ax.set_xlim(-0.5, image.shape[1] - 0.5)
        ax.set_ylim(image.shape[0] - 0.5, -0.5)
        try:
            atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=fig.dpi), fsync=False)
        finally:
            plots.plt.close(fig)

    writers = {
        "result_2d.png": overlay,
        "result_3d.png": lambda path: plots.skeleton_3d(
            res["joint_cam_rel"], valid, path, title="joints relative to the right root (assumed intrinsics "
            "and depth)", units=("x (mm)", "y (mm)", "z (mm)")),
        "result_3d.html": lambda path: atomic_write_bytes(path, html, fsync=False),
        "result.json": lambda path: atomic_write_bytes(path, data, fsync=False),
    }
    return commit_files(out, writers)


def commit_files(out: str, writers: dict) -> list:
    """shards.atomic.atomic_write_files, with a failed write named as the output it was for."""
    try:
        return atomic_write_files(out, writers)
    except OSError as e:  # a full disk, a quota, ...: name the output, not the temporary file
        raise DemoError(f"{getattr(e, 'output', out)}: cannot write ({e.strerror or e})") from e


def _parse(argv):
    ap = argparse.ArgumentParser(prog="python -m eval.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bbox", type=float, nargs=4, metavar=("X", "Y", "W", "H"),
                    help="the hands' box in image pixels (default: found by the hand detector)")
    ap.add_argument("--focal", type=float, nargs=2, help=f"assumed focal length px (default {DEFAULT_FOCAL:g})")
    ap.add_argument("--princpt", type=float, nargs=2, help="assumed principal point px (default: image centre)")
    ap.add_argument("--root-depth", type=float, help="assumed right root depth mm (default: from the bbox size)")
    ap.add_argument("--detect-confidence", type=float, default=None,
                    help="the detector's minimum palm score, in [0, 1] (default 0.5)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--debug", action="store_true", help="show tracebacks and the detector's own log")
    return ap.parse_args(argv)


def _load_image(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise DemoError(f"{path}: " + ("a folder, not an image file" if os.path.isdir(path) else "no such image file"))
    if os.path.getsize(path) == 0:
        raise DemoError(f"{path}: the image file is empty")
    try:
        image = plots.decode_image(path)
    except Exception as e:  # PIL: unidentified, truncated, decompression bomb, ...
        raise DemoError(f"{path}: cannot read the image ({_one_line(e)})") from None
    if image.ndim != 3 or min(image.shape[:2]) < 1:
        raise DemoError(f"{path}: empty image of shape {image.shape}")
    return image


def _load_checkpoint(path: str, device: str):
    from model import load_checkpoint

    if not os.path.isfile(path):
        raise DemoError(f"{path}: no such checkpoint file")
    if os.path.getsize(path) == 0:
        raise DemoError(f"{path}: the checkpoint file is empty")
    try:
        return load_checkpoint(path, map_location=device)
    except Exception as e:  # empty, truncated, not a checkpoint, not an InterNet, ...
        msg = _one_line(e)
        raise DemoError(msg if path in msg else f"{path}: cannot load the checkpoint ({msg})") from None


def _one_line(e: BaseException) -> str:
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return (lines[0] if lines else type(e).__name__)[:500]


def demo(a) -> dict:
    """The whole command on parsed arguments; DemoError / ValueError for bad input."""
    from .detect import DEFAULT_MIN_CONFIDENCE, annotation_bbox, detect_hands

    try:  # the numbers first: no work is done on an input that cannot be used
        check_inputs(a.bbox, a.focal, a.princpt, a.root_depth)
    except ValueError as e:
        raise DemoError(str(e)) from None
    conf = DEFAULT_MIN_CONFIDENCE if a.detect_confidence is None else a.detect_confidence
    if not 0.0 <= conf <= 1.0:
        raise DemoError(f"--detect-confidence must be in [0, 1], got {conf}")
    if a.bbox is not None and a.detect_confidence is not None:
        raise DemoError("--detect-confidence applies to the detector, which --bbox replaces: give one of them")
    try:
        dev = torch.device(a.device)
    except RuntimeError as e:
        raise DemoError(f"--device {a.device}: {_one_line(e)}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DemoError(f"--device {a.device}: no CUDA device is available")
    if os.path.exists(a.out) and not os.path.isdir(a.out):
        raise DemoError(f"--out {a.out} exists and is not a folder")
    image = _load_image(a.image)
    h, w = image.shape[:2]
    if a.bbox is not None:
        try:
            check_inputs(a.bbox, image_size=(w, h))
        except ValueError as e:
            raise DemoError(f"{e} {a.image}") from None
    ck = _load_checkpoint(a.checkpoint, a.device)
    detection, bbox = None, a.bbox
    if bbox is None:
        hands = detect_hands(image, conf, quiet=not a.debug)
        if len(hands.keypoints) == 0:
            raise DemoError(f"no hand found in {a.image} (hand detector, minimum confidence {conf:g}); "
                            "pass --bbox X Y W H, or a lower --detect-confidence")
        detection = {"hands": hands, "min_confidence": conf}
        bbox = annotation_bbox(hands.keypoints)
    try:
        res = run(ck.model, ck.config, image, bbox, a.device, a.focal, a.princpt, a.root_depth)
    except DemoError as e:
        raise DemoError(f"{a.checkpoint}: {e}") from None
    except ValueError as e:
        raise DemoError(str(e)) from None
    paths = write_outputs(res, image, a.out, os.path.abspath(a.image), detection)
    if detection is not None:
        found = ", ".join(f"{s} ({p:.2f})" for s, p in zip(detection["hands"].handedness, detection["hands"].scores))
        print(f"detector: {len(detection['hands'].handedness)} hand(s) in {a.image}: {found}; bbox "
              + " ".join(f"{v:.1f}" for v in res["bbox_raw"]))
    print(f"right hand present: {bool(res['present'][0])} (p={res['hand_prob'][0]:.3f}), left hand present: "
          f"{bool(res['present'][1])} (p={res['hand_prob'][1]:.3f}); relative root depth "
          f"{res['rel_root_depth_mm']:.1f} mm")
    print("wrote " + ", ".join(paths))
    return res


def main(argv=None):
    a = _parse(argv)
    try:
        return demo(a)
    except Exception as e:
        if a.debug:
            raise
        from .detect import DetectorUnavailable

        known = isinstance(e, (DemoError, DetectorUnavailable))
        print(f"eval.demo: error: {e}" if known else
              f"eval.demo: error: {type(e).__name__}: {_one_line(e)} (--debug for the traceback)", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
