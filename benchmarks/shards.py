"""Benchmark of the shard converter at InterHand2.6M scale.

    .venv/bin/python benchmarks/shards.py                        # 1,361,062 annotations (the real train split)
    .venv/bin/python benchmarks/shards.py --annotations 200000 --workers 2 --verify full
    .venv/bin/python benchmarks/shards.py --parse-only            # parse + plan only: memory vs. count

Writes an InterHand2.6M-layout train split to --dir (data.json at the real size and layout: one
image entry and one annotation entry per sample; a few captures, cameras and frames reused, so the
pictures are a handful of small JPEG files hard-linked many times), runs `python -m shards` on it
and reports annotations/s, MB/s written and peak memory: the converter's parent RSS, the largest
worker RSS, and the peak sum of PSS over the process tree (shared pages counted once), sampled
from /proc, plus getrusage(RUSAGE_CHILDREN).ru_maxrss.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
import simplejpeg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL = 1_361_062


def make_jpegs(n, seed=0):
    """n distinct 512x334 pictures of smooth blobs and noise (~15-25 KB each, like InterHand's)."""
    rng, out = np.random.default_rng(seed), []
    yy, xx = np.mgrid[0:334, 0:512]
    for _ in range(n):
        img = np.zeros((334, 512, 3))
        for _ in range(12):
            cx, cy, r = rng.uniform(0, 512), rng.uniform(0, 334), rng.uniform(20, 120)
            img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None] * rng.uniform(0, 120, 3)
        img += rng.normal(0, 3, img.shape)
        out.append(simplejpeg.encode_jpeg(np.clip(img, 0, 255).astype(np.uint8), quality=85))
    return out


def generate(root, n, captures=5, cams=20, frames=10, seed=0):
    """InterHand2.6M train split with n annotations; returns the data.json size in bytes."""
    rng = np.random.default_rng(seed)
    jpegs = make_jpegs(8, seed)
    ann_dir = os.path.join(root, "annotations", "train")
    os.makedirs(ann_dir, exist_ok=True)
    cam_names = [str(400000 + k) for k in range(cams)]
    cameras, joints = {}, {}
    for c in range(captures):
        cameras[str(c)] = {"campos": {}, "camrot": {}, "focal": {}, "princpt": {}}
        for k, cam in enumerate(cam_names):
            a = 2 * np.pi * k / cams
            cameras[str(c)]["campos"][cam] = [900 * np.sin(a), 0.0, -900 * np.cos(a)]
            cameras[str(c)]["camrot"][cam] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
            cameras[str(c)]["focal"][cam] = [1270.0, 1270.0]
            cameras[str(c)]["princpt"][cam] = [256.0, 167.0]
            for f in range(frames):
                path = os.path.join(root, "images", "train", f"Capture{c}", "0000_seq", f"cam{cam}", f"image{f}.jpg")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                src = os.path.join(root, f"pic{(c + k + f) % len(jpegs)}.jpg")
                if not os.path.exists(src):
                    with open(src, "wb") as fh:
                        fh.write(jpegs[(c + k + f) % len(jpegs)])
                os.link(src, path)
        joints[str(c)] = {str(f): {"world_coord": rng.normal(0, 50, (42, 3)).round(4).tolist(), "joint_valid": [1] * 42,
                                   "hand_type": "interacting", "hand_type_valid": 1} for f in range(frames)}
    with open(os.path.join(ann_dir, "InterHand2.6M_train_camera.json"), "w") as f:
        json.dump(cameras, f)
    with open(os.path.join(ann_dir, "InterHand2.6M_train_joint_3d.json"), "w") as f:
        json.dump(joints, f)
    hts = ("right", "left", "interacting")
    valids = [json.dumps([[int(v)] for v in rng.random(42) > p]) for p in (0.0, 0.1, 0.3)]
    path = os.path.join(ann_dir, "InterHand2.6M_train_data.json")
    with open(path, "w") as f:
        f.write('{"images": [')
        for i in range(n):
            c, k, fr = i % captures, (i // captures) % cams, (i // (captures * cams)) % frames
            f.write(("" if i == 0 else ", ") + f'{{"id": {i}, "file_name": "Capture{c}/0000_seq/cam{cam_names[k]}/image{fr}.jpg", '
                    f'"width": 512, "height": 334, "capture": {c}, "subject": {c}, "seq_name": "0000_seq", '
                    f'"camera": "{cam_names[k]}", "frame_idx": {fr}}}')
        f.write('], "annotations": [')
        boxes = rng.uniform([100, 60, 60, 60], [300, 200, 180, 160], (4096, 4))
        for i in range(n):
            b = boxes[i % 4096].tolist()
            f.write(("" if i == 0 else ", ") + f'{{"id": {i}, "image_id": {i}, "bbox": [{b[0]!r}, {b[1]!r}, {b[2]!r}, {b[3]!r}], '
                    f'"joint_valid": {valids[i % 3]}, "hand_type": "{hts[i % 3]}", "hand_type_valid": 1}}')
        f.write("]}")
    return os.path.getsize(path)


def _proc_tree(pid):
    kids, out = {}, []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(p))
            except (OSError, IndexError, ValueError):
                pass
    todo = [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _mem_kb(pid, field):
    try:
        with open(f"/proc/{pid}/{'status' if field == 'VmRSS' else 'smaps_rollup'}") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(args):
    out = os.path.join(args.dir, "out")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "shards", "--source", "interhand", "--root", os.path.join(args.dir, "data"),
           "--out", out, "--splits", "train", "--shard-size", args.shard_size, "--verify", args.verify]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    t0 = time.time()
    err = open(os.path.join(args.dir, "converter.stderr"), "w+")  # progress bars and errors
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True)
    peak = {"parent_rss": 0, "worker_rss": 0, "tree_pss": 0, "tree_rss": 0}
    while proc.poll() is None:
        tree = _proc_tree(proc.pid)
        rss = {p: _mem_kb(p, "VmRSS") for p in tree}
        peak["parent_rss"] = max(peak["parent_rss"], rss.get(proc.pid, 0))
        peak["worker_rss"] = max([peak["worker_rss"]] + [v for p, v in rss.items() if p != proc.pid])
        peak["tree_rss"] = max(peak["tree_rss"], sum(rss.values()))
        peak["tree_pss"] = max(peak["tree_pss"], sum(_mem_kb(p, "Pss") for p in tree))
        time.sleep(0.25)
    wall = time.time() - t0
    stdout = proc.stdout.read()
    if proc.returncode:
        err.seek(0)
        sys.exit(f"converter failed ({proc.returncode}):\n{stdout}\n{err.read()[-3000:]}")
    man = json.load(open(os.path.join(out, "train", "manifest.json")))
    written = sum(s["bytes"] for s in man["shards"])
    return {"annotations": man["counts"]["annotations"], "samples": man["counts"]["total"], "shards": len(man["shards"]),
            "wall_s": round(wall, 1), "annotations_per_s": round(man["counts"]["annotations"] / wall),
            "MB_per_s_written": round(written / wall / 1e6, 1), "GB_written": round(written / 1e9, 2),
            **{f"peak_{k}_MB": round(v / 1024) for k, v in peak.items()},
            "ru_maxrss_children_MB": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
            "summary": stdout.strip()}


def parse_only(args):
    """Only the streaming parse + join (the part whose memory grows with the annotation count)."""
    code = ("import json, resource, sys, time; from shards.reader import load_split; t = time.time(); "
            f"d = load_split('interhand', {os.path.join(args.dir, 'data')!r}, 'train'); "
            "print(json.dumps({'annotations': len(d), 'problems': len(d.problems), 'parse_s': round(time.time() - t, 1), "
            "'peak_rss_MB': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    res["annotations_per_s"] = round(res["annotations"] / res["parse_s"])
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--annotations", type=int, default=FULL)
    p.add_argument("--dir", default="/tmp/shards_bench", help="scratch folder (data + shards; deleted unless --keep)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--shard-size", default="512MB")
    p.add_argument("--verify", default="full", choices=["full", "header", "none"])
    p.add_argument("--keep", action="store_true")
    p.add_argument("--parse-only", action="store_true", help="measure only parsing data.json (time, peak RSS)")
    args = p.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    t = time.time()
    size = generate(os.path.join(args.dir, "data"), args.annotations)
    print(f"generated {args.annotations} annotations, data.json {size / 1e6:.0f} MB in {time.time() - t:.0f} s", flush=True)
    res = parse_only(args) if args.parse_only else run(args)
    print(json.dumps(res, indent=1))
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
