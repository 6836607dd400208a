"""Single-image demo (the original's demo/demo.py): crop, run InterNet, draw both hands.

    python -m eval.demo --checkpoint CKPT --image IMG [--bbox X Y W H] --out DIR
        [--focal FX FY] [--princpt CX CY] [--root-depth MM] [--device cpu|cuda]

The bbox (default: the whole image) is processed as SPEC 3.1 and cropped without augmentation; the
model's joints go back to image pixels through the inverse crop, depths to mm relative to each hand's
root, and the left hand is placed at the predicted relative root depth (right root depth 0), as the
original. Camera-space mm additionally need intrinsics and the right root's depth, which a single
image does not give: they are assumptions (--focal, default 1500 px as RootNet's demo; --princpt,
default the image centre; --root-depth, default the RootNet-style estimate sqrt(fx fy A_real / A_bbox)
with a 300 x 300 mm hand extent), and are written to the JSON as such.
Writes OUT/result_2d.png (skeletons of the hands the hand-type output says are present),
OUT/result_3d.png (their joints in mm relative to the right root) and OUT/result.json.
"""
import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F

from shards.geometry import process_bbox
from shards.skeleton import JOINT_NAMES, NUM_JOINTS

from . import convert, plots
from .io import write_json

DEFAULT_FOCAL = 1500.0
HAND_EXTENT_MM = 300.0


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


def run(model, config, image: np.ndarray, bbox=None, device="cpu", focal=None, princpt=None, root_depth=None,
        decode=None) -> dict:
    """Everything the demo computes, as arrays (see the module docstring)."""
    if decode is None:
        from model import decode
    h, w = image.shape[:2]
    raw = np.array([0.0, 0.0, w, h]) if bbox is None else np.asarray(bbox, dtype=np.float64)
    if raw.shape != (4,) or raw[2] <= 0 or raw[3] <= 0:
        raise ValueError(f"--bbox must be X Y W H with W, H > 0, got {raw.tolist()}")
    box = process_bbox(raw).astype(np.float64)
    patch, inv = crop(image, box, config.input_size)
    model.eval()
    with torch.inference_mode():
        out = model(patch.to(device))
        bins = decode(out["heatmaps"]).float().cpu().numpy()  # (1, 42, 3)
        rel_bins = out["rel_root_depth"].float().cpu().numpy().reshape(1)
        prob = out["hand_type"].float().cpu().numpy()[0]
    img = convert.bins_to_image(bins, inv[None], config.input_size, config.heatmap_size)[0]  # u, v, z_rel own root
    rel_mm = float(convert.rel_root_to_mm(rel_bins, config.root_bins)[0])
    f = np.full(2, DEFAULT_FOCAL) if focal is None else np.asarray(focal, dtype=np.float64)
    c = np.array([w / 2.0, h / 2.0]) if princpt is None else np.asarray(princpt, dtype=np.float64)
    if root_depth is None:  # RootNet's k value: the depth at which a 300 mm square spans the bbox
        root_depth = float(np.sqrt(f[0] * f[1] * HAND_EXTENT_MM ** 2 / (box[2] * box[3])))
    cam = convert.image_to_camera(img[None], np.array([[root_depth, root_depth + rel_mm]]), f[None], c[None])[0]
    present = prob > 0.5
    return {"bbox_raw": raw, "bbox": box, "joint_img": img, "rel_root_depth_mm": rel_mm, "hand_prob": prob,
            "present": present, "joint_cam_rel": cam - cam[20], "focal": f, "princpt": c,
            "root_depth": float(root_depth)}


def write_outputs(res: dict, image: np.ndarray, out: str, image_name: str) -> list:
    os.makedirs(out, exist_ok=True)
    valid = np.concatenate([np.full(21, res["present"][0]), np.full(21, res["present"][1])])
    fig = plots.plt.figure(figsize=(image.shape[1] / 100, image.shape[0] / 100), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(image)
    ax.axis("off")
    plots.draw_skeleton(ax, res["joint_img"][:, :2], valid)
    p2 = plots.save_figure(fig, os.path.join(out, "result_2d.png"))
    p3 = plots.skeleton_3d(res["joint_cam_rel"], valid, os.path.join(out, "result_3d.png"),
                           title="joints relative to the right root (assumed intrinsics and depth)",
                           units=("x (mm)", "y (mm)", "z (mm)"))
    joints = [{"name": JOINT_NAMES[j], "hand": "right" if j < 21 else "left", "present": bool(valid[j]),
               "u_px": float(res["joint_img"][j, 0]), "v_px": float(res["joint_img"][j, 1]),
               "depth_rel_own_root_mm": float(res["joint_img"][j, 2]),
               "xyz_rel_right_root_mm": [float(v) for v in res["joint_cam_rel"][j]]} for j in range(NUM_JOINTS)]
    doc = {"image": image_name, "bbox": [float(v) for v in res["bbox_raw"]],
           "bbox_processed": [float(v) for v in res["bbox"]],
           "hand_presence": {"right": bool(res["present"][0]), "left": bool(res["present"][1]),
                             "right_prob": float(res["hand_prob"][0]), "left_prob": float(res["hand_prob"][1])},
           "rel_root_depth_mm": res["rel_root_depth_mm"],
           "assumed": {"focal_px": res["focal"].tolist(), "princpt_px": res["princpt"].tolist(),
                       "right_root_depth_mm": res["root_depth"]},
           "joints": joints}
    pj = write_json(os.path.join(out, "result.json"), doc)
    return [p2, p3, pj]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m eval.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--bbox", type=float, nargs=4, metavar=("X", "Y", "W", "H"), help="default: the whole image")
    ap.add_argument("--out", required=True)
    ap.add_argument("--focal", type=float, nargs=2, help=f"assumed focal length px (default {DEFAULT_FOCAL:g})")
    ap.add_argument("--princpt", type=float, nargs=2, help="assumed principal point px (default: image centre)")
    ap.add_argument("--root-depth", type=float, help="assumed right root depth mm (default: from the bbox size)")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    from model import load_checkpoint

    ck = load_checkpoint(a.checkpoint, map_location=a.device)
    image = plots.decode_image(a.image)
    res = run(ck.model, ck.config, image, a.bbox, a.device, a.focal, a.princpt, a.root_depth)
    paths = write_outputs(res, image, a.out, os.path.abspath(a.image))
    print(f"right hand present: {bool(res['present'][0])} (p={res['hand_prob'][0]:.3f}), left hand present: "
          f"{bool(res['present'][1])} (p={res['hand_prob'][1]:.3f}); relative root depth "
          f"{res['rel_root_depth_mm']:.1f} mm")
    print("wrote " + ", ".join(paths))
    return res


if __name__ == "__main__":
    main()
