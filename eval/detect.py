"""Find the hands in a photo for the single-image demo, and the bbox an annotation would give them.

The detector is MediaPipe's legacy hand solution (`mediapipe==0.10.14`, the optional extra
`pip install -e .[detect]`, Apache-2.0): a palm detector and a 21-landmark model, both shipped inside
the wheel and run on the CPU, so nothing is downloaded at run time.

The crop follows the data set, not the detector: InterHand2.6M's `data.json` bbox is the tight box of
the hand's valid 2D joints (both hands for a two-hand image) scaled by 1.2 about its centre, not
clipped to the image (checked on four released annotations, single and two-hand: the tight box of the
projected valid joints x 1.2 reproduces the stored bbox to 1e-4 px). MediaPipe's 21 landmarks are the same anatomical points as
InterHand2.6M's 21 joints per hand (wrist, the thumb's CMC, MCP, IP and tip, and each finger's MCP,
PIP, DIP and tip), so their tight box is the joints' tight box. The model's own bbox processing
(docs/conventions.md §3.1: aspect ratio, then x1.25) is applied afterwards by eval.demo.run, as to any
annotation bbox.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np

ANNOT_BBOX_SCALE = 1.2  # InterHand2.6M's annotation bbox: the joints' tight box x 1.2 about its centre
DETECTOR = "mediapipe==0.10.14 hands (legacy solution, static image mode, lite models)"
DEFAULT_MIN_CONFIDENCE = 0.5  # MediaPipe's default palm-detection score threshold
# The lite palm and landmark models (0) rather than the full ones (1): on four released InterHand2.6M
# test pictures (512x334, as the data set's) lite found a hand in two (box IoU 0.85 and 0.87 with the
# annotation's bbox), full in one (IoU 0.82); the same on their mirror images.
MODEL_COMPLEXITY = 0
# InterHand2.6M's order within a hand (thumb tip..base, index, middle, ring, pinky tip..base, wrist) as
# indices into MediaPipe's (wrist, thumb CMC..tip, index MCP..tip, middle, ring, pinky).
MP_TO_INTERHAND = np.array([4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17, 0])


class DetectorUnavailable(RuntimeError):
    """The optional hand detector is not installed."""


@dataclass(frozen=True)
class Hands:
    """What the detector found in one image."""
    keypoints: np.ndarray  # (n_hands, 21, 2) pixels [u, v], InterHand2.6M joint order within a hand
    handedness: tuple  # ("right" | "left", ...) as seen in an unmirrored photo
    scores: tuple  # the detector's handedness score per hand


def annotation_bbox(keypoints) -> np.ndarray:
    """(..., 2) pixel keypoints of one or both hands -> [x, y, w, h]: their tight box scaled by
    ANNOT_BBOX_SCALE about its centre, as InterHand2.6M's annotation bbox."""
    p = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    if len(p) == 0 or not np.all(np.isfinite(p)):
        raise ValueError(f"keypoints must be finite and non-empty, got shape {np.shape(keypoints)}")
    lo, hi = p.min(0), p.max(0)
    centre, size = (lo + hi) / 2.0, (hi - lo) * ANNOT_BBOX_SCALE
    return np.concatenate([centre - size / 2.0, size])


def detect_hands(image: np.ndarray, min_confidence: float = DEFAULT_MIN_CONFIDENCE, quiet: bool = True) -> Hands:
    """Up to two hands in an (H, W, 3) uint8 RGB image (an empty Hands when none is found).
    `quiet` hides MediaPipe's native log lines on stderr (shown again if it fails)."""
    try:
        with _native_stderr_hidden(quiet):
            from mediapipe.python.solutions import hands as mp_hands
    except ImportError as e:
        raise DetectorUnavailable(
            f"the hand detector is not installed ({e}): pip install -e '.[detect]' (mediapipe==0.10.14, "
            "Python <= 3.12), or pass --bbox X Y W H") from None
    img = np.ascontiguousarray(image, dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got shape {img.shape}")
    h, w = img.shape[:2]
    with _native_stderr_hidden(quiet), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # protobuf's deprecation notice inside mediapipe
        with mp_hands.Hands(static_image_mode=True, max_num_hands=2, model_complexity=MODEL_COMPLEXITY,
                            min_detection_confidence=min_confidence) as detector:
            res = detector.process(img)
    if not res.multi_hand_landmarks:
        return Hands(np.zeros((0, 21, 2)), (), ())
    kps, sides, scores = [], [], []
    for lms, cls in zip(res.multi_hand_landmarks, res.multi_handedness):
        xy = np.array([[lm.x * w, lm.y * h] for lm in lms.landmark], dtype=np.float64)  # normalised -> px
        kps.append(xy[MP_TO_INTERHAND])
        best = cls.classification[0]
        # MediaPipe labels hands as in a mirrored (selfie) image: its "Left" is a right hand in a photo.
        sides.append("right" if best.label == "Left" else "left")
        scores.append(float(best.score))
    return Hands(np.stack(kps), tuple(sides), tuple(scores))


@contextlib.contextmanager
def _native_stderr_hidden(quiet: bool):
    """Send file descriptor 2 (where MediaPipe's C++ logs go) to a temporary file for the block;
    replay it if the block raises."""
    if not quiet:
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no stderr descriptor to redirect
        yield
        return
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            os.write(2, log.read()[-4000:])
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
