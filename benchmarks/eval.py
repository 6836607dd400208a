"""Vectorised evaluation vs. a per-sample, per-joint loop written like the original's evaluate().

    .venv/bin/python -m benchmarks.eval                       # 849,160 samples, loop timed on 20,000
    .venv/bin/python -m benchmarks.eval --loop-samples 0      # loop over all samples too (slow)
    .venv/bin/python -m benchmarks.eval --samples 50000 --loop-samples 5000

Synthetic GT and predictions of the real test split's size (849,160 annotations). Ours converts
InterNet's output space to camera space (bins -> patch -> image through the unaugmented crop -> mm ->
back-projection) and computes every metric; the loop does the same the original way, one sample and
one joint at a time. Both run on the same samples and must give the same numbers. When the loop runs
on a subset, its time is extrapolated linearly to the full size (printed as such).
"""
import argparse
import resource
import time

import numpy as np

from eval.convert import crop_inv_trans, output_to_camera
from eval.metrics import compute_metrics

TEST_SPLIT_SIZE = 849_160
IN, HM = 256, 64
KEYS = ("mpjpe_single", "mpjpe_interacting", "mpjpe_all", "mrrpe", "handedness_accuracy")


def synthetic(n: int, seed: int = 0) -> dict:
    """GT and predictions in the shapes and dtypes the evaluation sees (float32 like the originals)."""
    rng = np.random.default_rng(seed)
    code = rng.integers(0, 3, n)
    depth = rng.uniform(500, 1200, (n, 2)).astype(np.float32)
    cam = rng.normal(0, 40, (n, 42, 3)).astype(np.float32)
    cam[:, :21, 2] += depth[:, :1]
    cam[:, 21:, 2] += depth[:, 1:]
    cam[:, 20], cam[:, 41] = [0, 0, 0], [60, 0, 0]
    cam[:, 20, 2], cam[:, 41, 2] = depth[:, 0], depth[:, 1]
    valid = (rng.random((n, 42)) > 0.1).astype(np.float32)
    valid[code == 0, 21:] = 0
    valid[code == 1, :21] = 0
    valid[:, :21] *= valid[:, 20:21]
    valid[:, 21:] *= valid[:, 41:42]
    valid[:2] = 1  # every joint has data in both sets
    code[0], code[1] = 0, 2
    bbox = np.concatenate([rng.uniform(50, 250, (n, 2)), np.repeat(rng.uniform(80, 200, (n, 1)), 2, 1)], 1)
    return {"hand_type": np.array(["right", "left", "interacting"])[code],
            "hand_type_valid": (rng.random(n) > 0.05).astype(np.float32), "joint_cam": cam, "joint_valid": valid,
            "bbox": bbox.astype(np.float32), "abs_depth": depth,
            "focal": rng.uniform(1200, 1300, (n, 2)).astype(np.float32),
            "princpt": rng.uniform(150, 260, (n, 2)).astype(np.float32),
            "pred_joint_coord": rng.uniform(0, HM, (n, 42, 3)).astype(np.float32),
            "pred_rel_root_depth": rng.uniform(0, HM, n).astype(np.float32),
            "pred_hand_type": rng.uniform(0, 1, (n, 2)).astype(np.float32)}


def ours(d: dict) -> dict:
    conv = output_to_camera(d["pred_joint_coord"], d["pred_rel_root_depth"], d["bbox"], d["abs_depth"], d["focal"],
                            d["princpt"], IN, HM)
    return compute_metrics(conv["joint_cam"], d["joint_cam"], d["joint_valid"], d["hand_type"], d["hand_type_valid"],
                           d["pred_hand_type"], conv["root_vec"])


def loop(d: dict, inv_trans: np.ndarray) -> dict:
    """The original's evaluate(), one sample and one joint at a time (inv_trans comes from its loader)."""
    def pixel2cam(p, f, c):
        x = (p[:, 0] - c[0]) / f[0] * p[:, 2]
        y = (p[:, 1] - c[1]) / f[1] * p[:, 2]
        return np.stack((x, y, p[:, 2]), 1)

    n = len(d["hand_type"])
    sh, ih = [[] for _ in range(42)], [[] for _ in range(42)]
    mrrpe, acc, cnt = [], 0, 0
    right, left = np.arange(21), np.arange(21, 42)
    for i in range(n):
        ht, valid = d["hand_type"][i], d["joint_valid"][i]
        f, c = d["focal"][i].astype(np.float64), d["princpt"][i].astype(np.float64)
        gt = d["joint_cam"][i].astype(np.float64)
        p = d["pred_joint_coord"][i].astype(np.float64)
        p[:, 0] = p[:, 0] / HM * IN
        p[:, 1] = p[:, 1] / HM * IN
        for j in range(42):
            p[j, :2] = np.dot(inv_trans[i], np.array([p[j, 0], p[j, 1], 1.0]))[:2]
        p[:, 2] = (p[:, 2] / HM * 2 - 1) * 200.0
        depth = d["abs_depth"][i].astype(np.float64)
        if ht == "interacting" and valid[41] and valid[20]:
            rel = (float(d["pred_rel_root_depth"][i]) / HM * 2 - 1) * 200.0
            lr = p[41].copy()
            lr[2] += depth[0] + rel
            rr = p[20].copy()
            rr[2] += depth[0]
            pred_rel = pixel2cam(lr[None], f, c)[0] - pixel2cam(rr[None], f, c)[0]
            mrrpe.append(float(np.sqrt(np.sum((pred_rel - (gt[41] - gt[20])) ** 2))))
        p[right, 2] += depth[0]
        p[left, 2] += depth[1]
        pc = pixel2cam(p, f, c)
        for idx, root in ((right, 20), (left, 41)):
            pc[idx] = pc[idx] - pc[root, None, :]
            gt[idx] = gt[idx] - gt[root, None, :]
        for j in range(42):
            if valid[j]:
                (sh if ht in ("right", "left") else ih)[j].append(np.sqrt(np.sum((pc[j] - gt[j]) ** 2)))
        if d["hand_type_valid"][i]:
            q = d["pred_hand_type"][i]
            if ht == "right" and q[0] > 0.5 and q[1] < 0.5:
                acc += 1
            elif ht == "left" and q[0] < 0.5 and q[1] > 0.5:
                acc += 1
            elif ht == "interacting" and q[0] > 0.5 and q[1] > 0.5:
                acc += 1
            cnt += 1
    per_all = [np.mean(np.concatenate((np.stack(sh[j]), np.stack(ih[j])))) for j in range(42)]
    return {"mpjpe_all": np.mean(per_all), "mpjpe_per_joint_all": np.array(per_all),
            "mpjpe_single": np.mean([np.mean(np.stack(v)) for v in sh]),
            "mpjpe_interacting": np.mean([np.mean(np.stack(v)) for v in ih]),
            "mrrpe": sum(mrrpe) / len(mrrpe), "handedness_accuracy": acc / cnt}


def subset(d: dict, n: int) -> dict:
    return {k: v[:n] for k, v in d.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=TEST_SPLIT_SIZE)
    ap.add_argument("--loop-samples", type=int, default=20_000, help="loop on the first N samples (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="time ours this many times, report the best")
    a = ap.parse_args(argv)
    n_loop = a.samples if a.loop_samples <= 0 else min(a.loop_samples, a.samples)
    print(f"generating {a.samples:,} synthetic samples ...", flush=True)
    d = synthetic(a.samples, a.seed)

    times, cpus = [], []
    for _ in range(max(1, a.repeat)):
        t, c = time.perf_counter(), time.process_time()
        m_full = ours(d)
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    t_ours, c_ours = min(times), min(cpus)
    print(f"ours (vectorised), {a.samples:,} samples: best {t_ours:.2f} s wall, {c_ours:.2f} s CPU of {len(times)} "
          f"runs (wall {', '.join(f'{x:.2f}' for x in times)})  "
          f"(MPJPE all {m_full['mpjpe_all']:.4f} mm, MRRPE {m_full['mrrpe']:.4f} mm, "
          f"handedness {m_full['handedness_accuracy']:.4f}); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB", flush=True)

    s = subset(d, n_loop)
    m_sub = m_full if n_loop == a.samples else ours(s)
    inv = crop_inv_trans(s["bbox"], IN)  # the original's loader hands evaluate() these
    t, c = time.perf_counter(), time.process_time()
    m_loop = loop(s, inv)
    t_loop, c_loop = time.perf_counter() - t, time.process_time() - c
    est, est_c = t_loop * a.samples / n_loop, c_loop * a.samples / n_loop
    note = "" if n_loop == a.samples else f" -> {est:.1f} s wall, {est_c:.1f} s CPU extrapolated linearly to {a.samples:,}"
    print(f"loop (the original's way), {n_loop:,} samples: {t_loop:.2f} s wall, {c_loop:.2f} s CPU{note}")

    worst = 0.0
    for k in KEYS + ("mpjpe_per_joint_all",):
        o, r = np.asarray(m_sub[k], dtype=np.float64), np.asarray(m_loop[k], dtype=np.float64)
        worst = max(worst, float(np.max(np.abs(o - r) / np.maximum(np.abs(r), 1e-300))))
        if not np.allclose(o, r, rtol=1e-12, atol=0):
            raise SystemExit(f"MISMATCH on {k}: ours {o} vs loop {r}")
    same = "bit-identical" if worst == 0 else f"identical within rel. {worst:.1e} (float64 rounding)"
    print(f"numbers on the {n_loop:,} common samples: {same}")
    for k in KEYS:
        print(f"  {k:<20} ours {m_sub[k]:.10f}   loop {m_loop[k]:.10f}")
    print(f"speed-up: {est / t_ours:.0f}x wall, {est_c / c_ours:.0f}x CPU time (loop{' extrapolated' if note else ''} "
          f"{est:.1f} s / {est_c:.1f} s CPU vs ours {t_ours:.2f} s / {c_ours:.2f} s CPU, {a.samples:,} samples; "
          f"CPU time is the fairer figure on a shared machine)")


if __name__ == "__main__":
    main()
