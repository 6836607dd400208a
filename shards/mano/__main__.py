"""MANO tools on an InterHand2.6M split (the real data set or the embedded synthetic one).

    python -m shards.mano fit-error  --root DATA --split val  [--mano DIR] --regressor FILE [--out report.json]
    python -m shards.mano conversion --root DATA --split val  [--mano DIR] --regressor FILE [--limit N]
    python -m shards.mano render     --root DATA --split test [--mano DIR] --capture C --camera CAM
                                     [--seq NAME] [--frame F | --frames N] --out DIR [--no-obj]
    python -m shards.mano render     --root DATA --split test [--mano DIR] --random N [--seed S] --out DIR

--mano: the folder with MANO_RIGHT.pkl / MANO_LEFT.pkl, or smplx's model root holding mano/
(default: DATA, where the synthetic generator writes DATA/mano/). The official pickles are read
without chumpy and without running code from them (shards/mano/model.py). --regressor: the 21 x 778
InterHand joint regressor (the release's J_regressor_mano_ih26m.npy; the synthetic set's is
DATA/mano/J_regressor_synth_ih26m.npy). Errors in the inputs print one line naming the file and field.
"""
import argparse
import json
import sys

from ..atomic import atomic_write_bytes
from .data import load_split_annotations


def build_parser():
    p = argparse.ArgumentParser(prog="python -m shards.mano", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="a traceback instead of the one-line error")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, split):
        sp.add_argument("--root", required=True, help="InterHand2.6M root (annotations/, images/)")
        sp.add_argument("--split", default=split, choices=("train", "val", "test"))
        sp.add_argument("--mano", default=None, help="MANO folder (MANO_RIGHT.pkl, MANO_LEFT.pkl) or its parent; default: ROOT")
        sp.add_argument("--device", default="cpu", help="torch device for the smplx layers, e.g. cuda")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    fe = sub.add_parser("fit-error", help="fitting error of the MANO parameters against the annotated joints")
    common(fe, "val")
    fe.add_argument("--regressor", required=True, help="21 x 778 joint regressor (.npy)")
    fe.add_argument("--worst", type=int, default=10, help="list this many worst hands")
    fe.add_argument("--out", default=None, help="write the report with every hand's error (JSON)")
    cv = sub.add_parser("conversion", help="world-to-camera conversion: parameters (b) vs mesh (a), and the original script's pivot")
    common(cv, "val")
    cv.add_argument("--regressor", required=True, help="21 x 778 joint regressor (.npy)")
    cv.add_argument("--limit", type=int, default=None, help="a random sample of this many hands")
    cv.add_argument("--seed", type=int, default=0)
    rd = sub.add_parser("render", help="both hands' meshes over the images, PNG (+ OBJ in the camera frame)")
    common(rd, "test")
    rd.add_argument("--capture", type=int, default=None)
    rd.add_argument("--camera", default=None, help="camera id, e.g. 400262")
    rd.add_argument("--seq", default=None, help="sequence name (default: every sequence of the capture)")
    rd.add_argument("--frame", type=int, default=None, help="one frame (frame_idx)")
    rd.add_argument("--frames", type=int, default=None, help="at most this many frames of the sequence/camera")
    rd.add_argument("--random", type=int, default=None, help="N random images of the split")
    rd.add_argument("--seed", type=int, default=0)
    rd.add_argument("--out", required=True, help="output folder")
    rd.add_argument("--no-obj", action="store_true", help="no OBJ files")
    return p


def _fmt(e):
    return ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in e.items())


def run(args) -> str:
    from . import tools

    ann = load_split_annotations(args.root, args.split)
    mano = args.mano or args.root
    progress = not args.quiet
    if args.cmd == "fit-error":
        rep = tools.fit_error(ann, mano, args.regressor, args.device, args.worst, progress)
        if args.out:
            atomic_write_bytes(args.out, (json.dumps(rep, indent=1) + "\n").encode())
        lines = [f"{args.split}: fitting error of {rep['hands']} hands in {rep['images']} images "
                 f"({rep['frames']} hands x frames; {rep['annotated_hands_without_mano']} annotated hands without "
                 f"MANO parameters skipped), mm: " + _fmt(rep["error_mm"]), "worst frames:"]
        lines += [f"  {w['error_mm']:.2f} mm  capture {w['capture']} frame {w['frame']} {w['hand']} "
                  f"({w['images']} images, e.g. {w['file_name']})" for w in rep["worst"]]
        return "\n".join(lines)
    if args.cmd == "conversion":
        rep = tools.conversion_check(ann, mano, args.regressor, args.device, args.limit, args.seed, progress)
        if not rep["hands"]:
            return f"{args.split}: no hand with MANO parameters"
        o = {k: v for k, v in rep["original_pivot_offset_mm"].items() if k != "worst"}
        return (f"{args.split}: {rep['hands']} hands. (b) converted parameters vs (a) transformed mesh: largest "
                f"vertex difference mean {rep['a_vs_b_max_vertex_mm']['mean']:.2e} mm, max "
                f"{rep['a_vs_b_max_vertex_mm']['max']:.2e} mm\n{args.split}: the original script's pivot "
                f"(regressed wrist) moves the mesh by: " + _fmt(o) + " (mm)")
    idx = tools.select_images(ann, args.capture, args.camera, args.seq, args.frame, args.frames, args.random, args.seed)
    rep = tools.render_images(ann, mano, idx, args.out, args.device, not args.no_obj, progress)
    msg = (f"render: {len(rep['written'])} pictures in {rep['out']} "
           f"({1000 * rep['seconds_per_frame']:.0f} ms per frame: forward pass, rasterising, shading)")
    if rep["skipped_without_mano"]:
        msg += f"; {len(rep['skipped_without_mano'])} images skipped (no MANO parameters)"
    return msg


def main(argv=None):
    """Errors in the inputs (ManoError and other ValueErrors, missing or unreadable files) exit with
    one line naming the file and field; --debug (before the command) shows the traceback."""
    args = build_parser().parse_args(argv)
    try:
        print(run(args), flush=True)
    except (ValueError, OSError) as e:  # ManoError is a ValueError
        if args.debug:
            raise
        sys.exit(f"error: {e}")
    return 0


if __name__ == "__main__":
    main()
