"""Heatmap loss: the original's materialised Gaussian targets vs ours (model.loss), forward+backward.

    .venv/bin/python -m benchmarks.loss                     # batch 16, 42 x 64^3 (the paper's), CPU or CUDA
    .venv/bin/python -m benchmarks.loss --batch 4 --repeat 2
    .venv/bin/python -m benchmarks.loss --device cuda --compile   # also both forms under torch.compile

Each form runs in its own subprocess so that its peak memory is its own: on CUDA
torch.cuda.max_memory_allocated, on the CPU the process's peak resident set size (ru_maxrss) minus
its size before the inputs existed (libraries). "peak" = inputs (predicted heatmaps, labels) + the
loss's own footprint; "extra" = the peak above the inputs, including the gradient the loss must produce. Then a precision check
(batch 2, paper sizes): both forms in float32 against the materialised formula in float64, for
predictions far from, near and very near the targets (the expansion subtracts large numbers there).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from model.loss import heatmap_loss

SIGMA, PEAK = 2.5, 255.0


def materialised_loss(p, coord, valid, sigma=SIGMA, peak=PEAK):
    """The original: render every target volume, squared error masked by validity, mean over all."""
    B, J, D, H, W = p.shape
    zz, yy, xx = torch.meshgrid(*(torch.arange(n, device=p.device, dtype=p.dtype) for n in (D, H, W)), indexing="ij")
    x, y, z = (coord[:, :, i, None, None, None].to(p.dtype) for i in range(3))
    t = torch.exp(-(((xx - x) / sigma) ** 2) / 2 - (((yy - y) / sigma) ** 2) / 2 - (((zz - z) / sigma) ** 2) / 2) * peak
    return ((p - t) ** 2 * valid[:, :, None, None, None].to(p.dtype)).mean()


def ours_loss(p, coord, valid):
    return heatmap_loss(p, coord, valid, SIGMA, PEAK)


FORMS = {"materialised": materialised_loss, "ours": ours_loss}


def make_labels(B, J, S, device, g):
    coord = (torch.rand(B, J, 3, generator=g) * (S + 8) - 4).to(device)  # some centres outside the grid
    valid = (torch.rand(B, J, generator=g) > 0.2).float().to(device)
    return coord, valid


def make_inputs(B, J, S, device, regime="trained", dtype=torch.float32, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    coord, valid = make_labels(B, J, S, device, g)
    noise = {"untrained": None, "trained": 10.0, "near": 1.0, "very_near": 0.1}[regime]
    p = torch.empty(B, J, S, S, S, device=device, dtype=dtype)
    for b in range(B):  # one sample at a time: never a whole float64 batch of targets
        pb = torch.randn(J, S, S, S, generator=g).to(device)
        if noise is not None:
            t = PEAK * torch.exp(-sum(((torch.arange(S, device=device).view(*sh) - coord[b, :, i].view(J, 1, 1, 1))
                                       / SIGMA) ** 2 for i, sh in enumerate([(1, 1, S), (1, S, 1), (S, 1, 1)])) / 2)
            pb = t + noise * pb
        p[b] = pb.to(dtype)
    return p, coord, valid


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def worker(a) -> dict:
    device = torch.device(a.device)
    fn = FORMS[a.form]
    if a.compiled:
        fn = torch.compile(fn, fullgraph=True)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    empty = torch.cuda.memory_allocated() / 2**20 if cuda else rss_mb()  # before any input exists
    # random predictions made in place: input creation must not raise the process's peak memory
    coord, valid = make_labels(a.batch, a.joints, a.size, device, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    p = torch.empty(a.batch, a.joints, a.size, a.size, a.size, device=device).normal_(0, 10).requires_grad_()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = rss_mb()
    times = []
    for i in range(a.repeat + 1):  # the first run warms up (and compiles)
        p.grad = None
        sync()
        t0 = time.perf_counter()
        loss = fn(p, coord, valid)
        loss.backward()
        sync()
        if i:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"form": a.form + ("+compile" if a.compiled else ""), "ms": 1e3 * sorted(times)[len(times) // 2],
            "peak_mb": peak - empty, "extra_mb": peak - base, "input_mb": p.numel() * p.element_size() / 2**20,
            "loss": loss.item()}


def run_worker(a, form, compiled) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.loss", "--worker", form, "--batch", str(a.batch), "--joints", str(a.joints),
           "--size", str(a.size), "--repeat", str(a.repeat), "--device", a.device] + (["--compiled"] if compiled else [])
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"{form} worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def precision(device, S, J) -> list[str]:
    rows = []
    for regime in ("untrained", "trained", "near", "very_near"):
        p, coord, valid = make_inputs(2, J, S, device, regime, seed=1)
        p64 = p.double().requires_grad_()
        ref = materialised_loss(p64, coord.double(), valid.double())
        ref.backward()
        cols = [f"{regime:>10}", f"{ref.item():12.4f}"]
        for name in ("materialised", "ours"):
            p32 = p.clone().requires_grad_()
            val = FORMS[name](p32, coord, valid)
            val.backward()
            verr = abs(val.double().item() - ref.item()) / ref.item()
            gerr = ((p32.grad.double() - p64.grad).abs().max() / p64.grad.abs().max()).item()
            cols += [f"{verr:9.1e}", f"{gerr:9.1e}"]
        rows.append(" ".join(cols))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--joints", type=int, default=42)
    ap.add_argument("--size", type=int, default=64, help="D = H = W of the heatmaps")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up (median reported)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--compile", action="store_true", help="also time both forms under torch.compile")
    ap.add_argument("--no-precision", action="store_true")
    ap.add_argument("--worker", choices=sorted(FORMS), help=argparse.SUPPRESS)
    ap.add_argument("--compiled", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        a.form = a.worker
        print(json.dumps(worker(a)))
        return
    print(f"heatmap loss fwd+bwd, batch {a.batch}, {a.joints} x {a.size}^3 float32, {a.device} "
          f"({torch.get_num_threads()} threads), median of {a.repeat}")
    rows = [run_worker(a, f, False) for f in FORMS]
    if a.compile:
        rows += [run_worker(a, f, True) for f in FORMS]
    print(f"{'form':>22} {'time ms':>10} {'peak MB':>10} {'extra MB':>10} {'loss':>14}   (inputs {rows[0]['input_mb']:.0f} MB)")
    for r in rows:
        print(f"{r['form']:>22} {r['ms']:10.1f} {r['peak_mb']:10.0f} {r['extra_mb']:10.0f} {r['loss']:14.6f}")
    m, o = rows[0], rows[1]
    print(f"materialised / ours: time {m['ms'] / o['ms']:.2f}x, peak memory {m['peak_mb'] / o['peak_mb']:.2f}x, "
          f"extra memory {m['extra_mb'] / max(o['extra_mb'], 1e-9):.2f}x, "
          f"loss rel. diff {abs(m['loss'] - o['loss']) / abs(m['loss']):.1e}")
    if not a.no_precision:
        print(f"\nprecision vs float64 materialised (batch 2, {a.joints} x {a.size}^3): relative error of the value, "
              "max |grad error| / max |grad|")
        print(f"{'regime':>10} {'loss (fp64)':>12} {'orig val':>9} {'orig grad':>9} {'ours val':>9} {'ours grad':>9}")
        for line in precision(torch.device(a.device), a.size, a.joints):
            print(line)


if __name__ == "__main__":
    main()
