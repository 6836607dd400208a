"""Benchmark of the shard converter at InterHand2.6M scale.

    .venv/bin/python -m benchmarks.shards                        # 1,361,062 annotations (the real train split)
    .venv/bin/python -m benchmarks.shards --annotations 200000 --workers 2 --verify full [--cluster ray]
    .venv/bin/python -m benchmarks.shards --annotations 200000 --workers 2 --compare   # the table below
    .venv/bin/python -m benchmarks.shards --parse-only            # parse + plan only: memory vs. count

Writes an InterHand2.6M-layout train split to --dir (data.json at the real size and layout: one
image entry and one annotation entry per sample; a few captures, cameras and frames reused, so the
pictures are a handful of small JPEG files hard-linked many times: they are read from the page
cache, not a disk), runs `python -m shards` on it and reports annotations/s (and per core), MB/s
written and peak memory: the converter's parent RSS, the largest other process's RSS, and the peak
sums of RSS and of PSS (shared pages counted once) over the whole process tree (with --cluster ray
the Ray instance the converter starts: GCS, raylet and its object store, workers), sampled from
/proc every 0.25 s.

--compare runs, on the same data: the limit loop (one process reading, checking as --verify does,
sha256-hashing and writing each image plus its share of the shard's other bytes: what the bytes
alone cost per core), then the converter with --verify full and header, local worker processes and
Ray (--cluster ray, a Ray instance of --workers CPUs), and prints one line each with the ratio of
its rate per core to the limit's (the goal: >= 0.7), both per wall-clock second and per CPU second of
the whole process tree (the fair figure on a shared, loaded machine), and for Ray its wall and CPU
time over the local run's.
"""
import argparse
import hashlib
import json
import os
import re
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


def image_file(i, captures=5, cams=20, frames=10):
    """The file_name of image i (one per annotation; the pictures repeat every captures*cams*frames)."""
    c, k, fr = i % captures, (i // captures) % cams, (i // (captures * cams)) % frames
    return f"Capture{c}/0000_seq/cam{400000 + k}/image{fr}.jpg"


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
            f.write(("" if i == 0 else ", ") + f'{{"id": {i}, "file_name": "{image_file(i, captures, cams, frames)}", '
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


def _cpu_s(pid):
    """utime + stime of a process so far, seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def run(args, data_root, verify, cluster=None):
    """One conversion in its own process; its rates and the peak memory of its process tree."""
    out = os.path.join(args.dir, "out")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "shards", "--source", "interhand", "--root", data_root,
           "--out", out, "--splits", "train", "--shard-size", args.shard_size, "--verify", verify]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    if cluster:
        cmd += ["--cluster", cluster]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # --cluster ray: a Ray instance of its own
    t0 = time.time()
    err = open(os.path.join(args.dir, "converter.stderr"), "w+")  # progress bars and errors
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    peak = {"parent_rss": 0, "other_rss": 0, "tree_pss": 0, "tree_rss": 0}
    cpu, ru0 = {}, resource.getrusage(resource.RUSAGE_CHILDREN)
    while proc.poll() is None:
        tree = _proc_tree(proc.pid)
        for p in tree:
            c = _cpu_s(p)
            cpu[p] = c if c is not None else cpu.get(p, 0.0)
        rss = {p: _mem_kb(p, "VmRSS") for p in tree}
        peak["parent_rss"] = max(peak["parent_rss"], rss.get(proc.pid, 0))
        peak["other_rss"] = max([peak["other_rss"]] + [v for p, v in rss.items() if p != proc.pid])
        peak["tree_rss"] = max(peak["tree_rss"], sum(rss.values()))
        peak["tree_pss"] = max(peak["tree_pss"], sum(_mem_kb(p, "Pss") for p in tree))
        time.sleep(0.25)
    wall = time.time() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the whole tree: sampled from /proc (processes that ended between two samples lose
    # at most 0.25 s) or the kernel's count of the children waited for, whichever is larger
    cpu_s = max(sum(cpu.values()), ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime)
    stdout = proc.stdout.read()
    if proc.returncode:
        err.seek(0)
        sys.exit(f"converter failed ({proc.returncode}):\n{stdout}\n{err.read()[-3000:]}")
    with open(os.path.join(out, "train", "manifest.json")) as f:
        man = json.load(f)
    written = sum(s["bytes"] for s in man["shards"])
    phases = dict(re.findall(r"(parse|plan|write) ([0-9.]+) s", stdout))
    n, cores = man["counts"]["annotations"], args.workers or os.cpu_count()
    write_s = float(phases.get("write", wall))
    reruns = {}
    for name, extra in (("rerun", []), ("rerun_verify_existing", ["--verify-existing"])) if args.rerun else ():
        t = time.time()  # the same command on the finished output: what a re-run costs
        r = subprocess.run(cmd + extra, cwd=REPO, capture_output=True, text=True, env=env, check=True)
        kept = re.search(r"(\d+) kept from an earlier run", r.stdout)
        reruns[f"{name}_s"] = round(time.time() - t, 1)
        reruns[f"{name}_kept"] = int(kept.group(1)) if kept else None
        reruns[f"{name}_phases"] = dict(re.findall(r"(parse|plan|write) ([0-9.]+) s", r.stdout))
    shutil.rmtree(out, ignore_errors=True)
    return {"what": f"convert {cluster or 'local'}, verify {verify}", "annotations": n, "samples": man["counts"]["total"],
            "shards": len(man["shards"]), "wall_s": round(wall, 1), **{f"{k}_s": float(v) for k, v in phases.items()},
            "annotations_per_s": round(n / wall), "per_core": round(n / wall / cores),
            "write_per_core": round(n / write_s / cores), "cpu_s": round(cpu_s, 1), "per_cpu_s": round(n / cpu_s),
            "MB_per_s_written": round(written / wall / 1e6, 1),
            "GB_written": round(written / 1e9, 2), **{f"peak_{k}_MB": round(v / 1024) for k, v in peak.items()},
            "load_avg": round(os.getloadavg()[0], 1), **reruns, "summary": stdout.strip()}


def limit_loop(args, verify, n):
    """One process (one core): read each image, check it as the converter does (check_image, and its
    size from the header), sha256 and write it with its share of the shard's other bytes (headers, json,
    labels: EST_META_BYTES) - the cost of the bytes alone, annotations/s."""
    from shards.datacheck import check_image, image_size
    from shards.writer import EST_META_BYTES

    root = os.path.join(args.dir, "data", "images", "train")
    meta, sha = bytes(EST_META_BYTES), hashlib.sha256()
    path = os.path.join(args.dir, "limit.bin")
    t, c = time.time(), time.process_time()
    with open(path, "wb") as out:
        for i in range(n):
            with open(os.path.join(root, image_file(i)), "rb") as f:
                jpg = f.read()
            if check_image(jpg, verify) or (verify != "none" and image_size(jpg) != (512, 334)):
                sys.exit(f"limit loop: image {i} fails its check")
            for part in (jpg, bytes(-len(jpg) % 512), meta):
                sha.update(part)
                out.write(part)
    dt, dc = time.time() - t, time.process_time() - c
    os.remove(path)
    return {"what": f"limit loop, verify {verify}", "annotations": n, "wall_s": round(dt, 1), "per_core": round(n / dt),
            "cpu_s": round(dc, 1), "per_cpu_s": round(n / dc), "load_avg": round(os.getloadavg()[0], 1)}


def compare(args, data_root):
    """The limit loop and the converter (verify full / header, local / Ray) on the same data."""
    rows = []
    for verify in args.verifies.split(","):
        lim = limit_loop(args, verify, min(args.limit_samples, args.annotations))
        rows.append(lim)
        print(json.dumps(lim), flush=True)
        local = None
        for cluster in (None, "ray"):
            r = run(args, data_root, verify, cluster)
            r["of_limit"] = round(r["per_core"] / lim["per_core"], 2)  # wall clock: hostage to the machine's load
            r["cpu_of_limit"] = round(r["per_cpu_s"] / lim["per_cpu_s"], 2)  # per CPU second: the fair figure
            if cluster:
                r["ray_wall_over_local"] = round(r["wall_s"] / local["wall_s"] - 1, 3)
                r["ray_cpu_over_local"] = round(r["cpu_s"] / local["cpu_s"] - 1, 3)
            else:
                local = r
            rows.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "summary"}), flush=True)
    return rows


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
    p.add_argument("--cluster", default=None, help="pass --cluster to the converter (e.g. ray)")
    p.add_argument("--compare", action="store_true", help="limit loop, then verify full/header x local/Ray")
    p.add_argument("--limit-samples", type=int, default=50_000, help="images read by the limit loop")
    p.add_argument("--verifies", default="full,header", help="--compare: the --verify modes, in this order")
    p.add_argument("--reuse", action="store_true", help="keep a data set already generated in --dir (same size)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--rerun", action="store_true", help="then run the same command twice more on the finished "
                   "output: as is (size+mtime trusted) and with --verify-existing (every shard hashed)")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--parse-only", action="store_true", help="measure only parsing data.json (time, peak RSS)")
    args = p.parse_args()
    data_root = os.path.join(args.dir, "data")
    marker = os.path.join(args.dir, f"generated-{args.annotations}")
    if not (args.reuse and os.path.exists(marker)):
        shutil.rmtree(args.dir, ignore_errors=True)
        t = time.time()
        size = generate(data_root, args.annotations)
        with open(marker, "w"):
            pass
        print(f"generated {args.annotations} annotations, data.json {size / 1e6:.0f} MB in {time.time() - t:.0f} s", flush=True)
    if args.parse_only:
        res = parse_only(args)
    elif args.compare:
        res = compare(args, data_root)
    else:
        res = run(args, data_root, args.verify, args.cluster)
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
