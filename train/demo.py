"""The embedded demo, end to end on the CPU in minutes (the README's first command: `make demo`).

    python -m train.demo [--out RUN_DIR] [--data DATA_DIR] [--size small] [--key=value ...]

1. generates the synthetic InterHand2.6M set (once; deterministic) under DATA_DIR/synth/interhand,
2. converts it to shards under DATA_DIR/shards/interhand (resumes: finished shards are kept),
3. trains the `demo` preset (ResNet-18, 128x128 input, 32^3 heatmaps), validating every epoch,
4. evaluates on the test split and, for comparison, the untrained network and the training set's
   mean root-relative pose; prints the three side by side and writes pictures to RUN_DIR.
Extra `--key=value` options go to the trainer (see train/config.py), e.g. `--epochs=2`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def prepare_data(data_dir: Path, size: str, seed: int) -> Path:
    from shards.__main__ import main as shards_main
    from shards.synth import generate

    synth = data_dir / "synth" / "interhand"  # the same folders `make shards` uses
    done = synth / ".complete"
    if not done.exists():
        print(f"[demo] generating the synthetic set ({size}) in {synth}", flush=True)
        summary = generate(synth, size=size, seed=seed)
        done.write_text(json.dumps(summary) + "\n")
    shards = data_dir / "shards" / "interhand"
    print(f"[demo] building shards in {shards}", flush=True)
    shards_main(["--source", "interhand", "--root", str(synth), "--out", str(shards), "--quiet"])
    return shards


def mean_pose_predictions(shards: Path) -> dict:
    """The training set's mean root-relative pose (and mean left-minus-right root vector, mean hand
    presence) predicted for every test sample, in camera space (eval form (b))."""
    from eval.gt import load_gt
    from shards.skeleton import LEFT, RIGHT, ROOT

    tr = load_gt(str(shards), "train", progress=False)
    cam, valid = tr["joint_cam"].astype(np.float64), tr["joint_valid"] > 0
    rel = cam.copy()
    rel[:, RIGHT] -= cam[:, [ROOT["right"]]]
    rel[:, LEFT] -= cam[:, [ROOT["left"]]]
    mean_rel = np.where(valid[..., None], rel, 0).sum(0) / np.maximum(valid.sum(0), 1)[:, None]  # (42, 3)
    both = valid[:, ROOT["right"]] & valid[:, ROOT["left"]]
    root_vec = (cam[both, ROOT["left"]] - cam[both, ROOT["right"]]).mean(0) if both.any() else np.zeros(3)
    mean_rel[LEFT] += root_vec  # place the left hand's root at the mean offset from the right root
    presence = tr["hand_type"].mean(0)
    te = load_gt(str(shards), "test", progress=False)
    n = te["annot_id"].shape[0]
    return {"annot_id": te["annot_id"], "joint_cam": np.broadcast_to(mean_rel, (n, 42, 3)).copy(),
            "hand_type": np.broadcast_to(presence, (n, 2)).copy()}


def main(argv: list[str] | None = None) -> dict:
    from eval.__main__ import main as eval_main
    from eval.io import write_npz
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

    common = ["--shards", str(shards), "--split", cfg.test_split, "--quiet"]
    if args.device:
        common += ["--device", args.device]
    print("\n[demo] trained network on the test split", flush=True)
    trained = eval_main(["--checkpoint", str(run_dir / "final.pt"), "--out", str(run_dir / "eval"), *common])

    torch.manual_seed(args.seed)
    save_checkpoint(run_dir / "untrained.pt", build_model(cfg.model))
    print("\n[demo] untrained network (same initialisation recipe)", flush=True)
    untrained = eval_main(["--checkpoint", str(run_dir / "untrained.pt"), "--out", str(run_dir / "eval_untrained"),
                           "--pictures", "0", *common])
    mean_npz = write_npz(str(run_dir / "mean_pose_predictions.npz"), mean_pose_predictions(shards))
    print("\n[demo] the training set's mean root-relative pose", flush=True)
    mean = eval_main(["--predictions", mean_npz, "--out", str(run_dir / "eval_mean_pose"), "--pictures", "0", *common])

    rows = {"trained": trained, "untrained": untrained, "mean pose": mean}
    keys = [("mpjpe_single", "MPJPE single (mm)"), ("mpjpe_interacting", "MPJPE interacting (mm)"),
            ("mpjpe_all", "MPJPE all (mm)"), ("mrrpe", "MRRPE (mm)"), ("handedness_accuracy", "handedness")]
    lines = [f"{'':24}" + "".join(f"{name:>14}" for name in rows)]
    for k, label in keys:
        lines.append(f"{label:24}" + "".join(f"{float(m[k]):>14.3f}" for m in rows.values()))
    table = "\n".join(lines)
    summary = {name: {k: float(m[k]) for k, _ in keys} for name, m in rows.items()}
    summary["seconds"] = time.perf_counter() - t0
    (run_dir / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (run_dir / "demo_summary.txt").write_text(table + "\n")
    print(f"\n[demo] test split, {int(trained['num_samples'])} samples:\n{table}")
    print(f"\n[demo] done in {summary['seconds'] / 60:.1f} min. Run folder: {run_dir}")
    print(f"       loss curves: {run_dir / 'loss_curves.png'}; predictions drawn: {run_dir / 'eval'}/best.png, worst.png")
    return summary


if __name__ == "__main__":
    main()
