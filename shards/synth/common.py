"""What the synthetic generators share: the render-and-write task, its process pool, atomic JSON
and skeleton writers, the joint box and the projection (through shards.geometry)."""
import json
import multiprocessing as mp
import os
from dataclasses import dataclass

import numpy as np
import simplejpeg
from tqdm import tqdm

from ..atomic import atomic_write_bytes
from ..geometry import cam2pixel, world2cam
from .render import Look, render

SPLITS = ("train", "val", "test")
# per split: (captures, cameras per capture, sequences per capture, frames per sequence). Sequences
# cycle right / left / interacting, and each has one base placement of its hands, so distinct hands
# come from sequences, not frames: `small` has 32 sequences of each kind in train (2-3 frames each;
# with 6 x 12 it had 8 and the demo's poses did not generalise: benchmarks/handedness.py `fewseq`).
SIZES = {
    "tiny": {"train": (2, 3, 3, 4), "val": (1, 3, 3, 3), "test": (1, 3, 3, 3)},
    "small": {"train": (4, 6, 24, 3), "val": (1, 6, 20, 3), "test": (2, 6, 30, 2)},
    "medium": {"train": (6, 8, 36, 5), "val": (2, 8, 30, 3), "test": (2, 8, 30, 3)},
}
JPEG_QUALITY = 90

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
    elbows: np.ndarray | None = None  # (2, 3) camera mm (right, left): the forearms point there


def render_task(task: Task) -> np.ndarray:
    """The picture of a task, (H, W, 3) uint8 (what the generator encodes into its JPEG)."""
    img, _ = render(task.joints_cam, task.present, task.focal, task.princpt, task.width, task.height,
                    task.look, task.elbows)
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


def project(world, camrot, campos, focal, princpt):
    """(..., 3) world mm -> camera mm and (..., 2) pixels (shards.geometry's world2cam, cam2pixel)."""
    cam = world2cam(world, camrot, campos)
    return cam, cam2pixel(cam, focal, princpt)[..., :2]


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
