"""Score hand-pose predictions on a split with the paper's metrics (docs/conventions.md §7).

Score a predictions file (form (a) InterNet output space or (b) camera space, see eval/score.py):
    python -m eval --predictions preds.npz --shards data/shards/interhand --split test --out runs/eval
Run a checkpoint through the pipeline and the model, then score (torchrun-aware):
    python -m eval --checkpoint runs/x/last.pt --shards data/shards/interhand --split val --out runs/eval
    torchrun --nproc_per_node 8 -m eval --checkpoint ... --device cuda ...
Add --rootnet to take the bbox and root depth from RootNet (the original's trans_test = 'rootnet').
Writes OUT/metrics.json, OUT/per_joint.csv, OUT/per_joint.png, OUT/best.png, OUT/worst.png
(and OUT/predictions.npz with --checkpoint) and prints a summary table.
"""
import argparse
import os
import sys

import numpy as np

from shards.atomic import atomic_write_json, atomic_write_npz, atomic_write_text
from shards.cli import run_cli
from shards.skeleton import JOINT_NAMES, NUM_JOINTS

from .convert import GEOMETRY_KEYS
from .gt import load_gt, load_images, split_url
from .metrics import to_jsonable
from .score import check_predictions, image_points, load_predictions, score


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m eval", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--predictions", help=".npz of predictions, form (a) or (b)")
    src.add_argument("--checkpoint", help="model checkpoint: run inference through the pipeline first")
    p.add_argument("--shards", required=True, help="shard root (OUT of `make shards`; any fsspec URL for --predictions)")
    p.add_argument("--split", required=True, help="split folder under --shards (val, test, ...)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--rootnet", action="store_true", help="bbox and root depth from RootNet instead of the GT")
    p.add_argument("--input-size", type=int, nargs="+", help="form (a): input patch W [H] (default 256 or the file's)")
    p.add_argument("--heatmap-size", type=int, nargs="+", help="form (a): heatmap D [H W] (default 64 or the file's)")
    p.add_argument("--pictures", type=int, default=8, help="best and worst samples to draw (0: none)")
    p.add_argument("--batch-size", type=int, default=32, help="--checkpoint: images per batch per rank")
    p.add_argument("--no-verify-shards", action="store_true",
                   help="--checkpoint: skip hashing the shards against their manifest's sha256 before reading")
    p.add_argument("--device", default=None, help="--checkpoint: cpu or cuda (default: cuda when available)")
    p.add_argument("--cache-dir", help="--checkpoint from a URL: copy the split here once (sha256-checked) and read "
                                       "it locally (default: DALI reads s3:// itself, other URLs go to ~/.cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="a traceback instead of the one-line error")
    a = p.parse_args(argv)
    if a.pictures < 0:
        p.error("--pictures must be >= 0")
    return a


def summary_table(m: dict) -> str:
    def f(v, unit="", digits=2):
        return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}{unit}"
    rows = [("MPJPE single hand", m["num_single"], f(m["mpjpe_single"], " mm")),
            ("MPJPE interacting", m["num_interacting"], f(m["mpjpe_interacting"], " mm")),
            ("MPJPE all", m["num_samples"], f(m["mpjpe_all"], " mm")),
            ("MRRPE", m["mrrpe_count"], f(m["mrrpe"], " mm")),
            ("Handedness accuracy", m["handedness_count"],
             "n/a" if not np.isfinite(m["handedness_accuracy"]) else f"{m['handedness_accuracy']:.4f}")]
    lines = [f"{'metric':<22}{'samples':>10}{'value':>14}", "-" * 46]
    lines += [f"{name:<22}{n:>10}{v:>14}" for name, n, v in rows]
    # Not the paper's: handedness split into its parts (docs/conventions.md 7.5).
    lines += [f"{'  hand count AUC':<22}{'':>10}{f(m['hand_count_auc'], digits=3):>14}",
              f"{'  chirality AUC':<22}{'':>10}{f(m['chirality_auc'], digits=3):>14}"]
    return "\n".join(lines)


def per_joint_csv(m: dict) -> str:
    lines = ["joint,name,mpjpe_single,count_single,mpjpe_interacting,count_interacting,mpjpe_all,count_all"]
    fmt = lambda v: "" if not np.isfinite(v) else f"{v:.4f}"  # noqa: E731
    for j in range(NUM_JOINTS):
        lines.append(f"{j},{JOINT_NAMES[j]},{fmt(m['mpjpe_per_joint_single'][j])},{m['joint_count_single'][j]},"
                     f"{fmt(m['mpjpe_per_joint_interacting'][j])},{m['joint_count_interacting'][j]},"
                     f"{fmt(m['mpjpe_per_joint_all'][j])},{m['joint_count_all'][j]}")
    return "\n".join(lines) + "\n"


def draw_extremes(preds, gt, result, out, k, rootnet):
    """best.png / worst.png: the k samples with the lowest / highest mean joint error."""
    from . import plots

    err = result["sample_error"]
    ok = np.flatnonzero(np.isfinite(err))
    if k == 0 or ok.size == 0:
        return []
    order = ok[np.argsort(err[ok], kind="stable")]
    sets = {"best": order[:k], "worst": order[::-1][:k]}
    jpgs = load_images(gt, np.concatenate(list(sets.values())))
    written = []
    for name, rows in sets.items():
        imgs = [plots.decode_image(jpgs[int(r)]) for r in rows]
        titles = [f"annot {int(gt['annot_id'][r])}: {err[r]:.1f} mm" for r in rows]
        uv = image_points(preds, gt, result, rows, rootnet)
        written.append(plots.overlay_grid(imgs, uv, gt["joint_img"][rows, :, :2],
                                          gt["joint_valid"][rows] > 0, titles, os.path.join(out, f"{name}.png")))
    return written


def report(preds: dict, shards: str, split: str, out: str, *, source: str, rootnet: bool = False,
           pictures: int = 8, quiet: bool = False) -> dict:
    """Score checked predictions (score.check_predictions) against the split, write the outputs to
    `out`, print the table; returns the metrics."""
    from .plots import per_joint_chart

    gt = load_gt(split_url(shards, split), progress=not quiet)
    result = score(preds, gt, rootnet=rootnet, source=source)
    m = result["metrics"]
    meta = {"split": split, "shards": shards, "rootnet": bool(rootnet), "predictions": source,
            "form": preds["form"]}
    if preds["form"] == "a":
        meta.update({k: (list(preds[k]) if isinstance(preds[k], tuple) else preds[k]) for k in GEOMETRY_KEYS})
    os.makedirs(out, exist_ok=True)
    atomic_write_json(os.path.join(out, "metrics.json"), {**to_jsonable(m), "meta": meta})
    atomic_write_text(os.path.join(out, "per_joint.csv"), per_joint_csv(m))
    per_joint_chart(m, os.path.join(out, "per_joint.png"))
    draw_extremes(preds, gt, result, out, pictures, rootnet)
    print(f"{split} ({'RootNet' if rootnet else 'GT'} bbox and root depth), {source}:")
    print(summary_table(m))
    print(f"wrote {out}/metrics.json, per_joint.csv, per_joint.png" + (", best.png, worst.png" if pictures else ""))
    return m


def main(argv=None):
    args = parse_args(argv)
    common = dict(rootnet=args.rootnet, pictures=args.pictures, quiet=args.quiet)
    if args.predictions:
        preds = load_predictions(args.predictions, args.input_size, args.heatmap_size)
        return report(preds, args.shards, args.split, args.out, source=args.predictions, **common)
    from .run_checkpoint import predict_checkpoint

    raw = predict_checkpoint(args.checkpoint, args.shards, args.split, device=args.device,
                             batch_size=args.batch_size, rootnet=args.rootnet, progress=not args.quiet,
                             cache_dir=args.cache_dir, verify=not args.no_verify_shards)
    if raw is None:  # a non-zero rank under torchrun: rank 0 scores
        return None
    path = os.path.join(args.out, "predictions.npz")
    atomic_write_npz(path, raw)
    preds = check_predictions(raw, path)
    return report(preds, args.shards, args.split, args.out, source=path, **common)


def cli(argv=None) -> int:
    """main() with every failure as one line naming what is wrong (exit 2); --debug: the traceback."""
    return run_cli(main, "python -m eval", argv)  # DataError is a RuntimeError


if __name__ == "__main__":
    sys.exit(cli())
