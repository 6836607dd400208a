"""Loss curves from RUN_DIR/metrics.jsonl as a PNG (matplotlib, headless)."""
from __future__ import annotations

import json
from pathlib import Path

from shards.atomic import atomic_savefig


def plot_curves(run_dir, out_png=None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if any(k.startswith("loss/") for k in r)]
    val = [r for r in rows if any(k.startswith("val/") for k in r)]
    if not train:
        raise ValueError(f"{run_dir / 'metrics.jsonl'} holds no training losses to plot")
    loss_keys = sorted({k for r in train for k in r if k.startswith("loss/")})
    val_keys = sorted({k for r in val for k in r if k.startswith("val/") and "mpjpe" in k})
    ncols = 2 if val_keys else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4), squeeze=False)
    ax = axes[0, 0]
    for k in loss_keys:
        ax.plot([r["epoch"] for r in train], [r[k] for r in train], label=k.split("/", 1)[1])
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title("training losses")
    ax.legend()
    if val_keys:
        ax = axes[0, 1]
        for k in val_keys:
            ax.plot([r["epoch"] for r in val if k in r], [r[k] for r in val if k in r], marker="o", label=k[4:])
        ax.set_xlabel("epoch")
        ax.set_ylabel("mm")
        ax.set_title("validation")
        ax.legend()
    fig.tight_layout()
    out = Path(out_png) if out_png else run_dir / "loss_curves.png"
    try:
        atomic_savefig(fig, out, dpi=100)
    finally:
        plt.close(fig)
    return out
