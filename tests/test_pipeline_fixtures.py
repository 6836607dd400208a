"""Tiny synthetic shards for the pipeline tests (no tests here; imported by tests/test_pipeline*.py).

Each sample is a 512x334 or 334x512 JPEG with high-frequency texture (so a half-pixel shift is
visible) and coloured dots at its joints, plus `json`, `lbl` and `ids` components as the shard
writer produces them. Indexed with wds2idx exactly like real shards.
"""
import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import simplejpeg
import webdataset as wds

from shards import geometry, labels, skeleton

WDS2IDX = Path(sys.executable).with_name("wds2idx")


def _texture(rng, height, width):
    """Random 2x2-pixel blocks, smoothed a little: plenty of detail, survives JPEG q=95."""
    small = rng.integers(0, 256, size=(height // 2 + 1, width // 2 + 1, 3)).astype(np.float32)
    img = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)[:height, :width]
    img = 0.5 * img + 0.25 * np.roll(img, 1, axis=0) + 0.25 * np.roll(img, 1, axis=1)
    return img


def make_record(rng, annot_id, hand_type="interacting", portrait=False, near_edge=False):
    """A record (the common brief's fields) with joints scattered inside the frame."""
    width, height = (334, 512) if portrait else (512, 334)
    focal = np.array([1200.0, 1210.0], np.float32)
    princpt = np.array([width / 2 + 3.0, height / 2 - 2.0], np.float32)
    centre = np.array([width * rng.uniform(0.35, 0.65), height * rng.uniform(0.35, 0.65)])
    if near_edge:  # hand half outside the frame: many joints leave the patch after the crop
        centre = np.array([width * 0.08, height * 0.5])
    uv = centre + rng.normal(0.0, 30.0, size=(42, 2))
    uv[skeleton.LEFT] += np.array([25.0, 10.0])
    right_z = rng.uniform(700, 1100)
    root_z = {"right": right_z, "left": right_z + rng.normal(0, 90)}  # mostly within the 400 mm range
    z = np.empty(42)
    z[skeleton.RIGHT] = root_z["right"] + rng.normal(0, 60, 21)
    z[skeleton.LEFT] = root_z["left"] + rng.normal(0, 60, 21)
    z[3] = root_z["right"] + 230.0  # beyond the 400 mm depth range: invalid in the targets
    z[skeleton.ROOT["right"]] = root_z["right"]
    z[skeleton.ROOT["left"]] = root_z["left"]
    joint_cam = geometry.pixel2cam(np.concatenate([uv, z[:, None]], 1), focal, princpt).astype(np.float32)
    joint_img = geometry.cam2pixel(joint_cam, focal, princpt)[:, :2].astype(np.float32)
    valid = (rng.uniform(size=42) > 0.1).astype(np.float32)
    valid[[20, 41]] = 1.0
    if hand_type == "right":
        valid[skeleton.LEFT] = 0.0
    elif hand_type == "left":
        valid[skeleton.RIGHT] = 0.0
    pts = joint_img[valid > 0]
    lo, hi = pts.min(0), pts.max(0)
    bbox_raw = np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], np.float32)
    bbox = geometry.process_bbox(bbox_raw)
    rootnet_bbox = bbox + np.array([6.0, -4.0, 10.0, 10.0], np.float32)
    abs_depth = joint_cam[[20, 41], 2].copy()
    return {
        "annot_id": int(annot_id), "image_id": int(annot_id) + 100000,
        "file_name": f"Capture0/seq/cam0/image{annot_id}.jpg", "capture": 0, "subject": 1,
        "seq_name": "seq", "camera": "0", "frame_idx": int(annot_id), "width": width, "height": height,
        "focal": focal, "princpt": princpt, "bbox_raw": bbox_raw, "bbox": bbox,
        "joint_cam": joint_cam, "joint_img": joint_img, "joint_valid": valid, "hand_type": hand_type,
        "hand_type_vec": skeleton.hand_type_vec(hand_type), "hand_type_valid": 1,
        "abs_depth": abs_depth, "rootnet_bbox": rootnet_bbox,
        "rootnet_abs_depth": abs_depth + np.array([12.0, -7.0], np.float32),
    }


def make_image(rng, record):
    img = _texture(rng, record["height"], record["width"])
    for j, (u, v) in enumerate(record["joint_img"]):
        x, y = int(round(u)), int(round(v))
        colour = (255, 40, 40) if j < 21 else (40, 120, 255)
        img[max(y - 2, 0):max(y + 3, 0), max(x - 2, 0):max(x + 3, 0)] = colour
    return np.clip(img, 0, 255).astype(np.uint8)


def with_exif_orientation(jpg: bytes, value: int) -> bytes:
    """The JPEG with an EXIF APP1 segment right after SOI holding one tag, Orientation = value
    (6: 'rotate 90 degrees clockwise to display'), as cameras and phones write it."""
    tiff = b"MM\x00\x2a" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, value, 0) + b"\x00" * 4
    body = b"Exif\x00\x00" + tiff
    return jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpg[2:]


def _jsonable(record):
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in record.items()}


def write_split(root, split, n, per_shard=4, seed=0, exif_orientation=None, subsampling="444"):
    """Write n samples as OUT/<split>/<split>-NNNNNN.tar (+ .idx, manifest.json).
    exif_orientation: tag every JPEG with this EXIF orientation (the pixels stay as stored).
    subsampling: the JPEGs' chroma subsampling ("444", "422", "420").

    Sample kinds cycle through landscape/portrait, right/left/interacting and a hand at the edge.
    Returns (split_dir, records, images) with images the decoded RGB arrays (what DALI decodes)."""
    rng = np.random.default_rng(seed)
    out = Path(root) / split
    out.mkdir(parents=True, exist_ok=True)
    records, images, shard_list = [], [], []
    kinds = ("interacting", "right", "left")
    for s in range(0, n, per_shard):
        tar = out / f"{split}-{s // per_shard:06d}.tar"
        with wds.TarWriter(str(tar)) as sink:
            for i in range(s, min(s + per_shard, n)):
                rec = make_record(rng, 1000 + i, kinds[i % 3], portrait=(i // 2) % 2 == 1, near_edge=i % 5 == 4)
                jpg = simplejpeg.encode_jpeg(make_image(rng, rec), quality=95, colorsubsampling=subsampling)
                if exif_orientation is not None:
                    jpg = with_exif_orientation(jpg, exif_orientation)
                lbl, ids = labels.encode(rec)
                sink.write({"__key__": f"{rec['annot_id']:09d}", "jpg": jpg, "lbl": lbl, "ids": ids,
                            "json": json.dumps(_jsonable(rec)).encode()})
                records.append(rec)
                images.append(simplejpeg.decode_jpeg(jpg, colorspace="RGB"))
        subprocess.run([str(WDS2IDX), str(tar), str(tar.with_suffix(".idx"))], check=True, capture_output=True)
        shard_list.append({"tar": tar.name, "idx": tar.with_suffix(".idx").name,
                           "count": min(s + per_shard, n) - s,
                           "sha256": hashlib.sha256(tar.read_bytes()).hexdigest(),
                           "idx_sha256": hashlib.sha256(tar.with_suffix(".idx").read_bytes()).hexdigest()})
    (out / "manifest.json").write_text(json.dumps({"split": split, "counts": {"total": n}, "shards": shard_list,
                                                          "complete": True}))
    return out, records, images
