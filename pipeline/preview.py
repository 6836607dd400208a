"""See what the network sees: one batch of a split as .npz and a PNG contact sheet.

    python -m pipeline.preview --shards data/shards/interhand --split train --augment --out /tmp/preview

Writes OUT/<split>_batch.npz (images and every target of the batch) and OUT/<split>_batch.png
(the patches with the target keypoints drawn: right hand red, left hand blue, valid joints only,
bones to their parents; the title says annot_id, hand type and the augmentation).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from shards.atomic import atomic_savefig, atomic_write_npz
from shards.geometry import DEPTH_RANGE_MM
from shards.skeleton import parents

from .graph import AUG_FIELDS
from .loader import build_loader


def contact_sheet(batch: dict, path: Path, input_size: int, heatmap_size, cols: int = 4) -> None:
    """Draw the patches of `batch` (numpy arrays) with their target keypoints into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = batch["images"].transpose(0, 2, 3, 1)  # (B, H, W, 3)
    _, hm_h, hm_w = heatmap_size
    xy = batch["joint_coord"][..., :2] * np.array([input_size / hm_w, input_size / hm_h])
    valid = batch["joint_valid"] > 0
    par = parents()
    n = len(images)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        ax.imshow(images[i], extent=(-0.5, input_size - 0.5, input_size - 0.5, -0.5))
        for j in range(len(par)):
            colour = "red" if j < 21 else "deepskyblue"
            p = par[j]
            if valid[i, j] and p >= 0 and valid[i, p]:
                ax.plot(xy[i, [j, p], 0], xy[i, [j, p], 1], color=colour, lw=1)
        for side, sl, colour in (("R", slice(0, 21), "red"), ("L", slice(21, 42), "deepskyblue")):
            v = valid[i, sl]
            ax.scatter(xy[i, sl, 0][v], xy[i, sl, 1][v], s=6, c=colour)
        ht = batch["hand_type"][i]
        aug = dict(zip(AUG_FIELDS, batch["aug"][i]))
        ax.set_title(f"{int(batch['annot_id'][i])} ht=[{ht[0]:.0f},{ht[1]:.0f}] rrd={batch['rel_root_depth'][i]:.1f}"
                     f"{'' if batch['root_valid'][i] else '(x)'}\ns={aug['scale']:.2f} r={aug['rot']:.0f}"
                     f" flip={aug['flip']:.0f}", fontsize=7)
        ax.set_xlim(-0.5, input_size - 0.5)
        ax.set_ylim(input_size - 0.5, -0.5)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=80)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", required=True, help="folder holding <split>/ shard folders")
    ap.add_argument("--split", required=True)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--augment", action="store_true", help="training mode: shuffled, random augmentation")
    ap.add_argument("--rootnet", action="store_true", help="evaluation bbox from RootNet (not with --augment)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--input-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # The paper's output space at this input size (model.ModelConfig's fields; pipeline does not import model).
    size = args.input_size
    geometry = SimpleNamespace(input_size=size, heatmap_size=(64, size // 4, size // 4), root_bins=64,
                               depth_range_mm=DEPTH_RANGE_MM, root_depth_range_mm=DEPTH_RANGE_MM)
    heatmap_size = geometry.heatmap_size
    loader = build_loader(Path(args.shards).resolve() / args.split, geometry, batch_size=args.batch_size,
                          train=args.augment, device=torch.device(args.device), seed=args.seed, use_rootnet=args.rootnet)
    batch = {k: v.cpu().numpy() for k, v in next(iter(loader)).items()}
    npz, png = out / f"{args.split}_batch.npz", out / f"{args.split}_batch.png"
    atomic_write_npz(npz, batch, compressed=True)
    contact_sheet(batch, png, args.input_size, heatmap_size)
    print(f"{len(batch['images'])} samples of {loader.num_samples}: {npz}\n{png}")


if __name__ == "__main__":
    main()
