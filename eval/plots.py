"""Pictures (matplotlib Agg, headless): keypoint overlays, the per-joint error chart, a 3D skeleton."""
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from shards.atomic import atomic_savefig  # noqa: E402
from shards.skeleton import JOINT_NAMES, LEFT, NUM_JOINTS, RIGHT, parents  # noqa: E402

HAND_COLOURS = {"right": "tab:red", "left": "tab:blue"}


def save_figure(fig, path: str) -> str:
    """Atomic PNG write (shards.atomic), then the figure is closed."""
    try:
        atomic_savefig(fig, path, dpi=fig.dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def decode_image(data) -> np.ndarray:
    """JPEG/PNG bytes or a path -> (H, W, 3) uint8 RGB."""
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    with Image.open(src) as im:
        return np.asarray(im.convert("RGB"))


def draw_skeleton(ax, uv, valid, colour_by_hand=True, colour=None, style="-", label=None):
    """Bones between valid joints of a (42, 2) pixel array on a matplotlib axis."""
    par = parents()
    for hand, idx in (("right", RIGHT), ("left", LEFT)):
        c = colour or HAND_COLOURS[hand]
        for j in idx:
            p = par[j]
            if p >= 0 and valid[j] and valid[p]:
                ax.plot(uv[[j, p], 0], uv[[j, p], 1], style, color=c, lw=1.2)
        vis = [j for j in idx if valid[j]]
        if vis:
            ax.scatter(uv[vis, 0], uv[vis, 1], s=6, color=c, label=label if hand == "right" else None)


def overlay_grid(images, pred_uv, gt_uv, valid, titles, path, cols=4):
    """One panel per sample: the image, the GT skeleton (green, dashed) and the prediction (red right,
    blue left)."""
    n = len(images)
    if n == 0:
        raise ValueError("overlay_grid: no samples to draw")
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        img = images[i]
        ax.imshow(img)
        draw_skeleton(ax, gt_uv[i], valid[i], colour="limegreen", style="--")
        draw_skeleton(ax, pred_uv[i], valid[i])
        ax.set_xlim(0, img.shape[1])
        ax.set_ylim(img.shape[0], 0)
        ax.set_title(titles[i], fontsize=7)
    return save_figure(fig, path)


def per_joint_chart(metrics: dict, path: str) -> str:
    """Grouped bars of the per-joint MPJPE (single, interacting, all)."""
    x = np.arange(NUM_JOINTS)
    fig, ax = plt.subplots(figsize=(14, 4))
    for k, (name, col) in enumerate((("single", "tab:orange"), ("interacting", "tab:purple"), ("all", "tab:gray"))):
        v = np.nan_to_num(np.asarray(metrics[f"mpjpe_per_joint_{name}"], dtype=np.float64))
        ax.bar(x + (k - 1) * 0.28, v, width=0.28, color=col, label=f"{name} ({_fmt(metrics[f'mpjpe_{name}'])} mm)")
    ax.set_xticks(x)
    ax.set_xticklabels(JOINT_NAMES, rotation=90, fontsize=7)
    ax.set_ylabel("MPJPE (mm)")
    ax.legend(fontsize=8)
    ax.set_title("MPJPE per joint")
    return save_figure(fig, path)


def skeleton_3d(xyz, valid, path, title="", units=("x (px)", "y (px)", "z (mm)")) -> str:
    """A 3D plot of the joints (e.g. pixels and root-relative depth, as the original's demo)."""
    fig = plt.figure(figsize=(5, 5))
    ax = fig.add_subplot(projection="3d")
    par = parents()
    for hand, idx in (("right", RIGHT), ("left", LEFT)):
        for j in idx:
            p = par[j]
            if p >= 0 and valid[j] and valid[p]:
                ax.plot(xyz[[j, p], 0], xyz[[j, p], 2], -xyz[[j, p], 1], color=HAND_COLOURS[hand])
        vis = [j for j in idx if valid[j]]
        if vis:
            ax.scatter(xyz[vis, 0], xyz[vis, 2], -xyz[vis, 1], s=8, color=HAND_COLOURS[hand], label=hand)
    ax.set_xlabel(units[0])
    ax.set_ylabel(units[2])
    ax.set_zlabel(units[1] + " (up)")
    ax.set_title(title, fontsize=9)
    if any(np.asarray(valid) > 0):
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def _fmt(v):
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.2f}"
