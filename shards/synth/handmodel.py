"""A kinematic two-hand model for the synthetic data set (shards.synth): bone lengths, joint limits,
gesture poses, smooth motion, and the MANO joint rotations of a pose.

Hand-local frame of a right hand (mm): wrist at the origin, +y from the wrist towards the middle
finger, +x towards the thumb side, +z = x cross y out of the palm (fingers flex towards +z). A left
hand is the mirror image (x -> -x). Joints come out in the InterHand2.6M order of one hand
(shards.skeleton): thumb tip..base (0-3), index (4-7), middle (8-11), ring (12-15), pinky (16-19),
wrist (20). For the thumb the base (thumb1) is the CMC joint; for the other fingers it is the MCP.
"""
import numpy as np

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
# Finger base joint (thumb CMC / finger MCP) in the right hand's local frame, mm, unit scale.
BASE = np.array([[19.0, 27.0, 11.0], [23.0, 86.0, 2.0], [3.0, 90.0, 2.0], [-16.0, 85.0, 1.0],
                 [-32.0, 76.0, 0.0]])
# Bone lengths base->next, next->next, ->tip (thumb: metacarpal, proximal, distal).
LENGTH = np.array([[42.0, 31.0, 26.0], [42.0, 24.0, 19.0], [46.0, 28.0, 20.0], [43.0, 27.0, 20.0],
                   [34.0, 20.0, 18.0]])
# Capsule radius of each bone (same order), mm.
RADIUS = np.array([[13.0, 10.5, 9.5], [9.6, 8.6, 7.9], [9.9, 8.9, 8.1], [9.3, 8.4, 7.7],
                   [8.3, 7.6, 7.1]])
# Rest direction of each finger in the palm plane: degrees towards the thumb side (+x).
SPLAY = np.radians([40.0, 7.0, 0.0, -7.0, -15.0])
# Thumb twist about its own axis so that it flexes across the palm rather than parallel to it.
THUMB_TWIST = np.radians(-55.0)
# Joint limits, degrees, per finger: [base flexion, base abduction, middle flexion, distal flexion].
LIMITS_LO = np.radians([[-20, -15, -10, -15]] + [[-20, -15, 0, 0]] * 4)
LIMITS_HI = np.radians([[50, 45, 65, 80]] + [[90, 15, 105, 75]] * 4)

# Gesture key poses (degrees): per finger [base flex, base abduction, middle flex, distal flex].
_FIST = [85, 0, 100, 60]
_OPEN = [0, 0, 0, 0]
GESTURES = {
    "open_palm": [[-5, 10, 0, 0]] + [_OPEN] * 4,
    "relaxed": [[10, 20, 15, 15]] + [[20, 0, 30, 20]] * 4,
    "fist": [[30, 5, 50, 50]] + [_FIST] * 4,
    "pointing": [[30, 5, 50, 50], _OPEN, _FIST, _FIST, _FIST],
    "peace": [[30, 5, 50, 50], [0, 8, 0, 0], [0, -8, 0, 0], _FIST, _FIST],
    "thumb_up": [[-10, 30, 0, 0]] + [_FIST] * 4,
    "ok_sign": [[30, 20, 30, 30], [45, 0, 60, 40], _OPEN, [0, -5, 0, 0], [0, -10, 0, 0]],
    "fake_gun": [[-10, 35, 0, 0], _OPEN, _OPEN, _FIST, _FIST],
    "three_fingers": [[35, 5, 50, 50], _OPEN, _OPEN, _OPEN, _FIST],
    "pinch": [[35, 25, 25, 30], [50, 0, 55, 35], [20, 0, 30, 20], [25, 0, 35, 25], [30, 0, 40, 30]],
    "claw": [[20, 20, 40, 40]] + [[5, 0, 80, 60]] * 4,
    "spread": [[-10, 40, 0, 0], [0, 15, 0, 0], _OPEN, [0, -15, 0, 0], [0, -15, 0, 0]],
}
SINGLE_SEQS = ("neutral_relaxed", "good_luck", "fake_gun", "star_trek", "finger_counting",
               "thumb_up", "fist_ROM", "pointing", "ok_sign", "fourfinger_ROM", "thumbtucked_ROM",
               "pinch_ROM")
DOUBLE_SEQS = ("dh_grab", "dh_pray", "dh_touchROM", "dh_fingertips", "dh_clap", "dh_interlock")


def rotation(axis, angle) -> np.ndarray:
    """Rodrigues: axis (..., 3) (normalised here), angle (...) radians -> (..., 3, 3)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = np.asarray(angle, dtype=np.float64)[..., None, None]
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1),
                  np.stack([-y, x, zero], -1)], -2)
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def axis_angle(rot: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation -> (..., 3) axis-angle vector (angle < pi)."""
    r = np.asarray(rot, dtype=np.float64)
    cos = np.clip((np.trace(r, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    ang = np.arccos(cos)
    v = np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0],
                  r[..., 1, 0] - r[..., 0, 1]], -1)
    s = np.sin(ang)
    scale = np.where(s > 1e-8, ang / (2 * np.where(s > 1e-8, s, 1.0)), 0.5)
    return v * scale[..., None]


def _rx(a):
    return rotation(np.broadcast_to([1.0, 0.0, 0.0], np.shape(a) + (3,)), a)


def _rz(a):
    return rotation(np.broadcast_to([0.0, 0.0, 1.0], np.shape(a) + (3,)), a)


def forward_kinematics(angles: np.ndarray, scale) -> np.ndarray:
    """Right-hand local joints. angles (T, 5, 4) radians [base flex, base abd, mid flex, distal flex]
    (clipped to the joint limits), scale (T,) or scalar -> (T, 21, 3) mm."""
    angles = np.clip(np.asarray(angles, dtype=np.float64), LIMITS_LO, LIMITS_HI)
    t = angles.shape[0]
    s = np.broadcast_to(np.asarray(scale, dtype=np.float64), (t,))[:, None]
    out = np.zeros((t, 21, 3))
    for f in range(5):
        frame = np.broadcast_to(_rz(-SPLAY[f]), (t, 3, 3))
        if f == 0:
            frame = frame @ rotation([0.0, 1.0, 0.0], THUMB_TWIST)
        frame = frame @ _rz(-angles[:, f, 1]) @ _rx(angles[:, f, 0])
        p = BASE[f][None] * s
        out[:, 4 * f + 3] = p
        for k in range(3):
            if k > 0:
                frame = frame @ _rx(angles[:, f, 1 + k])
            p = p + frame[:, :, 1] * (LENGTH[f, k] * s)
            out[:, 4 * f + 2 - k] = p
    return out


def mirror(local: np.ndarray) -> np.ndarray:
    """Right-hand local joints -> the mirrored (left) hand's local joints."""
    return local * np.array([-1.0, 1.0, 1.0])


def gesture_trajectory(names, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth pose track through the key gestures `names` at times t in [0, 1] -> (T, 5, 4) rad.

    Key poses are spaced evenly over [0, 1] with cosine easing between them, perturbed per sequence
    (a few degrees per angle) and by a slow per-angle wobble."""
    keys = np.radians([GESTURES[n] for n in names]) + rng.normal(0, np.radians(6), (len(names), 5, 4))
    pos = np.clip(t, 0, 1) * (len(names) - 1)
    i0 = np.minimum(np.floor(pos).astype(int), len(names) - 1)
    i1 = np.minimum(i0 + 1, len(names) - 1)
    w = (1 - np.cos(np.pi * (pos - i0))) / 2
    track = keys[i0] * (1 - w)[:, None, None] + keys[i1] * w[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (5, 4))
    wobble = np.radians(5) * np.sin(2 * np.pi * t[:, None, None] * 1.3 + phase)
    return np.clip(track + wobble, LIMITS_LO, LIMITS_HI)


def random_frame(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation (3, 3)."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def wobble_rotations(base: np.ndarray, t: np.ndarray, amp_deg: float, rng) -> np.ndarray:
    """base (3, 3) slowly rotated about a random axis by amp * sin(...) -> (T, 3, 3)."""
    axis = rng.normal(size=3)
    ang = np.radians(amp_deg) * np.sin(2 * np.pi * rng.uniform(0.4, 1.0) * t + rng.uniform(0, 6.3))
    return base[None] @ rotation(np.broadcast_to(axis, (len(t), 3)), ang)


# MANO's finger order (index, middle, pinky, ring, thumb) as indices into FINGERS.
MANO_FINGERS = (1, 2, 4, 3, 0)


def finger_frames() -> np.ndarray:
    """Rest frame of each finger as forward_kinematics builds it, (5, 3, 3): columns x (thumb side),
    y (along the finger), z (palm side)."""
    out = []
    for f in range(5):
        fr = rotation([0.0, 0.0, 1.0], -SPLAY[f])
        if f == 0:
            fr = fr @ rotation([0.0, 1.0, 0.0], THUMB_TWIST)
        out.append(fr)
    return np.stack(out)


FRAMES = finger_frames()


def finger_pose(angles: np.ndarray) -> np.ndarray:
    """Joint angles (..., 5, 4) radians -> the right hand's 15 MANO joint rotations as axis-angle
    (..., 45), MANO order. MANO rotates each joint in the template's frame, forward_kinematics in
    the finger's rest frame F, so each rotation is conjugated: F R F^T."""
    a = np.clip(np.asarray(angles, dtype=np.float64), LIMITS_LO, LIMITS_HI)
    out = []
    for f in MANO_FINGERS:
        fr = FRAMES[f]
        base = _rz(-a[..., f, 1]) @ _rx(a[..., f, 0])
        out.append(axis_angle(fr @ base @ fr.T))
        out.append(a[..., f, 2, None] * fr[:, 0])
        out.append(a[..., f, 3, None] * fr[:, 0])
    return np.concatenate(out, axis=-1)
