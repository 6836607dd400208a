"""Controlled runs behind issue 17: why does `make demo` not learn handedness, interacting poses and MRRPE?

    .venv/bin/python -m benchmarks.handedness VARIANT [--work DIR] [--epochs N] [--key=value ...]

Each variant changes one thing against `base` (the demo as `make demo` runs it, `--epochs` epochs) and
reports the test-split table of train.demo (trained network beside the mean-pose baseline) into
WORK/VARIANT/demo_summary.json, plus a one-line summary on stdout. Variants:

  base      the demo preset as it is
  oracle    the left hand drawn blue (a marker no real picture has) and no flip augmentation (a flip
            turns a right hand into a left one but keeps its colour): can the network learn
            handedness at all in this budget when the pictures carry an unmistakable signal?
  noflip    no horizontal flip augmentation: does the flip (+ joint / validity / hand-type swap) path
            lose chirality?
  frontrig  cameras only within 55 degrees of the subject's front (the rig spans 115 either side): the
            forearm's side in the picture then tells a right hand from a left one in every camera
  htweight  the hand-type loss weighted x 100 (diagnostic only; the paper sums the three unweighted): is
            it the hand-type signal that is starved beside the heatmap loss (~300 vs ~0.6)?
  input96   96x96 input and 24^3 heatmaps instead of 64x64 and 16^3 (2.25x the pixels): is the input
            too small to show the chirality cues (nails, palm)?
Data variants (oracle, frontrig) generate their own synthetic `small` set under WORK/data-VARIANT (in
this process: the patches hold only here); the others share WORK/data-base. One variant per process
(the patches are process-wide). Results are appended to WORK/results.jsonl. Extra `--key=value`
options go to the trainer (train/config.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path[0] = str(REPO)


def _oracle_render():
    """Patch the renderer (this process and its forked workers): the left hand's albedo is blue."""
    import numpy as np

    from shards.synth import render

    original = render.surface

    def surface(ras, focal, princpt, skins):
        (vs, us), p, normal, albedo = original(ras, focal, princpt, skins)
        hand = np.array([q[1] for q in ras.prims])[ras.prim[vs, us].astype(np.int64)]
        albedo[hand == 1] = np.array([0.2, 0.3, 0.9])
        return (vs, us), p, normal, albedo

    render.surface = surface


def _front_rig():
    """Patch the generator: the rig's cameras within 55 degrees of the subject's front (not 115)."""
    from shards.synth import interhand

    interhand.RIG_AZIMUTH_DEG = 55.0


def _weight_hand_type():
    """Patch the criterion: the hand-type loss x 100 (a diagnostic, not the paper's unweighted sum)."""
    from model import loss

    original = loss.hand_type_loss
    loss.hand_type_loss = lambda pred, target, valid: 100.0 * original(pred, target, valid)


def _no_flip():
    from pipeline import graph

    graph.FLIP_PROB = 0.0


VARIANTS = {
    "base": (None, None, []),
    "oracle": ("oracle", lambda: (_oracle_render(), _no_flip()), []),
    "noflip": (None, _no_flip, []),
    "frontrig": ("frontrig", _front_rig, []),
    "htweight": (None, _weight_hand_type, []),
    "input96": (None, None, ["--model.input_size=96", "--model.depth_bins=24"]),
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.handedness", description=__doc__.split("\n")[0])
    p.add_argument("variant", choices=tuple(VARIANTS))
    p.add_argument("--work", default="/tmp/handedness")
    p.add_argument("--epochs", type=int, default=20)
    args, extra = p.parse_known_args(argv)
    from shards.atomic import atomic_write_json
    from shards.synth import generate
    from train.demo import main as demo

    work = Path(args.work).resolve()
    name = args.variant
    data, patch, overrides = VARIANTS[name]
    if patch is not None:
        patch()
    data_dir = work / f"data-{data or 'base'}"
    synth = data_dir / "synth" / "interhand"
    if data is not None and not (synth / ".complete").exists():
        # A patched renderer must run in this process: the generator's pool spawns fresh workers.
        atomic_write_json(synth / ".complete", generate(synth, size="small", seed=0, workers=1), indent=None)
    decay = max(1, round(args.epochs * 0.9))
    summary = demo(["--data", str(data_dir), "--out", str(work / name),
                    f"--epochs={args.epochs}", f"--lr_decay_epochs={decay}", "--val_every=0",
                    *overrides, *extra])
    t, m = summary["trained"], summary["mean pose"]
    line = {"variant": name, "epochs": args.epochs, "minutes": round(summary["seconds"] / 60, 1),
            **{k: round(t[k], 3) for k in t}, **{f"baseline_{k}": round(m[k], 3) for k in m}}
    print("RESULT " + json.dumps(line), flush=True)
    with open(work / "results.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
