"""Controlled runs behind issue 17: why does `make demo` not learn handedness, interacting poses and MRRPE?

    .venv/bin/python -m benchmarks.handedness VARIANT [--work DIR] [--epochs N] [--scale PREFIX=X ...] [--tag T] [--key=value ...]

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
  fewseq    the `small` set as it was before, the same number of pictures from 1/4 of the sequences
            (train 4 captures x 6 sequences x 12 frames instead of 24 x 3; test 6 x 10 instead of
            30 x 2): 8 right-hand sequences in train, each one base placement of the hand.
  htonly    the hand-type loss alone (heatmap and root-depth losses x 0; diagnostic only): can this
            network learn chirality from these pictures in this budget when nothing else competes?
  htlr      --lr_scales=pose_net.hand_fc.=0.1: the hand-type MLP at a tenth of the rate, the rest at
            the rate (diagnostic; the paper uses one rate): benchmarks.chirality_probe stays at chance
            at 3e-3 and learns at 3e-4 - is it the head's rate that stops the demo?
  bblr      --lr_scales=backbone_net.=0.1,pose_net.hand_fc.=0.1: the backbone and the hand-type MLP at
            a tenth of the rate, the joint and root-depth heads at the rate: the probe learns right
            from left with its backbone at 3e-4 - do the features for it appear when only the
            backbone is slowed, and what do the poses lose? (Today's demo preset, so `base` equals it.)
The README's table ran every variant on the demo preset of one rate, 3e-3; add `--lr=3e-3 --lr_scales=`
(`--lr=3e-3` for htlr and bblr) to repeat them.
Besides the paper's metrics, each run reports handedness split into its two parts on the test and
the train split (docs/conventions.md 7.5): `hand_count_auc` (two hands vs one) and `chirality_auc`
(right vs left among single hands); 0.5 is chance. The train figures tell underfitting (low on both
splits) from overfitting (high on train only).
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


def _few_sequences():
    """Patch the synthetic set's sizes: `small` as it was, 1/4 of today's sequences, as many pictures."""
    from shards.synth import common

    common.SIZES["small"] = {"train": (4, 6, 6, 12), "val": (1, 6, 6, 10), "test": (2, 6, 6, 10)}


def _hand_type_only():
    """Patch the criterion: heatmap and root-depth losses x 0 (a diagnostic: only the hand type is learnt)."""
    from model import loss

    heat, root = loss.heatmap_loss, loss.root_depth_loss
    loss.heatmap_loss = lambda *a, **k: 0.0 * heat(*a, **k)
    loss.root_depth_loss = lambda *a, **k: 0.0 * root(*a, **k)


def split_parts(predictions: dict, split_url: str) -> dict:
    """eval.metrics.handedness_parts of hand-type outputs against a split's GT (hand_type_valid samples)."""
    from eval.gt import align, load_gt
    from eval.metrics import handedness_parts

    gt = load_gt(split_url, progress=False)
    ht = predictions["hand_type"][align(gt["annot_id"], predictions["annot_id"])]
    valid = gt["hand_type_valid"].reshape(-1) > 0
    return handedness_parts(gt["hand_code"][valid], ht[valid])


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
    "htonly": (None, _hand_type_only, []),
    "fewseq": ("fewseq", _few_sequences, []),
    "htlr": (None, None, ["--lr_scales=pose_net.hand_fc.=0.1"]),
    "bblr": (None, None, ["--lr_scales=backbone_net.=0.1,pose_net.hand_fc.=0.1"]),
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.handedness", description=__doc__.split("\n")[0])
    p.add_argument("variant", choices=tuple(VARIANTS))
    p.add_argument("--work", default="/tmp/handedness")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--scale", action="append", default=[], metavar="PREFIX=X",
                   help="parameters whose names start with PREFIX step at X x the rate (repeatable; "
                        "together they replace the variant's and the preset's --lr_scales)")
    p.add_argument("--tag", default="", help="a suffix for the run folder and the results line")
    args, extra = p.parse_known_args(argv)
    from shards.atomic import atomic_write_json
    from shards.synth import generate
    from train.demo import main as demo

    work = Path(args.work).resolve()
    name = args.variant
    data, patch, overrides = VARIANTS[name]
    if patch is not None:
        patch()
    if args.scale:
        from train.config import parse_lr_scales

        try:
            parse_lr_scales(",".join(args.scale))
        except ValueError as e:
            p.error(f"--scale: {e}")
        overrides = [*overrides, "--lr_scales=" + ",".join(args.scale)]
    name_dir = name + (f"-{args.tag}" if args.tag else "")
    data_dir = work / f"data-{data or 'base'}"
    synth = data_dir / "synth" / "interhand"
    if data is not None and not (synth / ".complete").exists():
        # A patched renderer must run in this process: the generator's pool spawns fresh workers.
        atomic_write_json(synth / ".complete", generate(synth, size="small", seed=0, workers=1), indent=None)
    decay = max(1, round(args.epochs * 0.9))
    summary = demo(["--data", str(data_dir), "--out", str(work / name_dir),
                    f"--epochs={args.epochs}", f"--lr_decay_epochs={decay}", "--val_every=0",
                    *overrides, *extra])
    from eval.run_checkpoint import predict_checkpoint

    t, m = summary["trained"], summary["mean pose"]
    shards = data_dir / "shards" / "interhand"
    # the test split's AUCs are in the demo's table already (hand_count_auc, chirality_auc)
    train = split_parts(predict_checkpoint(str(work / name_dir / "final.pt"), str(shards), "train", progress=False),
                        str(shards / "train"))
    config = json.loads((work / name_dir / "config.json").read_text())
    line = {"variant": name, "tag": args.tag, "lr": config["lr"], "lr_scales": config["lr_scales"], "epochs": args.epochs, "minutes": round(summary["seconds"] / 60, 1),
            **{k: round(t[k], 3) for k in t}, **{f"baseline_{k}": round(m[k], 3) for k in m},
            **{f"train_{k}": round(v, 3) for k, v in train.items()}}
    print("RESULT " + json.dumps(line), flush=True)
    with open(work / "results.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
