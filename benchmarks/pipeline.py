"""Images/s of the data pipeline against the original-style loader, same shards, same cores, one run.

    python -m benchmarks.pipeline --shards data/shards/interhand --split train [--batch-size 32]
                                  [--batches 40] [--rounds 3] [--cores N] [--extract DIR]
                                  [--input-size 256]

(a) original-style: a torch DataLoader whose workers each read one JPEG file per sample from a
    folder extracted from the shards (as the original reads images/<split>/...jpg) and run the
    original's per-sample code step by step (OriginalStyleDataset: cv2.imread, float32, its image
    copies, mirror, cv2.warpAffine, colour clip, joints one by one, heatmap space); default collation.
(b) ours on the CPU: build_loader(device=cpu), DALI with `cores - 1` threads (ROI decode) and the
    calling thread warping the decoded regions (uint8 cv2.warpAffine, one OpenCV thread, + colour
    lookup table).
(c) ours on the GPU (when CUDA is available): nvJPEG + GPU warp.
All in training mode (shuffle + random augmentation), batches of input-size patches (256 by default).
Prints a table: images/s, images/s per core, and the ratios to (a).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model.config import get_config
from pipeline import build_loader
from shards import geometry, labels
from shards.skeleton import FLIP_PERM, ROOT

try:  # the original's image library; optional here (pip install opencv-python-headless)
    import cv2
except ImportError:  # pragma: no cover - depends on the machine
    cv2 = None


def extract(split_dir: Path, out: Path, limit: int) -> int:
    """Write up to `limit` samples as <annot_id>.jpg files plus labels.npy (the annotation arrays the
    original keeps in memory)."""
    from shards.index import iter_shard_samples

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tqdm(total=limit, desc="extract", leave=False) as bar:
        for _, _, lbl, ids, jpg in iter_shard_samples(str(split_dir)):
            aid = int(np.frombuffer(ids, "<i8")[0])
            (out / f"{aid}.jpg").write_bytes(jpg)
            rows.append(np.concatenate([[aid], np.frombuffer(lbl, "<f4")]))
            bar.update(1)
            if len(rows) == limit:
                break
    np.save(out / "labels.npy", np.stack(rows).astype(np.float64))
    return len(rows)


class OriginalStyleDataset(torch.utils.data.Dataset):
    """The original's per-sample path (InterHand2.6M main/dataset.py __getitem__ with
    common/utils/preprocessing.py), step by step and with the copies it makes, since they are part
    of its cost: load_img (cv2.imread, BGR -> RGB copy, float32), augmentation (copies the image,
    draws get_aug_config), generate_patch_image (copies the image again, mirrors it as a view,
    cv2.warpAffine - OpenCV copies a mirrored view - then float32), the colour clip, the joints one
    by one through the affine, transform_input_to_output_space, and the final ToTensor-style
    transpose and / 255. `aug` (AUG_FIELDS order) replaces the random draw (tests)."""

    def __init__(self, folder: Path, input_size=256, hm=(64, 64, 64), aug=None):
        self.folder, self.input_size, self.hm, self.aug = folder, input_size, hm, aug
        rows = np.load(folder / "labels.npy")
        self.ids = rows[:, 0].astype(np.int64)
        self.lbl = labels.decode(rows[:, 1:].astype(np.float32))

    def __len__(self):
        return len(self.ids)

    @staticmethod
    def load_img(path):
        if cv2 is not None:
            img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
            if not isinstance(img, np.ndarray):
                raise IOError(f"cannot read {path}")
            img = img[:, :, ::-1].copy()
        else:
            import simplejpeg

            img = simplejpeg.decode_jpeg(path.read_bytes(), colorspace="RGB")
        return img.astype(np.float32)

    def get_aug_config(self):
        if self.aug is not None:
            tx, ty, scale, rot, flip, *color = self.aug
            return np.array([tx, ty]), scale, rot, bool(flip), np.array(color)
        trans = np.random.uniform(-0.15, 0.15, 2)
        scale = np.clip(np.random.randn(), -1.0, 1.0) * 0.25 + 1.0
        rot = np.clip(np.random.randn(), -2.0, 2.0) * 45 if np.random.rand() <= 0.6 else 0.0
        return trans, scale, rot, np.random.rand() <= 0.5, np.random.uniform(0.8, 1.2, 3)

    def _warp(self, img, trans):
        s = self.input_size
        if cv2 is not None:
            return cv2.warpAffine(img, trans, (s, s), flags=cv2.INTER_LINEAR)
        img = np.ascontiguousarray(img)
        inv = np.linalg.inv(np.vstack([trans, [0, 0, 1]]))[:2]
        v, u = np.mgrid[0:s, 0:s].astype(np.float32)
        sx, sy = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2], inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
        x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
        fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
        h, w = img.shape[:2]
        pad = np.pad(img, ((1, 2), (1, 2), (0, 0)))
        x0, y0 = np.clip(x0, -1, w) + 1, np.clip(y0, -1, h) + 1
        return ((1 - fy) * ((1 - fx) * pad[y0, x0] + fx * pad[y0, x0 + 1])
                + fy * ((1 - fx) * pad[y0 + 1, x0] + fx * pad[y0 + 1, x0 + 1]))

    def generate_patch_image(self, cvimg, bbox, do_flip, scale, rot):
        img = cvimg.copy()
        c = np.array([bbox[0] + 0.5 * bbox[2], bbox[1] + 0.5 * bbox[3]])
        if do_flip:
            img = img[:, ::-1, :]
            c[0] = img.shape[1] - c[0] - 1
        out = (self.input_size, self.input_size)
        trans = geometry.patch_affine(c, bbox[2:], scale, rot, out).astype(np.float32)
        patch = self._warp(img, trans).astype(np.float32)
        inv_trans = geometry.patch_affine(c, bbox[2:], scale, rot, out, inverse=True).astype(np.float32)
        return patch, trans, inv_trans

    def augmentation(self, img, bbox, joints, valid, hand_type):
        img, joints, hand_type = img.copy(), joints.copy(), hand_type.copy()
        width = img.shape[1]
        trans_xy, scale, rot, do_flip, color = self.get_aug_config()
        bbox[0] += bbox[2] * trans_xy[0]
        bbox[1] += bbox[3] * trans_xy[1]
        img, trans, inv_trans = self.generate_patch_image(img, bbox, do_flip, scale, rot)
        img = np.clip(img * color[None, None, :], 0, 255)
        if do_flip:
            joints[:, 0] = width - joints[:, 0] - 1
            joints, valid, hand_type = joints[FLIP_PERM], valid[FLIP_PERM], hand_type[::-1].copy()
        for j in range(len(joints)):  # the original transforms joints one by one
            joints[j, :2] = trans @ np.array([joints[j, 0], joints[j, 1], 1.0], np.float32)
            valid[j] *= (0 <= joints[j, 0] < self.input_size) and (0 <= joints[j, 1] < self.input_size)
        return img, joints, valid, hand_type, inv_trans

    def to_output_space(self, joints, valid, rel, root_valid):
        r, l_ = ROOT["right"], ROOT["left"]
        joints, valid = joints.copy(), valid.copy()
        d, h, w = self.hm
        joints[:, 0] = joints[:, 0] / self.input_size * w
        joints[:, 1] = joints[:, 1] / self.input_size * h
        joints[:21, 2] -= joints[r, 2]
        joints[21:, 2] -= joints[l_, 2]
        joints[:, 2] = (joints[:, 2] / 200 + 1) / 2 * d
        valid = valid * ((joints[:, 2] >= 0) & (joints[:, 2] < d)).astype(np.float32)
        rel = (rel / 200 + 1) / 2 * 64
        root_valid = root_valid * ((rel >= 0) & (rel < 64)).astype(np.float32)
        return joints, valid, rel, root_valid

    def __getitem__(self, i):
        bbox = self.lbl["bbox"][i].copy()
        joints = self.lbl["joint_img"][i].astype(np.float32)
        valid = self.lbl["joint_valid"][i].copy()
        hand_type = self.lbl["hand_type"][i].copy()
        img = self.load_img(self.folder / f"{self.ids[i]}.jpg")
        img, joints, valid, hand_type, _ = self.augmentation(img, bbox, joints, valid, hand_type)
        r, l_ = ROOT["right"], ROOT["left"]
        rel = np.array([joints[l_, 2] - joints[r, 2]], np.float32)
        root_valid = (np.array([valid[r] * valid[l_]], np.float32) if hand_type[0] * hand_type[1] == 1
                      else np.zeros(1, np.float32))
        joints, valid, rel, root_valid = self.to_output_space(joints, valid, rel, root_valid)
        image = torch.from_numpy(img.astype(np.float32).transpose(2, 0, 1)).contiguous() / 255.0  # ToTensor, / 255
        return {"images": image, "joint_coord": joints, "joint_valid": valid, "rel_root_depth": rel[0],
                "root_valid": root_valid[0], "hand_type": hand_type}


# DataLoader workers come from a fork server: forking a process that already runs DALI's threads
# (a test session, or the caller's own pipelines) can deadlock in the child.
WORKER_START = "forkserver"


def _worker_init(_):
    torch.set_num_threads(1)
    if cv2 is not None:
        cv2.setNumThreads(1)


def measure(batches, n: int, warmup: int, device) -> float:
    """Images/s over n batches after warm-up batches (a CUDA device is synchronised at both ends)."""
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0, images = time.perf_counter(), 0
    for _ in tqdm(range(n), leave=False, desc="measure"):
        images += next(it)["images"].shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return images / (time.perf_counter() - t0)


def _forever(loader):
    while True:
        yield from loader


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", required=True, help="folder holding <split>/ shard folders")
    ap.add_argument("--split", default="train")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=40, help="measured batches per loader")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="alternating measurements per loader (median reported)")
    ap.add_argument("--pause", type=float, default=2.0, help="seconds idle before each measurement")
    ap.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)),
                    help="DataLoader workers for (a); (b) uses cores - 1 DALI threads + its calling thread")
    ap.add_argument("--input-size", type=int, default=256, help="patch side (the demo trains at 128)")
    ap.add_argument("--extract", default=None, help="folder for (a)'s JPEG files (default: a temporary one)")
    args = ap.parse_args(argv)
    split_dir = Path(args.shards).resolve() / args.split
    need = args.batch_size * (args.batches + args.warmup + 2 * args.cores + 2)
    tmp = None if args.extract else tempfile.mkdtemp(prefix="bench_pipeline_")
    folder = Path(args.extract or tmp).resolve()
    try:
        n = extract(split_dir, folder, need)
        torch.set_num_threads(1)  # (a)'s main process only collates
        ds = OriginalStyleDataset(folder, input_size=args.input_size, hm=(64, args.input_size // 4, args.input_size // 4))
        dl = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.cores, worker_init_fn=_worker_init,
                                         persistent_workers=True, prefetch_factor=2,
                                         multiprocessing_context=WORKER_START)
        dl_iter = _forever(dl)
        next(dl_iter)  # start the fork server and the workers off the clock
        warp = "cv2.warpAffine" if cv2 is not None else "numpy bilinear"
        cpu = torch.device("cpu")
        # The loader's default split of the cores: DALI threads decode, the calling thread warps.
        geometry = get_config("paper", input_size=args.input_size)  # the paper's model at this input size
        ours = build_loader(split_dir, geometry, batch_size=args.batch_size, train=True, device=cpu,
                            num_threads=max(1, args.cores - 1))
        loaders = [(f"(a) original-style DataLoader, {args.cores} workers, {warp}", dl_iter, cpu),
                   (f"(b) ours on the CPU: {max(1, args.cores - 1)} DALI thread(s) + the warping thread",
                    _forever(ours), cpu)]
        if torch.cuda.is_available():
            gpu = torch.device("cuda", torch.cuda.current_device())
            gpu_loader = build_loader(split_dir, geometry, batch_size=args.batch_size, train=True, device=gpu,
                                      num_threads=args.cores)
            loaders.append((f"(c) ours, DALI on {torch.cuda.get_device_name(gpu)}, {args.cores} CPU threads",
                            _forever(gpu_loader), gpu))
        # Rounds alternate the loaders so that a noisy neighbour hits all of them alike; the median
        # round counts. A loader left idle refills its prefetch queue and then waits: a pause before each
        # measurement lets the previous loader's refill finish off the clock of the next.
        speeds = [[] for _ in loaders]
        for r in range(args.rounds):
            for (name, it, dev), got in zip(loaders, speeds):
                time.sleep(args.pause)
                got.append(measure(it, args.batches, args.warmup if r == 0 else 1, dev))
        rows = [(name, float(np.median(got))) for (name, _, _), got in zip(loaders, speeds)]
        if not torch.cuda.is_available():
            rows.append(("(c) ours on the GPU: no CUDA device here", float("nan")))
        del dl, ours
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0][1]
    print(f"\n{n} samples of {split_dir}, batch {args.batch_size}, median of {args.rounds} rounds of "
          f"{args.batches} batches, "
          f"{args.cores} cores, {args.input_size}x{args.input_size} patches, training augmentation")
    print(f"{'loader':<66} {'images/s':>9} {'per core':>9} {'vs (a)':>7}")
    for name, ips in rows:
        print(f"{name:<66} {ips:9.1f} {ips / args.cores:9.1f} {ips / base:6.2f}x")


if __name__ == "__main__":
    main()
