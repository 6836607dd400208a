"""InterHand2.6M's two world-coordinate tables, parsed into arrays and joined to the images:
`InterHand2.6M_{split}_camera.json` (per capture and camera: campos, camrot, focal, princpt) and
`InterHand2.6M_{split}_joint_3d.json` (per capture and frame: world_coord of the 42 joints).

Both return, per image row, the row of the table it uses (-1 where there is none or the entry is
unusable) and a function giving the reason for an image row, so that the reader can mark every
annotation of that image as a problem (nothing is dropped silently). docs/conventions.md §2.
"""
import os
from array import array

import numpy as np

from .checked import floats, narrow
from .jsonstream import stream_kvitems

CAP_SHIFT = np.int64(1) << np.int64(32)  # frame key = capture << 32 + frame


def load_cameras(path: str, img_capture: np.ndarray, img_cam: np.ndarray, cam_names: list):
    """-> (params (K, 16) float64 [campos 3, camrot 9, focal 2, princpt 2], img_camrow (n_images,),
    reason(img_row) -> str) for images given by capture number and camera-name index."""
    keys, params, bad = {}, [], {}
    for cap, c in stream_kvitems(path, ""):
        cams = c.get("campos", {}) if isinstance(c, dict) else {}
        for cam in cams:
            k = keys.setdefault((str(cap), str(cam)), len(keys))
            try:
                params.append(np.concatenate([
                    floats(c["campos"][cam], (3,), "campos").ravel(),
                    floats(c["camrot"][cam], (3, 3), "camrot").ravel(),
                    floats(c["focal"][cam], (2,), "focal"), floats(c["princpt"][cam], (2,), "princpt")]))
            except (KeyError, TypeError, ValueError) as e:
                bad[k] = f"{os.path.basename(path)}: capture {cap} camera {cam}: " + (
                    f"missing {e}" if isinstance(e, KeyError) else str(e))
                params.append(np.zeros(16))
    cam_params = np.asarray(params, dtype=np.float64).reshape(-1, 16)
    caps = {cap for cap, _ in keys}
    n_names = max(len(cam_names), 1)
    # (capture, camera name index) pairs used by images -> camera row, per image.
    pairs = img_capture.astype(np.int64) * len(cam_names) + img_cam
    uniq, inv = np.unique(pairs, return_inverse=True)
    inv = inv.reshape(-1)
    rows, base = np.full(len(uniq), -1, np.int64), os.path.basename(path)
    pair_reason = {}
    for u, p in enumerate(uniq):
        cap, cam = str(int(p) // n_names), cam_names[int(p) % n_names]
        if (cap, cam) in keys and keys[(cap, cam)] not in bad:
            rows[u] = keys[(cap, cam)]
        elif (cap, cam) in keys:
            pair_reason[u] = bad[keys[(cap, cam)]]
        else:
            pair_reason[u] = f"{base}: no capture {cap}" if cap not in caps else f"{base}: capture {cap} has no camera {cam!r}"
    img_camrow = narrow(rows[inv] if len(pairs) else np.zeros(0, np.int64))
    return cam_params, img_camrow, lambda img_row: pair_reason[int(inv[img_row])]


def load_frames(path: str, img_capture: np.ndarray, img_frame: np.ndarray):
    """-> (world (F, 42, 3) float32 sorted by (capture, frame), img_framerow (n_images,), bad
    (n_images,) bool: no usable frame, reason(img_row) -> str) for images given by capture and frame."""
    keys, world, bad = array("q"), [], {}
    for cap, frames in stream_kvitems(path, ""):
        for frame, v in (frames.items() if isinstance(frames, dict) else ()):
            try:
                key = int(cap) * CAP_SHIFT + int(frame)
            except ValueError:
                raise ValueError(f"{path}: capture {cap!r} frame {frame!r}: keys must be integers") from None
            try:
                world.append(floats(v["world_coord"], (42, 3), "world_coord").astype(np.float32))
            except (KeyError, TypeError, ValueError) as e:
                bad[len(keys)] = f"{os.path.basename(path)}: capture {cap} frame {frame}: " + (
                    "missing 'world_coord'" if isinstance(e, KeyError) else str(e))
                world.append(np.zeros((42, 3), np.float32))
            keys.append(key)
    keys = np.frombuffer(keys, np.int64) if len(keys) else np.zeros(0, np.int64)
    order = np.argsort(keys, kind="stable")
    world = np.stack(world)[order] if world else np.zeros((0, 42, 3), np.float32)
    keys = keys[order]
    bad = {int(np.flatnonzero(order == r)[0]): m for r, m in bad.items()}
    want = img_capture * CAP_SHIFT + img_frame
    pos = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
    found = (keys[pos] == want) if len(keys) else np.zeros(len(want), bool)
    img_framerow = narrow(np.where(found, pos, -1))
    base = os.path.basename(path)

    def reason(img_row):
        r = int(img_framerow[img_row])
        if r >= 0:
            return bad[r]
        cap, fr = int(img_capture[img_row]), int(img_frame[img_row])
        return f"{base}: capture {cap} has no frame {fr}" if (keys // CAP_SHIFT == cap).any() else f"{base}: no capture {cap}"
    bad_rows = np.fromiter(bad, np.int64, len(bad))
    return world, img_framerow, ~found | np.isin(img_framerow, bad_rows), reason
