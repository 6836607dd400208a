"""Does a right hand still look right at the demo's input size? An off-the-shelf hand model trained on
real photos (MediaPipe's handedness, eval/detect.py) on the test split's single-hand crops: the processed
GT bbox (what the pipeline crops) at R x R pixels, then scaled back up to 256 x 256 for the detector.

    .venv/bin/python -m benchmarks.handedness_detector [--work DIR] [--resolutions 256,128,96,64] [--limit N]

Uses the synthetic `small` set of benchmarks.handedness (WORK/data-base; generated when missing).
Prints one JSON line per resolution: single hands seen, hands detected, and how many of those the
detector names the right side. If the share stays well above 0.5 at 64 x 64, the demo's input carries
the chirality cues and a network that does not learn them is short of training, not of pixels.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path[0] = str(REPO)


def crop(img: np.ndarray, bbox, size: int) -> np.ndarray:
    """The bbox [x, y, w, h] of an RGB image resampled to size x size (area averaging when shrinking)."""
    import cv2

    x, y, w, h = (float(v) for v in bbox)
    src = np.float32([[x, y], [x + w, y], [x, y + h]])
    dst = np.float32([[0, 0], [size, 0], [0, size]])
    flags = cv2.INTER_AREA if size < max(w, h) else cv2.INTER_LINEAR
    return cv2.warpAffine(img, cv2.getAffineTransform(src, dst), (size, size), flags=flags)


def measure(root: str, resolutions, limit: int | None = None) -> list[dict]:
    import cv2
    import simplejpeg

    from eval.detect import detect_hands
    from shards.reader import iter_records

    stats = {r: {"resolution": r, "single_hands": 0, "detected": 0, "side_right": 0} for r in resolutions}
    seen = 0
    for rec in iter_records("interhand", root, "test"):
        if rec["hand_type"] == "interacting" or not rec["hand_type_valid"]:
            continue
        if limit is not None and seen >= limit:
            break
        seen += 1
        with open(rec["image_path"], "rb") as f:
            img = simplejpeg.decode_jpeg(f.read())
        for r in resolutions:
            hands = detect_hands(cv2.resize(crop(img, rec["bbox"], r), (256, 256), interpolation=cv2.INTER_LINEAR))
            s = stats[r]
            s["single_hands"] += 1
            if hands.handedness:
                s["detected"] += 1
                s["side_right"] += hands.handedness[int(np.argmax(hands.scores))] == rec["hand_type"]
    for s in stats.values():
        s["right_of_detected"] = round(s["side_right"] / max(s["detected"], 1), 3)
    return list(stats.values())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.handedness_detector", description=__doc__.split("\n")[0])
    p.add_argument("--work", default="/tmp/handedness")
    p.add_argument("--resolutions", default="256,128,96,64")
    p.add_argument("--limit", type=int, default=None, help="at most this many single hands")
    args = p.parse_args(argv)
    from shards.atomic import atomic_write_json
    from shards.synth import generate

    synth = Path(args.work).resolve() / "data-base" / "synth" / "interhand"
    if not (synth / ".complete").exists():
        atomic_write_json(synth / ".complete", generate(synth, size="small", seed=0), indent=None)
    for line in measure(str(synth), [int(r) for r in args.resolutions.split(",")], args.limit):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
