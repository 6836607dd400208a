"""Camera layout of an InterHand2.6M capture (or of every capture of a split): a 3D scatter of the
camera positions with their ids and viewing directions, headless, to PNG.

    python -m shards.cameras --root DATA --split test [--capture 0] --out cams.png

Positions are `campos` (world mm, drawn in metres); each camera's viewing direction is its optical
axis in the world, the third row of camrot (X_cam = R (X - campos), so the camera's +Z is R^T e_z).
With several captures, each capture has its own colour and every camera id is written once.
"""
import argparse
import io
import sys

import numpy as np

from .atomic import atomic_write_bytes
from .mano.data import annotation_file, load_cameras
from .mano.model import ManoError


def camera_layout(cameras: dict, captures=None) -> dict:
    """{capture: (ids list, positions (N, 3) mm, view directions (N, 3) unit)} from load_cameras."""
    out = {}
    for (cap, cam), p in sorted(cameras.items(), key=lambda kv: (int(kv[0][0]), kv[0][1])):
        if captures is not None and cap not in captures:
            continue
        ids, pos, view = out.setdefault(cap, ([], [], []))
        ids.append(cam)
        pos.append(p["campos"])
        view.append(p["camrot"][2] / np.linalg.norm(p["camrot"][2]))
    return {c: (ids, np.array(pos), np.array(view)) for c, (ids, pos, view) in out.items()}


def plot_layout(layout: dict, title: str) -> bytes:
    """PNG bytes of the 3D scatter (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    allpos = np.concatenate([p for _, p, _ in layout.values()]) / 1000.0
    span = float(np.ptp(allpos, axis=0).max()) or 1.0
    fig = plt.figure(figsize=(9, 8))
    ax = fig.add_subplot(111, projection="3d")
    colours = plt.get_cmap("tab10" if len(layout) <= 10 else "rainbow")(np.linspace(0, 1, max(len(layout), 2)))
    labelled = set()
    for k, (cap, (ids, pos, view)) in enumerate(layout.items()):
        p = pos / 1000.0
        ax.scatter(p[:, 0], p[:, 1], p[:, 2], color=colours[k], s=18, label=f"capture {cap} ({len(ids)} cameras)")
        ax.quiver(p[:, 0], p[:, 1], p[:, 2], view[:, 0], view[:, 1], view[:, 2], length=0.12 * span,
                  color=colours[k], linewidth=0.8, arrow_length_ratio=0.25)
        for cam, q in zip(ids, p):
            if cam not in labelled:
                ax.text(q[0], q[1], q[2], cam, fontsize=6)
                labelled.add(cam)
    centre = allpos.mean(0)
    for axis, set_lim in zip(range(3), (ax.set_xlim, ax.set_ylim, ax.set_zlim)):
        set_lim(centre[axis] - 0.6 * span, centre[axis] + 0.6 * span)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_zlabel("z (m)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m shards.cameras", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="InterHand2.6M root")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--capture", default=None, help="one capture (default: every capture of the split)")
    ap.add_argument("--out", required=True, help="PNG file")
    args = ap.parse_args(argv)
    path = annotation_file(args.root, args.split, "camera")
    try:
        cams = load_cameras(path)
        caps = None if args.capture is None else {str(args.capture)}
        layout = camera_layout(cams, caps)
        if not layout:
            have = sorted({c for c, _ in cams}, key=int)
            raise ManoError(f"{path}: capture {args.capture}: not in the file (has {', '.join(have)})")
    except (ValueError, OSError) as e:  # ManoError is a ValueError
        sys.exit(f"error: {e}")
    n = sum(len(ids) for ids, _, _ in layout.values())
    what = f"capture {args.capture}" if caps else f"{len(layout)} captures"
    atomic_write_bytes(args.out, plot_layout(layout, f"InterHand2.6M {args.split}: {what}, {n} cameras"))
    print(f"cameras: {n} cameras of {what} -> {args.out}")
    return 0


if __name__ == "__main__":
    main()
