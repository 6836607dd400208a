"""How hard is right-vs-left in the synthetic pictures on its own? A dedicated classifier, no pose heads.

    .venv/bin/python -m benchmarks.chirality_probe VARIANT [--work DIR] [--steps N] [--evals K] [--lr LR]
                                                   [--opt adam|sgd] [--warmup STEPS]

The demo network learns to count hands but not which hand it sees (README, "Why handedness is not learnt
in the demo"). This probe takes everything else away: the demo's backbone (ResNet-18 from random
weights, model/resnet.py) and InterNet's hand-type MLP (512 -> 512 -> 2, sigmoid, binary cross-entropy
on [right, left]) trained on the single-hand samples only, 64 x 64 crops of the processed GT bbox (what
the pipeline crops), with the pipeline's own augmentation ranges (pipeline/graph.py: flip with the
label swapped, rotation, scale, shift, colour), Adam (--lr, default 3e-3: the demo preset's one rate
before its --lr_scales; --opt sgd:
momentum 0.9, Nesterov; --warmup: a linear warm-up of the rate), batch 32,
bf16 on the CPU. It reports the right-vs-left ROC AUC (eval.metrics.roc_auc of p_right - p_left;
0.5 = chance) on the train split (unaugmented) and the test split at K points of the run. Variants
(one change each against `base`):

  base    the `small` set as `make demo` draws it (train: 1,046 single hands with a valid hand type)
  palm    the same set drawn with every palm-side pixel white and the back darkened to 0.6 x its skin:
          which side faces the camera made unmistakable (an exaggeration no real hand has; a diagnostic
          of whether that cue is what is missing)
  medium  the `medium` set (5,229 single hands in train, 5 x as many distinct pictures), the same steps
  noflip  base without the flip: cues that are not chiral (the forearm's side, a sequence's look) may
          then stand in for chirality, as they cannot when every picture also appears mirrored

Sets are generated under WORK/data-<set> when missing (`palm` in this process, with the patched
renderer: the generator's pool would spawn workers without the patch). One JSON line per variant is
printed and appended to WORK/results_probe.jsonl. Figures: README, "Why handedness is not learnt in
the demo".
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path[0] = str(REPO)

INPUT = 64
BATCH = 32
VARIANTS = ("base", "palm", "medium", "noflip")
OPTIMISERS = ("adam", "sgd")


def _palm_render():
    """Patch the renderer (this process only): palm side white, back side 0.6 x its albedo."""
    from shards.synth import render

    original = render.surface

    def surface(ras, focal, princpt, skins):
        (vs, us), p, normal, albedo = original(ras, focal, princpt, skins)
        palm_n = np.array([q[2] for q in ras.prims])[ras.prim[vs, us].astype(np.int64)]
        palm = np.einsum("ij,ij->i", normal, palm_n) > 0
        albedo[palm] = 0.95
        albedo[~palm] *= 0.6
        return (vs, us), p, normal, albedo

    render.surface = surface


def single_hand_crops(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 64, 64, 3) uint8 crops of the processed GT bbox and (N,) bool right, single hands only."""
    import simplejpeg

    from benchmarks.handedness_detector import crop
    from shards.reader import iter_records

    images, right = [], []
    for rec in iter_records("interhand", root, split):
        if rec["hand_type"] == "interacting" or not rec["hand_type_valid"]:
            continue
        with open(rec["image_path"], "rb") as f:
            images.append(crop(simplejpeg.decode_jpeg(f.read()), rec["bbox"], INPUT))
        right.append(rec["hand_type"] == "right")
    return np.stack(images), np.array(right, dtype=bool)


def augment(x, right, gen, flip: bool = True):
    """A training batch as the pipeline varies it: x (B, 3, H, W) float, right (B,) bool -> (x, target
    (B, 2) [right, left]). A flipped picture shows the other hand, so its label is swapped."""
    import torch
    import torch.nn.functional as F

    from pipeline import graph

    b = x.shape[0]
    u = lambda: torch.rand(b, generator=gen)  # noqa: E731
    n = lambda lim: torch.randn(b, generator=gen).clamp(-lim, lim)  # noqa: E731
    mirror = (u() < graph.FLIP_PROB) if flip else torch.zeros(b, dtype=torch.bool)
    x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    is_right = right ^ mirror
    rot = n(2.0) * math.radians(graph.ROT_FACTOR) * (u() < graph.ROT_PROB)
    scale = 1.0 + n(1.0) * graph.SCALE_FACTOR
    shift = (torch.rand(b, 2, generator=gen) * 2 - 1) * graph.TRANS_FACTOR * 2  # bbox fraction -> [-1, 1] units
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(rot) / scale, -torch.sin(rot) / scale
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(rot) / scale, torch.cos(rot) / scale
    theta[:, :, 2] = shift
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    colour = 1.0 + (torch.rand(b, 3, 1, 1, generator=gen) * 2 - 1) * graph.COLOR_FACTOR
    target = torch.stack([is_right, ~is_right], 1).float()
    return (x * colour).clamp(0, 1), target


class Probe:
    """The demo backbone + InterNet's hand-type MLP, from random weights."""

    def __init__(self, seed: int):
        import torch
        from torch import nn

        from model.internet import _mlp
        from model.resnet import ResNet

        torch.manual_seed(seed)
        self.net = nn.ModuleDict({"resnet": ResNet(18, True), "hand_fc": _mlp(512, 2)})

    def __call__(self, x):
        return self.net["hand_fc"](self.net["resnet"]((x - 0.45) / 0.25).mean((2, 3)))

    def auc(self, x, right) -> float:
        import torch

        from eval.metrics import roc_auc

        self.net.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            p = torch.cat([torch.sigmoid(self(x[i:i + 256]).float()) for i in range(0, len(x), 256)])
        self.net.train()
        return round(roc_auc((p[:, 0] - p[:, 1]).numpy(), right), 3)


def make_optimizer(params, opt: str, lr: float):
    """`adam` (the paper's and the demo's) or `sgd` (momentum 0.9, Nesterov)."""
    import torch

    if opt == "adam":
        return torch.optim.Adam(params, lr)
    if opt == "sgd":
        return torch.optim.SGD(params, lr, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimiser {opt!r}; known: {', '.join(OPTIMISERS)}")


def lr_at(step: int, lr: float, warmup: int) -> float:
    """The rate of step 1, 2, ...: linear from lr / warmup up to lr at step `warmup`, then lr."""
    return lr * min(1.0, step / warmup) if warmup > 0 else lr


def run(root: str, steps: int, evals: int, flip: bool = True, seed: int = 0, lr: float = 3e-3,
        opt: str = "adam", warmup: int = 0, progress=print) -> dict:
    """Train the probe for `steps` batches on ROOT's single hands; AUCs at `evals` points. `warmup`: the
    rate rises linearly from lr / warmup to lr over the first `warmup` steps."""
    import torch
    import torch.nn.functional as F

    t0 = time.perf_counter()
    data = {s: single_hand_crops(root, s) for s in ("train", "test")}
    as_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
    (xtr, rtr), (xte, rte) = ((as_tensor(x), r) for x, r in data.values())
    rtr_t = torch.from_numpy(rtr)
    probe = Probe(seed)
    optimizer = make_optimizer(probe.net.parameters(), opt, lr)
    gen = torch.Generator().manual_seed(seed)
    marks = {round(steps * (k + 1) / evals) for k in range(evals)}
    curve, order, t_train = [], torch.empty(0, dtype=torch.long), 0.0
    for step in range(1, steps + 1):
        t1 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, lr, warmup)
        if len(order) < BATCH:
            order = torch.randperm(len(xtr), generator=gen)
        idx, order = order[:BATCH], order[BATCH:]
        x, target = augment(xtr[idx], rtr_t[idx], gen, flip)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.binary_cross_entropy_with_logits(probe(x).float(), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        t_train += time.perf_counter() - t1
        if step in marks:
            point = {"step": step, "epochs": round(step * BATCH / len(xtr), 1), "train_s": round(t_train),
                     "train_auc": probe.auc(xtr, rtr), "test_auc": probe.auc(xte, rte)}
            curve.append(point)
            progress(json.dumps(point))
    return {"train_single_hands": len(xtr), "test_single_hands": len(xte), "steps": steps, "batch": BATCH,
            "lr": lr, "opt": opt, "warmup": warmup, "flip": flip, "curve": curve,
            "seconds": round(time.perf_counter() - t0)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.chirality_probe", description=__doc__.split("\n")[0])
    p.add_argument("variant", choices=VARIANTS)
    p.add_argument("--work", default="/tmp/handedness", help="shares data-base with benchmarks.handedness")
    p.add_argument("--steps", type=int, default=840, help="batches of 32 (840: 24 epochs of base's train)")
    p.add_argument("--evals", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=3e-3, help="learning rate (3e-3: the demo preset's one rate before its --lr_scales)")
    p.add_argument("--opt", choices=OPTIMISERS, default="adam", help="adam, or sgd (momentum 0.9, Nesterov)")
    p.add_argument("--warmup", type=int, default=0, help="steps of linear learning-rate warm-up (0: none)")
    args = p.parse_args(argv)
    from shards.atomic import atomic_write_json
    from shards.synth import generate

    work = Path(args.work).resolve()
    data = {"palm": "palm", "medium": "medium"}.get(args.variant, "base")
    synth = work / f"data-{data}" / "synth" / "interhand"
    if not (synth / ".complete").exists():
        if data == "palm":
            _palm_render()
        summary = generate(synth, size="medium" if data == "medium" else "small", seed=0,
                           workers=1 if data == "palm" else None)
        atomic_write_json(synth / ".complete", summary, indent=None)
    line = {"variant": args.variant, **run(str(synth), args.steps, args.evals, flip=args.variant != "noflip",
                                           seed=args.seed, lr=args.lr, opt=args.opt, warmup=args.warmup)}
    print("RESULT " + json.dumps(line), flush=True)
    with open(work / "results_probe.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
