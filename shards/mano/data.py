"""What the MANO and camera tools read of an InterHand2.6M split (docs/conventions.md §1), as compact arrays.

    ann = load_split_annotations(root, "val")   # images, cameras, joint_3d and MANO_NeuralAnnot
    ann.frame_row(capture, frame) ; ann.camera(capture, cam)

Frames are keyed by (capture, frame_idx) and sorted; `mano` holds (frames, 2, 61) parameters
[pose 48 | shape 10 | trans 3] for the right and left hand with `mano_present` (frames, 2) - a null
hand is absent, a malformed one is an error naming the file, capture, frame and field. The large
files are parsed one capture at a time (shards.jsonstream).
"""
import json
import os
from dataclasses import dataclass

import numpy as np

from .. import fsio
from ..checked import floats
from ..jsonstream import stream_items, stream_kvitems
from .model import SIDES, ManoError

KINDS = ("data", "camera", "joint_3d", "MANO_NeuralAnnot")
N_PARAMS = 61  # pose 48, shape 10, trans 3
_SHIFT = np.int64(1) << np.int64(32)


def annotation_file(root, split, kind) -> str:
    return fsio.join(fsio.root_path(os.fspath(root)), "annotations", split, f"InterHand2.6M_{split}_{kind}.json")


def frame_key(capture, frame):
    return np.asarray(capture, np.int64) * _SHIFT + np.asarray(frame, np.int64)


@dataclass
class SplitAnnotations:
    root: str
    split: str
    images: dict  # id, capture, frame_idx, width, height (int64 arrays); camera, seq_name, file_name (lists)
    cameras: dict  # (capture str, camera str) -> {"campos" (3,), "camrot" (3, 3), "focal" (2,), "princpt" (2,)}
    frame_keys: np.ndarray  # (F,) sorted frame_key
    world: np.ndarray  # (F, 42, 3) mm; NaN where joint_3d has no entry
    joint_valid: np.ndarray  # (F, 42) bool
    mano: np.ndarray  # (F, 2, 61)
    mano_present: np.ndarray  # (F, 2) bool

    def file(self, kind):
        return annotation_file(self.root, self.split, kind)

    def frame_rows(self, capture, frame) -> np.ndarray:
        """Row of each (capture, frame) in the frame arrays, -1 where unknown."""
        want = frame_key(capture, frame)
        pos = np.minimum(np.searchsorted(self.frame_keys, want), max(len(self.frame_keys) - 1, 0))
        found = self.frame_keys[pos] == want if len(self.frame_keys) else np.zeros(np.shape(want), bool)
        return np.where(found, pos, -1)

    def camera(self, capture, cam) -> dict:
        key = (str(capture), str(cam))
        if key not in self.cameras:
            caps = sorted({c for c, _ in self.cameras}, key=lambda c: (len(c), c))
            if key[0] not in caps:
                raise ManoError(f"{self.file('camera')}: capture {capture}: not in the file (has {', '.join(caps)})")
            cams = sorted(k for c, k in self.cameras if c == key[0])
            raise ManoError(f"{self.file('camera')}: capture {capture}: field 'campos': no camera {cam!r} "
                            f"(has {', '.join(cams)})")
        return self.cameras[key]


def _floats(value, shape, where):
    """shards.checked.floats with the MANO tools' error type; `where` names the file and field."""
    try:
        return floats(value, shape, where)
    except ValueError as e:
        raise ManoError(str(e)) from None


def load_images(path) -> dict:
    cols = {k: [] for k in ("id", "capture", "frame_idx", "width", "height", "camera", "seq_name", "file_name")}
    for i, img in enumerate(stream_items(path, "images.item")):
        try:
            for k in ("id", "capture", "frame_idx", "width", "height"):
                cols[k].append(int(img[k]))
            for k in ("camera", "seq_name", "file_name"):
                cols[k].append(str(img[k]))
        except (KeyError, TypeError, ValueError) as e:
            raise ManoError(f"{path}: images[{i}]: missing or bad field {e}") from None
    return {k: (np.asarray(v, np.int64) if k in ("id", "capture", "frame_idx", "width", "height") else v)
            for k, v in cols.items()}


def load_cameras(path) -> dict:
    if not fsio.isfile(path):
        raise FileNotFoundError(f"{path}: annotation file not found")
    with fsio.open_input(path) as f:
        raw = json.load(f)
    out = {}
    for cap, c in raw.items():
        if not isinstance(c, dict) or "campos" not in c:
            raise ManoError(f"{path}: capture {cap}: field 'campos': missing")
        for cam in c["campos"]:
            p = {}
            for field, shape in (("campos", (3,)), ("camrot", (3, 3)), ("focal", (2,)), ("princpt", (2,))):
                try:
                    p[field] = _floats(c[field][cam], shape, f"{path}: capture {cap} camera {cam}: field {field!r}")
                except (KeyError, TypeError):
                    raise ManoError(f"{path}: capture {cap} camera {cam}: field {field!r}: missing") from None
            out[(str(cap), str(cam))] = p
    return out


def mano_entry(entry, where) -> np.ndarray | None:
    """One hand of MANO_NeuralAnnot.json -> (61,) [pose | shape | trans], or None for a null hand."""
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise ManoError(f"{where}: not an object with pose, shape, trans")
    parts = []
    for field, n in (("pose", 48), ("shape", 10), ("trans", 3)):
        if entry.get(field) is None:
            raise ManoError(f"{where}.{field}': missing or null")
        parts.append(_floats(entry[field], (n,), f"{where}.{field}'"))
    return np.concatenate(parts)


def load_mano_params(path):
    """MANO_NeuralAnnot.json -> (frame keys (F,) int64 in file order, params (F, 2, 61) [right, left],
    present (F, 2) bool); null hands are absent, malformed ones an error naming the field."""
    keys, params, present_all = [], [], []
    for cap, frames in stream_kvitems(path, ""):
        for fr, v in (frames.items() if isinstance(frames, dict) else ()):
            try:
                keys.append(int(frame_key(int(cap), int(fr))))
            except ValueError:
                raise ManoError(f"{path}: capture {cap!r} frame {fr!r}: keys must be integers") from None
            row, present = np.zeros((2, N_PARAMS)), np.zeros(2, bool)
            for h, side in enumerate(SIDES):
                p = mano_entry((v or {}).get(side), f"{path}: capture {cap} frame {fr}: field '{side}")
                if p is not None:
                    row[h], present[h] = p, True
            params.append(row)
            present_all.append(present)
    return (np.asarray(keys, np.int64), np.asarray(params).reshape(-1, 2, N_PARAMS),
            np.asarray(present_all, bool).reshape(-1, 2))


def load_frames(joint_path, mano_path):
    """joint_3d.json and MANO_NeuralAnnot.json -> sorted frame keys, world joints, validity, MANO."""
    keys, world, valid = [], [], []
    for cap, frames in stream_kvitems(joint_path, ""):
        for fr, v in (frames.items() if isinstance(frames, dict) else ()):
            where = f"{joint_path}: capture {cap} frame {fr}: field"
            try:
                keys.append(int(frame_key(int(cap), int(fr))))
            except ValueError:
                raise ManoError(f"{joint_path}: capture {cap!r} frame {fr!r}: keys must be integers") from None
            if not isinstance(v, dict) or "world_coord" not in v or "joint_valid" not in v:
                raise ManoError(f"{where} 'world_coord' / 'joint_valid': missing")
            world.append(_floats(v["world_coord"], (42, 3), f"{where} 'world_coord'"))
            valid.append(_floats(v["joint_valid"], (42,), f"{where} 'joint_valid'") > 0)
    mkeys, mparams, mpresent = load_mano_params(mano_path)
    all_keys = np.unique(np.concatenate([np.asarray(keys, np.int64), mkeys]))
    n = len(all_keys)
    w = np.full((n, 42, 3), np.nan)
    jv = np.zeros((n, 42), bool)
    mano, present = np.zeros((n, 2, N_PARAMS)), np.zeros((n, 2), bool)
    if keys:
        r = np.searchsorted(all_keys, keys)
        w[r], jv[r] = np.asarray(world), np.asarray(valid)
    if len(mkeys):
        r = np.searchsorted(all_keys, mkeys)
        mano[r], present[r] = np.asarray(mparams), np.asarray(mpresent)
    return all_keys, w, jv, mano, present


def load_split_annotations(root, split, images=True) -> SplitAnnotations:
    """Parse a split's four annotation files (data.json only when `images`)."""
    root = os.path.abspath(os.fspath(root))
    imgs = load_images(annotation_file(root, split, "data")) if images else None
    cams = load_cameras(annotation_file(root, split, "camera"))
    keys, world, valid, mano, present = load_frames(annotation_file(root, split, "joint_3d"),
                                                    annotation_file(root, split, "MANO_NeuralAnnot"))
    return SplitAnnotations(root, split, imgs, cams, keys, world, valid, mano, present)
