"""The embedded demo, end to end on the CPU in minutes (the README's first command: `make demo`).

    python -m train.demo [--out RUN_DIR] [--data DATA_DIR] [--size small] [--key=value ...]

1. generates the synthetic InterHand2.6M set (once; deterministic) under DATA_DIR/synth/interhand,
2. converts it to shards under DATA_DIR/shards/interhand (resumes: finished shards are kept),
3. trains the `demo` preset (ResNet-18, 64x64 input, 16^3 heatmaps, 64-channel heads; 20 epochs,
   validating every 5),
4. evaluates on the test split and, for comparison, the untrained network and the training set's
   mean root-relative pose; prints the three side by side and writes pictures to RUN_DIR.
Extra `--key=value` options go to the trainer (see train/config.py), e.g. `--epochs=2`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from shards.atomic import atomic_write_json, atomic_write_npz, atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def prepare_data(data_dir: Path, size: str, seed: int) -> Path:
    from shards.__main__ import summary
    from shards.sources import get_source
    from shards.synth import generate
    from shards.writer import convert_split

    synth = data_dir / "synth" / "interhand"  # the same folders `make shards` uses
    done = synth / ".complete"
    if not done.exists():
        print(f"[demo] generating the synthetic set ({size}) in {synth}", flush=True)
        summary_ = generate(synth, size=size, seed=seed)
        atomic_write_json(done, summary_, indent=None)
    shards = data_dir / "shards" / "interhand"
    print(f"[demo] building shards in {shards}", flush=True)
    source = get_source("interhand")
    for split in source.splits:
        print(summary(split, convert_split(source, str(synth), str(shards), split, progress=False)), flush=True)
    return shards


def evaluate(name: str, shards: Path, split: str, out: Path, *, checkpoint: Path | None = None,
             predictions: dict | None = None, device=None, pictures: int = 8) -> dict:
    """Score a checkpoint (through the pipeline) or ready predictions on `split`; the metrics."""
    from eval.__main__ import report
    from eval.run_checkpoint import predict_checkpoint
    from eval.score import check_predictions

    print(f"\n[demo] {name} on the {split} split", flush=True)
    if checkpoint is not None:
        predictions = predict_checkpoint(str(checkpoint), str(shards), split, device=device, progress=False)
    path = out / "predictions.npz"
    atomic_write_npz(path, predictions)
    return report(check_predictions(predictions, str(path)), str(shards), split, str(out), source=str(path),
                  pictures=pictures, quiet=True)


# The demo's bar: each head clearly better than a network that ignores the picture.
HANDEDNESS_BAR = 0.90
BASELINE_RATIO_BAR = 0.75
BAR_METRICS = (("mpjpe_single", "MPJPE single"), ("mpjpe_interacting", "MPJPE interacting"),
               ("mpjpe_all", "MPJPE all"), ("mrrpe", "MRRPE"))


def bar_checks(trained: dict, mean_pose: dict) -> list[tuple[str, str, bool]]:
    """(key, text, passed) per line of the bar: handedness >= 0.90 and every error <= 0.75 x the mean-pose
    baseline's."""
    h = float(trained["handedness_accuracy"])
    out = [("handedness", f"handedness {h:.3f} >= {HANDEDNESS_BAR}", h >= HANDEDNESS_BAR)]
    for key, label in BAR_METRICS:
        t, m = float(trained[key]), float(mean_pose[key])
        out.append((key, f"{label} {t:.1f} mm = {t / m:.2f} x the mean pose's {m:.1f} mm (<= {BASELINE_RATIO_BAR})",
                    t <= BASELINE_RATIO_BAR * m))
    return out


def bar_explanation(checks: list[tuple[str, str, bool]], trained: dict) -> list[str]:
    """What a missed line of the bar means, from the run's own figures (README, "Why handedness is not learnt
    in the demo"): [] when every line is met."""
    missed = {k for k, _, ok in checks if not ok}
    if not missed:
        return []
    count, chiral = float(trained["hand_count_auc"]), float(trained["chirality_auc"])
    lines = []
    if "handedness" in missed:
        lines.append(f"handedness needs two things: counting the hands (two vs one AUC {count:.2f}) and telling right "
                     f"from left (AUC {chiral:.2f}; 0.5 = chance).")
        if chiral < 0.6:
            lines.append("right vs left is near chance: the demo's 20 epochs do not learn it. The label "
                         "path is tested (tests/test_handedness.py) and the same backbone learns it alone at a "
                         "tenth of the demo's head rate over ~100 epochs (benchmarks/chirality_probe.py).")
        elif chiral < 0.9:
            lines.append("right vs left is learnt only in part: an accuracy of 0.90 needs it near certain (AUC near "
                         "1); the demo preset reaches 0.81 in 60 epochs (handedness 0.67), 0.89 in 120 (handedness 0.81, "
                         "every other line met) and 0.94 in 200 (handedness 0.88), against the demo's 20.")
        else:
            lines.append("right vs left is nearly learnt: at this AUC the thresholded accuracy still misses single "
                         "hands; in 200 epochs the demo preset reaches 0.94 (0.99 on train: more distinct hands, "
                         "not only more epochs, are the next step).")
    if missed & {"mpjpe_interacting", "mpjpe_all", "mrrpe"}:
        lines.append("the two-hand errors follow right vs left: a network that does not know which hand is which "
                     "cannot place both; longer training lowers them (make demo ARGS='--epochs=120 --lr_decay_epochs=108' meets "
                     "them, ~30 min on 2 cores).")
    lines.append('measured causes and figures: README.md, "Why handedness is not learnt in the demo".')
    return lines


def main(argv: list[str] | None = None) -> dict:
    from eval.gt import load_gt, split_url
    from eval.metrics import mean_pose_predictions
    from model import build_model, save_checkpoint
    from train.config import build_config
    from train.main import run

    p = argparse.ArgumentParser(prog="python -m train.demo", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None, help="run folder (default: runs/demo-<time> in the repository)")
    p.add_argument("--data", default=str(REPO / "data"), help="where the synthetic set and its shards go")
    p.add_argument("--size", default="small", help="synthetic set size (tiny, small, medium)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args, overrides = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    run_dir = Path(args.out or REPO / "runs" / time.strftime("demo-%Y%m%d-%H%M%S")).resolve()
    t0 = time.perf_counter()

    shards = prepare_data(Path(args.data).resolve(), args.size, args.seed)
    cfg = build_config(["--preset=demo", f"--shards={shards}", f"--out={run_dir}", f"--seed={args.seed}", *overrides])
    print(f"[demo] training ({cfg.epochs} epochs of the demo preset) into {run_dir}", flush=True)
    run(cfg, device=args.device)

    split = cfg.test_split
    trained = evaluate("trained network", shards, split, run_dir / "eval", checkpoint=run_dir / "final.pt",
                       device=args.device)
    torch.manual_seed(args.seed)
    save_checkpoint(run_dir / "untrained.pt", build_model(cfg.model))
    untrained = evaluate("untrained network (same initialisation recipe)", shards, split, run_dir / "eval_untrained",
                         checkpoint=run_dir / "untrained.pt", device=args.device, pictures=0)
    mean = evaluate("the training set's mean root-relative pose", shards, split, run_dir / "eval_mean_pose",
                    predictions=mean_pose_predictions(load_gt(split_url(shards, cfg.train_split), progress=False),
                                                      load_gt(split_url(shards, split), progress=False)), pictures=0)

    rows = {"trained": trained, "untrained": untrained, "mean pose": mean}
    keys = [("mpjpe_single", "MPJPE single (mm)"), ("mpjpe_interacting", "MPJPE interacting (mm)"),
            ("mpjpe_all", "MPJPE all (mm)"), ("mrrpe", "MRRPE (mm)"), ("handedness_accuracy", "handedness"),
            # not the paper's: which part of handedness is learnt (docs/conventions.md 7.5; 0.5 = chance)
            ("hand_count_auc", "  two hands vs one AUC"), ("chirality_auc", "  right vs left AUC")]
    lines = [f"{'':24}" + "".join(f"{name:>14}" for name in rows)]
    for k, label in keys:
        lines.append(f"{label:24}" + "".join(f"{float(m[k]):>14.3f}" for m in rows.values()))
    table = "\n".join(lines)
    summary = {name: {k: float(m[k]) for k, _ in keys} for name, m in rows.items()}
    checks = bar_checks(trained, mean)
    summary["bar"] = {name: ok for name, _, ok in checks}
    summary["seconds"] = time.perf_counter() - t0
    bar = "\n".join(f"  [{'ok' if ok else 'MISSED'}] {text}" for _, text, ok in checks)
    atomic_write_json(run_dir / "demo_summary.json", summary)
    why = "".join(f"  {line}\n" for line in bar_explanation(checks, trained))
    atomic_write_text(run_dir / "demo_summary.txt", table + "\n\n" + bar + "\n" + why)
    print(f"\n[demo] test split, {int(trained['num_samples'])} samples:\n{table}")
    print(f"\n[demo] what every head should reach after `make demo` (issue 17's bar):\n{bar}")
    for line in bar_explanation(checks, trained):
        print(f"  {line}")
    print(f"\n[demo] done in {summary['seconds'] / 60:.1f} min. Run folder: {run_dir}")
    print(f"       loss curves: {run_dir / 'loss_curves.png'}; predictions drawn: {run_dir / 'eval'}/best.png, worst.png")
    return summary


if __name__ == "__main__":
    main()
