"""Where the synthetic hands are: on the arms of a subject seated in a fixed camera rig.

InterHand2.6M was captured in one multi-camera dome: every capture (subject) uses the same
cameras, the subject faces the same way, and each hand hangs on an arm, so a camera's picture
carries the cues a real one does: a forearm that comes from the body's side of its hand, a wrist
that bends only so far, a forearm that rolls the palm from facing down to facing up but rarely
turns it outwards thumb-down, and the static backdrop of that camera. (A uniformly random hand
orientation, the generator's first model, has none of these: every picture of it is as likely as
its mirror image with right and left swapped, so only the hand's own palm/back asymmetry tells
the sides apart.)

Body frame = world frame (mm): +x the subject's right, +y forward (from the chest towards the
hands), +z up; the origin is the capture's hand workspace centre. Rotations are hand-local ->
world in the right hand's convention (shards/synth/handmodel.py: +y towards the middle finger,
+z out of the palm); a left hand is the mirror image of a right one (x -> -x), so it is drawn as a
right hand and mirrored (rotation M R M, position M p, M = diag(-1, 1, 1)).
"""
import numpy as np

from .handmodel import rotation

MIRROR = np.diag([-1.0, 1.0, 1.0])
FOREARM_MM = 260.0
# Direction from a right wrist to its elbow (back towards the body, outwards, down) and its spread.
ELBOW_DIR = np.array([0.45, -0.7, -0.55])
ELBOW_SPREAD = 0.22
# Forearm roll (degrees): 0 = palm down, 90 = palm towards the body's midline (handshake),
# 180 = palm up; real forearms (with some shoulder rotation) cover about -40..200.
ROLL_SINGLE = (-40.0, 200.0)
ROLL_INTERACTING = (20.0, 170.0)  # two hands working together mostly face each other
WRIST_FLEX = (-55.0, 60.0)  # degrees about the hand's x (+: towards the palm)
WRIST_DEVIATION = (-20.0, 25.0)  # degrees about the palm normal
# Where a right hand's palm centre (PALM_MM from the wrist along the hand) sits about the workspace
# centre (mm, body frame): one hand near the middle of the rig's view, two hands side by side.
PALM_MM = 70.0
PALM_SINGLE = ((-30.0, 60.0), (-40.0, 40.0), (-40.0, 40.0))
PALM_INTERACTING = ((25.0, 75.0), (-25.0, 25.0), (-25.0, 25.0))


def _unit(v):
    return v / np.linalg.norm(v)


def right_arm(rng: np.random.Generator, roll_deg) -> tuple:
    """A right hand's wrist rotation (3, 3) and its wrist->elbow vector (3,) mm, body frame."""
    to_elbow = _unit(ELBOW_DIR + rng.normal(0, ELBOW_SPREAD, 3))
    axis = -to_elbow  # elbow -> wrist: the forearm's direction, the hand's +y at a straight wrist
    down = np.array([0.0, 0.0, -1.0]) if abs(axis[2]) < 0.99 else np.array([0.0, 1.0, 0.0])  # never parallel
    down = _unit(down - (down @ axis) * axis)
    roll = np.radians(rng.uniform(*roll_deg))
    palm = np.cos(roll) * down + np.sin(roll) * np.cross(axis, down)  # 0 down, 90 medial, 180 up
    neutral = np.stack([np.cross(axis, palm), axis, palm], axis=1)  # columns: hand x, y, z
    flex = rotation(np.array([1.0, 0.0, 0.0]), np.radians(rng.uniform(*WRIST_FLEX)))
    dev = rotation(np.array([0.0, 0.0, 1.0]), np.radians(rng.uniform(*WRIST_DEVIATION)))
    return neutral @ flex @ dev, FOREARM_MM * to_elbow


def place_hands(rng: np.random.Generator, hand_type: str) -> dict:
    """{side: (rotation (3, 3), wrist (3,) mm, wrist->elbow (3,) mm)} of a sequence's base pose, body
    frame, for hand_type "right", "left" or "interacting"."""
    sides = ("right", "left") if hand_type == "interacting" else (hand_type,)
    box = PALM_INTERACTING if hand_type == "interacting" else PALM_SINGLE
    roll = ROLL_INTERACTING if hand_type == "interacting" else ROLL_SINGLE
    out = {}
    for side in sides:
        rot, elbow = right_arm(rng, roll)
        wrist = np.array([rng.uniform(*r) for r in box]) - PALM_MM * rot[:, 1]
        if side == "left":
            rot, wrist, elbow = MIRROR @ rot @ MIRROR, MIRROR @ wrist, MIRROR @ elbow
        out[side] = (rot, wrist, elbow)
    return out
