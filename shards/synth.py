"""Synthetic InterHand2.6M (and RHD / STB) data set generator: the project's embedded data set.

Run:
    python -m shards.synth --out DIR [--seed 0] [--size tiny|small|medium]
                           [--format interhand|rhd|stb] [--workers N]
or call `generate(out_dir, size, seed, fmt)`. The same seed gives byte-identical files whatever the
number of workers. Hands are drawn by shards.render from the kinematic model of shards.handmodel.

--format interhand: DIR is the InterHand2.6M v1.0 root (SPEC section 1):
    images/{train,val,test}/Capture<c>/<seq>/cam<cam>/image<frame>.jpg
    annotations/skeleton.txt
    annotations/{split}/InterHand2.6M_{split}_{data,camera,joint_3d,MANO_NeuralAnnot}.json
    rootnet_output/rootnet_interhand2.6m_output_{val,test}.json
Capture numbers restart in each split; image and annotation ids too (annotation id == image id).
A single-hand frame keeps the other hand in joint_3d with all its joints invalid and world
coordinates 0, and its MANO entry null.

--format rhd / stb: DIR is the folder the original code calls its data root (`data/RHD/data`,
`data/STB/data`); layouts as read by the original data/RHD/dataset.py and data/STB/dataset.py:
    RHD: DIR/RHD_{training,evaluation}.json, DIR/{training,evaluation}/color/<file_name>,
         DIR/skeleton.txt; 320x320 images. (The original reads RootNet output from
         DIR/../rootnet_output/rootnet_rhd_output.json; not written here.)
    STB: DIR/STB_{train,test}.json, DIR/images/<seq_name>/<file_name> (seq_name from the image
         entry, e.g. B1Counting; test = B1*, train = B2*-B6*), DIR/skeleton.txt; 640x480 images.
    COCO json: images[] {id, file_name, width, height, cam_param {focal [fx, fy], princpt [cx, cy]}
    (+ seq_name for STB)}; annotations[] {id, image_id, bbox [x, y, w, h], joint_img 21x2 px,
    joint_cam 21x3 mm (camera space; there is no extrinsic), joint_valid 21 (flat list of 0/1),
    hand_type 'right'|'left'} (no hand_type_valid: the original treats it as 1).
    Joint order of the 21: wrist 0, then thumb tip..base (1-4), index (5-8), middle, ring, pinky
    (17-20), i.e. rhd21[k] = interhand21[ONE_HAND_PERM[k]] with ONE_HAND_PERM = [20, 0, 1, ..., 19].
    The original puts the 21 joints into a 42-joint array at 21..41 for a right hand and 0..20 for
    a left one (roots 21 and 0); skeleton.txt lists those 42 joints (left half first).
    Real RHD / STB images are PNG (e.g. 00000.png, SK_color_0.png); the synthetic ones are JPEG.
"""
import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import simplejpeg
from tqdm import tqdm

from . import handmodel as hm
from .atomic import atomic_write_bytes
from .geometry import process_bbox
from .render import Look, random_look, random_skin, render
from .skeleton import JOINT_NAMES, parents

SPLITS = ("train", "val", "test")
# per split: (captures, cameras per capture, sequences per capture, frames per sequence)
SIZES = {
    "tiny": {"train": (2, 3, 3, 4), "val": (1, 3, 3, 3), "test": (1, 3, 3, 3)},
    "small": {"train": (4, 6, 6, 12), "val": (1, 6, 6, 10), "test": (2, 6, 6, 10)},
    "medium": {"train": (6, 8, 9, 20), "val": (2, 8, 9, 10), "test": (2, 8, 9, 10)},
}
JPEG_QUALITY = 90
MIN_VALID_JOINTS = 4  # a camera view with fewer valid joints gets no image
LANDSCAPE, PORTRAIT = (512, 334), (334, 512)


@dataclass(frozen=True)
class Task:
    """One picture to render: where to write it and everything the renderer needs."""
    path: str
    joints_cam: np.ndarray  # (42, 3) mm
    present: tuple  # (right, left) drawn
    focal: tuple
    princpt: tuple
    width: int
    height: int
    look: Look


def render_task(task: Task) -> np.ndarray:
    """The picture of a task, (H, W, 3) uint8 (what the generator encodes into its JPEG)."""
    img, _ = render(task.joints_cam, task.present, task.focal, task.princpt, task.width, task.height,
                    task.look)
    return img


def _write_task(task: Task) -> int:
    data = simplejpeg.encode_jpeg(np.ascontiguousarray(render_task(task)), quality=JPEG_QUALITY,
                                  colorspace="RGB")
    _atomic_write(task.path, data)
    return len(data)


def _atomic_write(path, data: bytes):
    atomic_write_bytes(path, data, fsync=False)  # thousands of small files: rename, no fsync


def write_json(path, obj):
    """Compact JSON, written to a temporary file and renamed (atomic)."""
    _atomic_write(path, json.dumps(obj, separators=(",", ":")).encode())


def write_skeleton(path, names, parent):
    lines = ["# joint_name joint_id parent_joint_id"]
    lines += [f"{n} {i} {int(p)}" for i, (n, p) in enumerate(zip(names, parent))]
    _atomic_write(path, ("\n".join(lines) + "\n").encode())


def look_at(campos, target, roll, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World->camera rotation (rows: image right, image down, forward) of a camera at campos
    looking at target, rolled by `roll` radians about its axis."""
    fwd = target - campos
    fwd = fwd / np.linalg.norm(fwd)
    up = np.asarray(up, dtype=np.float64)
    down = -(up - (up @ fwd) * fwd)
    down /= np.linalg.norm(down)
    right = np.cross(down, fwd)
    c, s = np.cos(roll), np.sin(roll)
    return np.stack([c * right + s * down, -s * right + c * down, fwd])


def project(world, camrot, campos, focal, princpt):
    """(..., 3) world mm -> camera mm and (..., 2) pixels (SPEC 2)."""
    cam = (world - campos) @ camrot.T
    z = cam[..., 2:3]
    return cam, cam[..., :2] / np.where(np.abs(z) < 1e-6, 1e-6, z) * focal + princpt


def padded_bbox(uv, valid, width, height):
    """The tight box of the valid joints grown by 10 % of its size plus 8 px a side, clipped to
    the image: [x, y, w, h]."""
    p = uv[valid.astype(bool)]
    lo, hi = p.min(0), p.max(0)
    pad = 0.1 * (hi - lo) + 8.0
    lo = np.maximum(lo - pad, 0.0)
    hi = np.minimum(hi + pad, [width - 1.0, height - 1.0])
    return [round(float(lo[0]), 2), round(float(lo[1]), 2), round(float(hi[0] - lo[0]), 2),
            round(float(hi[1] - lo[1]), 2)]


def _cameras(rng, n, centre):
    cams = {}
    for k in range(n):
        w, h = PORTRAIT if k % 3 == 2 else LANDSCAPE
        az = 2 * np.pi * k / n + rng.uniform(-0.4, 0.4)
        el = np.radians(rng.uniform(-25, 55))
        dist = rng.uniform(600, 1000)
        pos = centre + dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        rot = look_at(pos, centre + rng.normal(0, 25, 3), np.radians(rng.uniform(-25, 25)))
        f = rng.normal(1270, 25)
        cams[str(400002 + 2 * k + 100 * (k // 4))] = {
            "campos": np.round(pos, 4), "camrot": np.round(rot, 8),
            "focal": np.round([f, f * rng.normal(1, 0.002)], 4),
            "princpt": np.round([w / 2 + rng.normal(0, 4), h / 2 + rng.normal(0, 4)], 4), "size": (w, h)}
    return cams


def _sequence(rng, hand_type, n_frames, centre, scale):
    """World joints (T, 42, 3), per-hand angles and wrist rotations/positions of one sequence."""
    t = np.linspace(0.0, 1.0, n_frames)
    keys = [str(g) for g in rng.choice(list(hm.GESTURES), size=int(rng.integers(2, 5)))]
    if hand_type == "interacting":
        rot_r, rot_l, pos_r, pos_l = hm.pair_frames(rng)
        base = {"right": (rot_r, pos_r), "left": (rot_l, pos_l)}
    else:
        base = {hand_type: (hm.random_frame(rng), rng.normal(0, 30, 3))}
    world = np.zeros((n_frames, 42, 3))
    hands = {}
    drift = rng.normal(0, 25, 3)
    for side, (rot0, pos0) in base.items():
        angles = hm.gesture_trajectory(keys, t, rng)
        rots = hm.wobble_rotations(rot0, t, rng.uniform(10, 30), rng)
        pos = centre + pos0 + drift * np.sin(np.pi * t)[:, None] + rng.normal(0, 3, (n_frames, 3))
        local = hm.forward_kinematics(angles, scale)
        if side == "left":
            local = hm.mirror(local)
        off = 0 if side == "right" else 21
        world[:, off:off + 21] = np.einsum("tij,tkj->tki", rots, local) + pos[:, None]
        hands[side] = (angles, rots, pos)
    return np.round(world, 3), hands


def plan_interhand(out_dir, split, spec, seed):
    """Everything of one split except the pixels: the four annotation json objects, the RootNet
    list (val/test) and the render tasks. Deterministic in (split, spec, seed)."""
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    n_cap, n_cam, n_seq, n_frames = spec
    images, annots, cameras, joints3d, mano, rootnet, tasks = [], [], {}, {}, {}, [], []
    for capture in range(n_cap):
        subject = SPLITS.index(split) * 100 + capture + 1
        scale, skin, shape = rng.uniform(0.88, 1.12), random_skin(rng), rng.normal(0, 0.8, 10)
        centre = np.array([rng.uniform(-200, 200), rng.uniform(-200, 200), rng.uniform(900, 1300)])
        cams = _cameras(rng, n_cam, centre)
        bg_seed = {cam: int(rng.integers(2**31)) for cam in cams}
        cameras[str(capture)] = {k: {c: v[k].tolist() for c, v in cams.items()}
                                 for k in ("campos", "camrot", "focal", "princpt")}
        joints3d[str(capture)], mano[str(capture)] = {}, {}
        frame = int(rng.integers(1000, 30000))
        for s in range(n_seq):
            hand_type = ("right", "left", "interacting")[s % 3]
            names = hm.DOUBLE_SEQS if hand_type == "interacting" else hm.SINGLE_SEQS
            seq_name = f"{s + 3 * capture:04d}_{names[int(rng.integers(len(names)))]}"
            world, hands = _sequence(rng, hand_type, n_frames, centre, scale)
            present = np.array([hand_type != "left", hand_type != "right"])
            for i in range(n_frames):
                valid3d = np.repeat(present, 21) & (rng.random(42) > 0.01)
                htv = int(rng.random() > 0.08)
                joints3d[str(capture)][str(frame)] = {
                    "world_coord": world[i].tolist(), "joint_valid": valid3d.astype(int).tolist(),
                    "hand_type": hand_type, "hand_type_valid": htv}
                mano[str(capture)][str(frame)] = {
                    side: (_mano_json(hands[side], i, shape) if side in hands else None)
                    for side in ("right", "left")}
                for cam, c in cams.items():
                    joint_cam, uv = project(world[i], c["camrot"], c["campos"], c["focal"], c["princpt"])
                    w, h = c["size"]
                    inside = (uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= h - 1)
                    valid = valid3d & inside & (joint_cam[:, 2] > 0) & (rng.random(42) > 0.02)
                    if valid.sum() < MIN_VALID_JOINTS:
                        continue
                    iid = len(images)
                    file_name = f"Capture{capture}/{seq_name}/cam{cam}/image{frame}.jpg"
                    images.append({"id": iid, "file_name": file_name, "width": w, "height": h,
                                   "capture": capture, "subject": subject, "seq_name": seq_name,
                                   "camera": cam, "frame_idx": frame})
                    bbox = padded_bbox(uv, valid, w, h)
                    annots.append({"id": iid, "image_id": iid, "bbox": bbox,
                                   "joint_valid": [[int(v)] for v in valid], "hand_type": hand_type,
                                   "hand_type_valid": htv})
                    if split != "train":
                        rootnet.append(_rootnet(rng, iid, bbox, joint_cam, present))
                    look = random_look(rng, skin, bg_seed[cam])
                    tasks.append(Task(os.path.join(out_dir, "images", split, file_name), joint_cam,
                                      tuple(bool(p) for p in present), tuple(c["focal"]),
                                      tuple(c["princpt"]), w, h, look))
                frame += 3
            frame += 3 * int(rng.integers(20, 200))
    data = {"images": images, "annotations": annots}
    return {"data": data, "camera": cameras, "joint_3d": joints3d, "MANO_NeuralAnnot": mano,
            "rootnet": rootnet, "tasks": tasks}


def _mano_json(hand, i, shape):
    angles, rots, pos = hand
    p = hm.mano_params(rots[i], angles[i], pos[i], shape)
    return {k: np.round(v, 6).tolist() for k, v in p.items()}


def _rootnet(rng, annot_id, bbox, joint_cam, present):
    """A RootNet-like prediction: a slightly wrong box (then processed, SPEC 3.1) and root depths
    with ~20 mm error; an absent hand gets the present one's depth."""
    x, y, w, h = bbox
    c = np.array([x + w / 2, y + h / 2]) + rng.normal(0, 0.04, 2) * [w, h]
    wh = np.array([w, h]) * rng.normal(1, 0.05, 2)
    box = process_bbox(np.concatenate([c - wh / 2, wh]))
    z = joint_cam[[20, 41], 2]
    z = np.where(present, z, z[present][0])
    depth = z + rng.normal(0, 20, 2)
    return {"annot_id": annot_id, "bbox": np.round(box.astype(np.float64), 3).tolist(),
            "abs_depth": np.round(depth, 3).tolist()}


def run_tasks(tasks, workers, desc):
    """Render and write the pictures, in a pool of `workers` processes (spawned with single-threaded
    BLAS) or inline when workers == 1. Returns the total JPEG bytes."""
    if workers <= 1 or len(tasks) < 16:
        return sum(_write_task(t) for t in tqdm(tasks, desc=desc, unit="img"))
    # Spawned workers import numpy afresh, so they see single-threaded BLAS (forked ones would
    # inherit the parent's thread pool and oversubscribe the cores).
    keys = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        pool = mp.get_context("spawn").Pool(workers)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    with pool:
        it = pool.imap(_write_task, tasks, chunksize=8)
        return sum(tqdm(it, total=len(tasks), desc=desc, unit="img"))


def generate_interhand(out_dir, size="tiny", seed=0, workers=None) -> dict:
    workers = workers or os.cpu_count() or 1
    write_skeleton(os.path.join(out_dir, "annotations", "skeleton.txt"), JOINT_NAMES, parents())
    plans = {split: plan_interhand(out_dir, split, SIZES[size][split], seed) for split in SPLITS}
    nbytes = run_tasks([t for p in plans.values() for t in p["tasks"]], workers, "synth interhand")
    for split, plan in plans.items():
        for kind in ("data", "camera", "joint_3d", "MANO_NeuralAnnot"):
            write_json(os.path.join(out_dir, "annotations", split, f"InterHand2.6M_{split}_{kind}.json"),
                       plan[kind])
        if split != "train":
            write_json(os.path.join(out_dir, "rootnet_output", f"rootnet_interhand2.6m_output_{split}.json"),
                       plan["rootnet"])
    counts = {split: len(p["tasks"]) for split, p in plans.items()}
    return {"images": counts, "jpeg_bytes": nbytes}


def generate(out_dir, size="tiny", seed=0, fmt="interhand", workers=None) -> dict:
    """Write a synthetic data set under out_dir; returns a summary (counts, seconds)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
    out_dir = os.path.abspath(os.fspath(out_dir))
    start = time.perf_counter()
    if fmt == "interhand":
        summary = generate_interhand(out_dir, size, seed, workers)
    elif fmt in ("rhd", "stb"):
        from .synth_single import generate_single
        summary = generate_single(out_dir, fmt, size, seed, workers)
    else:
        raise ValueError(f"fmt must be 'interhand', 'rhd' or 'stb', got {fmt!r}")
    return {"format": fmt, "size": size, "seed": seed, "out_dir": out_dir, **summary,
            "seconds": round(time.perf_counter() - start, 2)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (the data set root)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", default="small", choices=tuple(SIZES))
    ap.add_argument("--format", default="interhand", choices=("interhand", "rhd", "stb"))
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = ap.parse_args(argv)
    summary = generate(args.out, args.size, args.seed, args.format, args.workers)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
