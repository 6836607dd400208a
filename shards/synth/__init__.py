"""Synthetic InterHand2.6M (and RHD / STB) data set generator: the project's embedded data set.

Run:
    python -m shards.synth --out DIR [--seed 0] [--size tiny|small|medium]
                           [--format interhand|rhd|stb] [--workers N]
or call `generate(out_dir, size, seed, fmt)`. The same seed gives byte-identical files whatever the
number of workers. Hands are drawn by shards/synth/render.py from the kinematic model of
shards/synth/handmodel.py; common.py holds what the interhand.py and single.py generators share.

--format interhand: DIR is the InterHand2.6M v1.0 root (docs/conventions.md §1):
    images/{train,val,test}/Capture<c>/<seq>/cam<cam>/image<frame>.jpg
    annotations/skeleton.txt
    annotations/{split}/InterHand2.6M_{split}_{data,camera,joint_3d,MANO_NeuralAnnot}.json
    rootnet_output/rootnet_interhand2.6m_output_{val,test}.json
Capture numbers restart in each split; image and annotation ids too (annotation id == image id).
A single-hand frame keeps the other hand in joint_3d with all its joints invalid and world
coordinates 0, and its MANO entry null.

--format rhd / stb: DIR is the folder the original code calls its data root (`data/RHD/data`,
`data/STB/data`); layouts as read by the original data/RHD/dataset.py and data/STB/dataset.py:
    RHD: DIR/RHD_{training,evaluation}.json, DIR/{training,evaluation}/color/<file_name>,
         DIR/skeleton.txt; 320x320 images. (The original reads RootNet output from
         DIR/../rootnet_output/rootnet_rhd_output.json; not written here.)
    STB: DIR/STB_{train,test}.json, DIR/images/<seq_name>/<file_name> (seq_name from the image
         entry, e.g. B1Counting; test = B1*, train = B2*-B6*), DIR/skeleton.txt; 640x480 images.
    COCO json: images[] {id, file_name, width, height, cam_param {focal [fx, fy], princpt [cx, cy]}
    (+ seq_name for STB)}; annotations[] {id, image_id, bbox [x, y, w, h], joint_img 21x2 px,
    joint_cam 21x3 mm (camera space; there is no extrinsic), joint_valid 21 (flat list of 0/1),
    hand_type 'right'|'left'} (no hand_type_valid: the original treats it as 1).
    Joint order of the 21: wrist 0, then thumb tip..base (1-4), index (5-8), middle, ring, pinky
    (17-20), i.e. rhd21[k] = interhand21[ONE_HAND_PERM[k]] with ONE_HAND_PERM = [20, 0, 1, ..., 19].
    The original puts the 21 joints into a 42-joint array at 21..41 for a right hand and 0..20 for
    a left one (roots 21 and 0); skeleton.txt lists those 42 joints (left half first).
    Real RHD / STB images are PNG (e.g. 00000.png, SK_color_0.png); the synthetic ones are JPEG.
"""
import argparse
import json
import os
import time

from .common import SIZES


def generate(out_dir, size="tiny", seed=0, fmt="interhand", workers=None) -> dict:
    """Write a synthetic data set under out_dir; returns a summary (counts, seconds)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
    out_dir = os.path.abspath(os.fspath(out_dir))
    start = time.perf_counter()
    if fmt == "interhand":
        from .interhand import generate_interhand
        summary = generate_interhand(out_dir, size, seed, workers)
    elif fmt in ("rhd", "stb"):
        from .single import generate_single
        summary = generate_single(out_dir, fmt, size, seed, workers)
    else:
        raise ValueError(f"fmt must be 'interhand', 'rhd' or 'stb', got {fmt!r}")
    return {"format": fmt, "size": size, "seed": seed, "out_dir": out_dir, **summary,
            "seconds": round(time.perf_counter() - start, 2)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (the data set root)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", default="small", choices=tuple(SIZES))
    ap.add_argument("--format", default="interhand", choices=("interhand", "rhd", "stb"))
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = ap.parse_args(argv)
    summary = generate(args.out, args.size, args.seed, args.format, args.workers)
    print(json.dumps(summary))
    return 0
