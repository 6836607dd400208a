"""Joint layout of InterHand2.6M (docs/conventions.md §2): 42 joints, right hand 0-20, left 21-41.

Within a hand: thumb tip..base (0-3), index (4-7), middle (8-11), ring (12-15), pinky (16-19),
wrist (20). The wrist is the root of its hand.
"""
import numpy as np

JOINTS_PER_HAND = 21
NUM_JOINTS = 42
ROOT = {"right": 20, "left": 41}
RIGHT = np.arange(0, 21)
LEFT = np.arange(21, 42)
HAND_TYPES = ("right", "left", "interacting")
# Hand type target vector (docs/conventions.md §3.7): [right present, left present].
HAND_TYPE_VEC = {"right": (1.0, 0.0), "left": (0.0, 1.0), "interacting": (1.0, 1.0)}

_FINGERS = ("thumb", "index", "middle", "ring", "pinky")
# Names in the order of skeleton.txt: thumb4 (tip) .. thumb1 (base), ..., wrist.
JOINT_NAMES = tuple(
    f"{side}_{name}"
    for side in ("r", "l")
    for name in [f"{f}{k}" for f in _FINGERS for k in (4, 3, 2, 1)] + ["wrist"]
)


def parents() -> np.ndarray:
    """Parent index of each of the 42 joints (-1 for wrists), as skeleton.txt defines it."""
    p = np.empty(NUM_JOINTS, dtype=np.int64)
    for off in (0, 21):
        for f in range(5):
            for k in range(4):  # k=0 tip .. k=3 base
                j = off + 4 * f + k
                p[j] = j + 1 if k < 3 else off + 20
        p[off + 20] = -1
    return p


# Flip permutation: index i of the flipped sample takes joint FLIP_PERM[i] of the original.
FLIP_PERM = np.concatenate([LEFT, RIGHT])


def hand_type_vec(hand_type: str) -> np.ndarray:
    if hand_type not in HAND_TYPE_VEC:
        raise ValueError(f"hand_type must be one of {HAND_TYPES}, got {hand_type!r}")
    return np.asarray(HAND_TYPE_VEC[hand_type], dtype=np.float32)
