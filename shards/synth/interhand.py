"""The synthetic InterHand2.6M v1.0 set (layout in shards/synth/__init__.py): one camera rig shared by
every capture and split (as the real dome is), hands on the arms of a subject facing the rig's front
(shards/synth/body.py), sequences posed through the synthetic MANO model, the four annotation files,
RootNet-like output and the MANO model itself (DATA/mano/)."""

import os

import numpy as np

from ..geometry import process_bbox, world2cam
from ..skeleton import JOINT_NAMES, parents
from . import handmodel as hm
from . import manohands
from .body import place_hands
from .common import SIZES, SPLITS, Task, padded_bbox, project, run_tasks, write_json, write_skeleton
from .render import random_look, random_skin

MIN_VALID_JOINTS = 4  # a camera view with fewer valid joints gets no image
LANDSCAPE, PORTRAIT = (512, 334), (334, 512)
RIG_CENTRE = np.array([0.0, 0.0, 1100.0])  # world mm (+z up); subjects face +y
SUBJECT_JITTER_MM = 40.0  # where a capture's hand workspace centre sits about the rig's
RIG_AZIMUTH_DEG = 115.0  # the rig's cameras spread this far either side of the subject's front


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


def _cameras(rng, n, centre):
    """The rig: n cameras spread over the front of the subject (azimuth within RIG_AZIMUTH_DEG of +y),
    from slightly below to well above the hands, each aiming near the centre."""
    cams = {}
    for k in range(n):
        w, h = PORTRAIT if k % 3 == 2 else LANDSCAPE
        az = np.pi / 2 + np.radians(RIG_AZIMUTH_DEG * (2 * (k + 0.5) / n - 1)) + rng.uniform(-0.2, 0.2)
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


def _sequence(rng, hand_type, n_frames, centre, beta):
    """World joints (T, 42, 3), elbows (T, 2, 3) (right, left; zero for an absent hand) and the MANO
    parameters {side: {pose, shape, trans}} of one sequence: each hand's kinematic motion (angles,
    wrist rotation and position about its arm's base pose) posed through the synthetic MANO model,
    its regressed joints plus the fitting noise (shards/synth/manohands.py)."""
    t = np.linspace(0.0, 1.0, n_frames)
    keys = [str(g) for g in rng.choice(list(hm.GESTURES), size=int(rng.integers(2, 5)))]
    world = np.zeros((n_frames, 42, 3))
    elbows = np.zeros((n_frames, 2, 3))
    params = {}
    drift = rng.normal(0, 25, 3)
    for side, (rot0, pos0, to_elbow) in place_hands(rng, hand_type).items():
        angles = hm.gesture_trajectory(keys, t, rng)
        rots = hm.wobble_rotations(rot0, t, rng.uniform(5, 15), rng)
        pos = centre + pos0 + drift * np.sin(np.pi * t)[:, None] + rng.normal(0, 3, (n_frames, 3))
        params[side] = manohands.hand_params(side, rots, angles, pos, beta)
        off, h = (0, 0) if side == "right" else (21, 1)
        world[:, off:off + 21] = manohands.regressed_joints(side, params[side]) + manohands.fit_noise(rng, n_frames)
        elbows[:, h] = world[:, off + 20] + to_elbow
    return np.round(world, 3), elbows, params


def plan_interhand(out_dir, split, spec, seed):
    """Everything of one split except the pixels: the four annotation json objects, the RootNet
    list (val/test) and the render tasks. Deterministic in (split, spec, seed)."""
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    n_cap, n_cam, n_seq, n_frames = spec
    rig_rng = np.random.default_rng([seed, 1000])  # the same rig (and backdrops) in every split
    cams = _cameras(rig_rng, n_cam, RIG_CENTRE)
    bg_seed = {cam: int(rig_rng.integers(2**31)) for cam in cams}
    images, annots, cameras, joints3d, mano, rootnet, tasks = [], [], {}, {}, {}, [], []
    for capture in range(n_cap):
        subject = SPLITS.index(split) * 100 + capture + 1
        scale, skin, shape = rng.uniform(0.88, 1.12), random_skin(rng), rng.normal(0, 0.8, 10)
        centre = RIG_CENTRE + rng.normal(0, SUBJECT_JITTER_MM, 3)
        cameras[str(capture)] = {k: {c: v[k].tolist() for c, v in cams.items()}
                                 for k in ("campos", "camrot", "focal", "princpt")}
        joints3d[str(capture)], mano[str(capture)] = {}, {}
        frame = int(rng.integers(1000, 30000))
        for s in range(n_seq):
            hand_type = ("right", "left", "interacting")[s % 3]
            names = hm.DOUBLE_SEQS if hand_type == "interacting" else hm.SINGLE_SEQS
            seq_name = f"{s + 3 * capture:04d}_{names[int(rng.integers(len(names)))]}"
            world, elbows, hands = _sequence(rng, hand_type, n_frames, centre, manohands.betas(scale, shape))
            present = np.array([hand_type != "left", hand_type != "right"])
            for i in range(n_frames):
                valid3d = np.repeat(present, 21) & (rng.random(42) > 0.01)
                htv = int(rng.random() > 0.08)
                joints3d[str(capture)][str(frame)] = {
                    "world_coord": world[i].tolist(), "joint_valid": valid3d.astype(int).tolist(),
                    "hand_type": hand_type, "hand_type_valid": htv}
                mano[str(capture)][str(frame)] = {
                    side: ({k: v[i].tolist() for k, v in hands[side].items()} if side in hands else None)
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
                                      tuple(c["princpt"]), w, h, look,
                                      world2cam(elbows[i], c["camrot"], c["campos"])))
                frame += 3
            frame += 3 * int(rng.integers(20, 200))
    data = {"images": images, "annotations": annots}
    return {"data": data, "camera": cameras, "joint_3d": joints3d, "MANO_NeuralAnnot": mano,
            "rootnet": rootnet, "tasks": tasks}


def _rootnet(rng, annot_id, bbox, joint_cam, present):
    """A RootNet-like prediction: a slightly wrong box (then processed, docs/conventions.md §3.1) and root depths
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


def generate_interhand(out_dir, size="tiny", seed=0, workers=None) -> dict:
    workers = workers or os.cpu_count() or 1
    write_skeleton(os.path.join(out_dir, "annotations", "skeleton.txt"), JOINT_NAMES, parents())
    manohands.write_model(out_dir)
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
