"""Synthetic RHD and STB sets (single hand, COCO files as converted by the InterHand2.6M authors).

Called by shards.synth (`python -m shards.synth --format rhd|stb --out DIR`); the layouts are
described in shards/synth/__init__.py.
"""
import os

import numpy as np

from ..skeleton import JOINT_NAMES
from . import handmodel as hm
from .common import Task, padded_bbox, run_tasks, write_json, write_skeleton
from .render import random_look, random_skin

# The 21 joints of one hand in RHD/STB order (wrist first) taken from InterHand's one-hand order.
ONE_HAND_PERM = np.array([20] + list(range(20)))
# (train count, test count) per size
SINGLE_SIZES = {"tiny": (24, 12), "small": (800, 200), "medium": (4000, 1000)}
FORMATS = {
    "rhd": {"splits": ("training", "evaluation"), "size": (320, 320)},
    "stb": {"splits": ("train", "test"), "size": (640, 480),
            "focal": (607.92271, 607.88192), "princpt": (314.78337, 236.42484)},
}
STB_TEST_SEQS = ("B1Counting", "B1Random")
STB_TRAIN_SEQS = tuple(f"B{b}{k}" for b in range(2, 7) for k in ("Counting", "Random"))


def single_skeleton():
    """42 names and parents of the RHD/STB layout: left hand 0-20 then right 21-41, each wrist
    first, then thumb tip..base, index, middle, ring, pinky."""
    names, parent = [], []
    for off, side in ((0, "l"), (21, "r")):
        src = 21 if side == "l" else 0  # JOINT_NAMES: right hand 0-20, left 21-41
        names += [JOINT_NAMES[src + i] for i in ONE_HAND_PERM]
        for k in range(21):
            if k == 0:
                parent.append(-1)
            elif k % 4 == 0:  # finger base -> wrist
                parent.append(off)
            else:
                parent.append(off + k + 1)
    return names, parent


def _hand_in_view(rng, local, focal, princpt, size, z_range):
    """Place a hand (21, 3 local) in camera space with a random rotation, its palm centre on the
    ray of a pixel near the image centre at depth in z_range."""
    rot = hm.random_frame(rng)
    j = local @ rot.T
    centre = 0.5 * (j[20] + j[11])
    px = np.array(size) * rng.uniform(0.35, 0.65, 2)
    z = rng.uniform(*z_range)
    target = np.array([(px[0] - princpt[0]) / focal[0] * z, (px[1] - princpt[1]) / focal[1] * z, z])
    return j - centre + target


def plan_single(out_dir, fmt, split, n, seed):
    spec = FORMATS[fmt]
    rng = np.random.default_rng([seed, 10 + FORMATS[fmt]["splits"].index(split), len(fmt)])
    w, h = spec["size"]
    images, annots, tasks = [], [], []
    seqs = (STB_TEST_SEQS if split == "test" else STB_TRAIN_SEQS) if fmt == "stb" else ("",)
    per_seq = int(np.ceil(n / len(seqs)))
    for seq in seqs:
        skin, scale = (random_skin(rng) if fmt == "stb" else None), rng.uniform(0.9, 1.1)
        seq_hand = "left" if rng.random() < 0.5 else "right"
        bg = int(rng.integers(2**31))
        t = np.linspace(0, 1, per_seq)
        keys = [str(g) for g in rng.choice(list(hm.GESTURES), size=4)]
        angles = hm.gesture_trajectory(keys, t, rng)
        for i in range(per_seq):
            if len(images) >= n:
                break
            iid = len(images)
            if fmt == "rhd":  # every RHD picture is another character, camera and hand
                focal = tuple(np.round([rng.uniform(260, 320)] * 2, 4).tolist())
                princpt = (w / 2, h / 2)
                pose = hm.gesture_trajectory(keys, rng.random(1), rng)[0]
                local, z_range, bg = hm.forward_kinematics(pose[None], rng.uniform(0.9, 1.1))[0], (350, 800), None
                file_name, folder = f"{iid:05d}.jpg", os.path.join(out_dir, split, "color")
            else:
                focal, princpt = spec["focal"], spec["princpt"]
                local, z_range = hm.forward_kinematics(angles[i:i + 1], scale)[0], (300, 500)
                file_name, folder = f"SK_color_{i}.jpg", os.path.join(out_dir, "images", seq)
            hand_type = ("left" if rng.random() < 0.5 else "right") if fmt == "rhd" else seq_hand
            if hand_type == "left":
                local = hm.mirror(local)
            cam = np.round(_hand_in_view(rng, local, focal, princpt, (w, h), z_range), 3)
            uv = cam[:, :2] / cam[:, 2:] * focal + princpt
            inside = (uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= h - 1)
            valid = inside & (rng.random(21) > 0.03)
            valid[20] = inside[20]  # roots are only lost out of frame
            img = {"id": iid, "file_name": file_name, "width": w, "height": h,
                   "cam_param": {"focal": list(focal), "princpt": list(princpt)}}
            if fmt == "stb":
                img["seq_name"] = seq
            images.append(img)
            perm = ONE_HAND_PERM
            annots.append({"id": iid, "image_id": iid, "bbox": padded_bbox(uv, valid, w, h),
                           "joint_img": np.round(uv[perm], 4).tolist(), "joint_cam": cam[perm].tolist(),
                           "joint_valid": valid[perm].astype(int).tolist(), "hand_type": hand_type})
            joints = np.zeros((42, 3))
            joints[:21] = cam if hand_type == "right" else 0
            joints[21:] = cam if hand_type == "left" else 0
            look = random_look(rng, skin, bg)
            tasks.append(Task(os.path.join(folder, file_name), joints,
                              (hand_type == "right", hand_type == "left"), tuple(focal), tuple(princpt),
                              w, h, look))
    return {"images": images, "annotations": annots}, tasks


def generate_single(out_dir, fmt, size="tiny", seed=0, workers=None) -> dict:
    workers = workers or os.cpu_count() or 1
    write_skeleton(os.path.join(out_dir, "skeleton.txt"), *single_skeleton())
    splits = FORMATS[fmt]["splits"]
    plans = {split: plan_single(out_dir, fmt, split, n, seed) for split, n in zip(splits, SINGLE_SIZES[size])}
    nbytes = run_tasks([t for _, tasks in plans.values() for t in tasks], workers, f"synth {fmt}")
    for split, (coco, _) in plans.items():
        write_json(os.path.join(out_dir, f"{fmt.upper()}_{split}.json"), coco)
    return {"images": {split: len(t) for split, (_, t) in plans.items()}, "jpeg_bytes": nbytes}
