"""The synthetic data set's own MANO-format hand model (written beside the set by shards.synth).

A procedural two-hand model with the official files' layout, so that smplx and shards.mano load it
like the licensed MANO_RIGHT.pkl / MANO_LEFT.pkl: v_template (778, 3) m, f (1538, 3), shapedirs
(778, 3, 10), posedirs (778, 3, 135), J_regressor (16, 778), weights (778, 16), kintree_table
(2, 16), hands_components (45, 45), hands_mean (45,); plus its own 21 x 778 InterHand joint regressor.

The mesh is built around the kinematic hand of shards/synth/handmodel.py at rest (template frame =
the right hand's local frame, metres): a palm tube of 15 rings x 16 vertices, open at the wrist like
MANO (a 16-vertex boundary loop), four finger tubes (12 rings x 8) rising from the palm's top ring,
and a thumb tube (14 rings x 10) stitched into a hole on the thumb side; ridge caps close the tips.
One connected, consistently oriented surface with one boundary, so V - E + F = 1 and F = 2V - 18.
Every joint of the kinematic model is the centroid of one vertex ring, and every vertex of a ring has
the same skinning weights, so MANO's linear blend skinning moves the ring centroids exactly as the
kinematic chain moves its joints: the InterHand joints regressed from the posed mesh are
handmodel.forward_kinematics's joints. The pose-corrective blend shapes (a knuckle bulge growing
with 1 - cos of each joint's rotation) sum to zero over each ring, so they shape the surface without
moving the joints. MANO's root joint (J_regressor row 0) is the centroid of palm ring 1, 4 mm above
the InterHand wrist (ring 0): like the real model, MANO's root and the annotated wrist differ.

MANO_LEFT is the mirror image (x -> -x, faces reversed, joint rotations mirrored) and, like the
official left file, carries the right model's shapedirs[:, 0, :] un-negated: loaders must apply the
known fix (shards.mano negates it when it equals the right one's).
"""
import numpy as np

from . import handmodel as hm

N_VERTS, N_FACES = 778, 1538
MANO_FINGERS, FRAMES = hm.MANO_FINGERS, hm.FRAMES
PARENTS = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14])
PALM_RINGS, PALM_SIDES = 15, 16
FINGER_SIDES, THUMB_SIDES = 8, 10
# Rings between the joints of each bone (finger: proximal, middle, distal; thumb: metacarpal ...).
FINGER_BETWEEN, THUMB_BETWEEN = (4, 2, 2), (4, 3, 3)
THUMB_HOLE_RING = 6  # the thumb leaves the palm through a hole around rings 5-8, thumb-side edge
J0_OFFSET_MM = 4.0
WRIST_HALF = (23.0, 14.0)  # wrist ring half width (x) and half thickness (z), mm
BULGE_MM = 2.5  # pose corrective at 90 degrees: 2.5 * (1 - cos) mm outwards on the back of a joint
# Shape space (mm per unit of beta unless said): 0 size (5 % about the wrist), 1 all finger lengths
# (3 %), 2 palm width (4 %), 3 thickness (5 %), 4 palm length (3 %), 5-9 thumb, index, middle, ring,
# pinky length (4 % each).
SHAPE_SIZE = 0.05


class _Builder:
    def __init__(self):
        self.pos, self.weights, self.faces = [], [], []
        self.part, self.centre, self.base, self.axis = [], [], [], []

    def add(self, p, weights, part, centre, base, axis):
        """Vertices p (n, 3) sharing weights {joint: w}, part (-1 palm, f finger), ring centre."""
        start = sum(len(q) for q in self.pos)
        self.pos.append(np.asarray(p, float))
        for _ in range(len(p)):
            self.weights.append(weights)
            self.part.append(part)
            self.centre.append(centre)
            self.base.append(base)
            self.axis.append(axis)
        return np.arange(start, start + len(p))

    def quad(self, a, b, c, d):
        self.faces += [(a, b, c), (a, c, d)]

    def strip(self, lo, hi):
        """Quads between two rings of equal size, vertex k of one above vertex k of the other."""
        n = len(lo)
        for k in range(n):
            self.quad(lo[k], lo[(k + 1) % n], hi[(k + 1) % n], hi[k])


def _ring(centre, frame, radius, angles):
    ex, ez = frame[:, 0], frame[:, 2]
    return centre + radius * (np.cos(angles)[:, None] * ex + np.sin(angles)[:, None] * ez)


def _ridge_cap(b, ring, ring_pos, centre, frame, radius, joint, f, base):
    """Close a ring of n = 2 (m + 1) vertices with a ridge of m vertices across the finger's width
    (a flattened fingertip reaching `radius` beyond the ring)."""
    n = len(ring)
    m = n // 2 - 1
    rel = ring_pos - centre
    start = int(np.argmax(rel @ frame[:, 0]))  # the ring vertex on the thumb-side end of the ridge
    order = [ring[(start + k) % n] for k in range(n)]
    t = np.linspace(1.0, -1.0, m + 2)[1:-1]
    ridge_pos = (centre + frame[:, 1] * radius * (0.75 + 0.2 * (1 - t ** 2))[:, None]
                 + frame[:, 0] * (0.6 * radius * t)[:, None])
    c = b.add(ridge_pos, {joint: 1.0}, f, centre, base, frame[:, 1])
    r = order
    b.faces += [(r[0], r[1], c[0]), (r[0], c[0], r[n - 1])]
    for i in range(m - 1):
        b.quad(r[i + 1], r[i + 2], c[i + 1], c[i])
        b.quad(r[n - 2 - i], r[n - 1 - i], c[i], c[i + 1])
    b.faces += [(r[m], r[m + 1], c[m - 1]), (r[m + 1], r[m + 2], c[m - 1])]


def _chain_rings(joints, f, between):
    """Ring centres along a finger (base .. tip), the bone of each ring and whether it sits on a joint."""
    chain = [joints[4 * f + 3], joints[4 * f + 2], joints[4 * f + 1], joints[4 * f]]
    out = [(chain[0], 0, True)]
    for b in range(3):
        for k in range(1, between[b] + 1):
            out.append((chain[b] + (chain[b + 1] - chain[b]) * k / (between[b] + 1), b, False))
        out.append((chain[b + 1], b, True))
    return out


def _tube(b, joints, f, slot, first_ring_ids, first_ring_pos, angles, radii):
    """A finger tube from its first ring (already placed) to the ridge cap."""
    frame = FRAMES[f]
    between = THUMB_BETWEEN if f == 0 else FINGER_BETWEEN
    rings = _chain_rings(joints, f, between)
    ids, pos = first_ring_ids, first_ring_pos
    mano = [1 + 3 * slot, 2 + 3 * slot, 3 + 3 * slot]  # MANO joints of the three bones
    regress = {}  # InterHand joint -> ring ids
    joint_ring = 0
    base = joints[4 * f + 3]
    for i, (centre, bone, on_joint) in enumerate(rings):
        if i == 0:
            regress[4 * f + 3] = ids
            continue
        last = i == len(rings) - 1
        r = radii[bone] if not on_joint or last else max(radii[bone], radii[bone + 1])  # joints: the thicker bone
        if on_joint:
            joint_ring += 1
            if last:
                weights = {mano[2]: 1.0}
            else:
                weights = {mano[bone]: 0.5, mano[bone + 1]: 0.5}
        else:
            weights = {mano[bone]: 1.0}
        p = _ring(centre, frame, r, angles)
        new = b.add(p, weights, f, centre, base, frame[:, 1])
        b.strip(ids, new)
        ids, pos = new, p
        if on_joint:
            regress[4 * f + 3 - joint_ring] = ids
    _ridge_cap(b, ids, pos, rings[-1][0], frame, radii[2], mano[2], f, base)
    return regress


def build_right():
    """The right-hand model: dict of float64 arrays in metres (MANO keys) and 'ih_regressor' (21, 778)."""
    joints = hm.forward_kinematics(np.zeros((1, 5, 4)), 1.0)[0]  # (21, 3) mm, rest pose
    radius = hm.RADIUS
    b = _Builder()
    # ---- palm: rings 0 (wrist) .. 14 (knuckles), vertex order front f0..f7 then back b7..b0
    phi = np.pi * (np.arange(8) + 0.5) / 8
    wrist_x, wrist_h = WRIST_HALF[0] * np.cos(phi), WRIST_HALF[1] * np.sin(phi)
    top_front, top_back = [], []
    for k, f in enumerate((1, 2, 3, 4)):  # index .. pinky, thumb side first
        fr, r = FRAMES[f], radius[f, 0] * 1.05 * 0.95
        c = joints[4 * f + 3] - 5.0 * fr[:, 1]
        for sx in (1.0, -1.0):
            top_front.append(c + r * (sx * 0.7071 * fr[:, 0] + 0.7071 * fr[:, 2]))
            top_back.append(c + r * (sx * 0.7071 * fr[:, 0] - 0.7071 * fr[:, 2]))
    top_front, top_back = np.array(top_front), np.array(top_back)
    s = np.concatenate([[0.0, J0_OFFSET_MM / 78.0], 0.12 + 0.88 * np.arange(PALM_RINGS - 2) / (PALM_RINGS - 3)])
    palm_ids = []
    hole = {(THUMB_HOLE_RING, 0), (THUMB_HOLE_RING + 1, 0)}  # (ring, around index) removed
    for ri, si in enumerate(s):
        g = 1 - (1 - si) ** 2  # widen quickly above the wrist
        bulge = np.sin(np.pi * si)
        front = np.stack([wrist_x + (top_front[:, 0] - wrist_x) * g,
                          top_front[:, 1] * si,
                          wrist_h + (top_front[:, 2] - wrist_h) * si + 3.0 * bulge], 1)
        back = np.stack([wrist_x + (top_back[:, 0] - wrist_x) * g,
                         top_back[:, 1] * si,
                         -wrist_h + (top_back[:, 2] + wrist_h) * si - 3.0 * bulge], 1)
        front[7, 0] -= 4.0 * bulge  # the pinky side of the palm is fleshy
        back[7, 0] -= 4.0 * bulge
        ring = np.concatenate([front, back[::-1]])
        ids = np.full(PALM_SIDES, -1)
        keep = [k for k in range(PALM_SIDES) if (ri, k) not in hole]
        ids[keep] = b.add(ring[keep], {0: 1.0}, -1, ring.mean(0), np.zeros(3), np.array([0.0, 1.0, 0.0]))
        palm_ids.append(ids)
    palm_ids = np.array(palm_ids)
    h0 = THUMB_HOLE_RING
    skip = {(r, k) for r in (h0 - 1, h0, h0 + 1) for k in (15, 0)}  # quads b0-f0 and f0-f1
    for r in range(PALM_RINGS - 1):
        for k in range(PALM_SIDES):
            if (r, k) not in skip:
                k1 = (k + 1) % PALM_SIDES
                b.quad(palm_ids[r, k], palm_ids[r, k1], palm_ids[r + 1, k1], palm_ids[r + 1, k])
    top = palm_ids[-1]  # f0..f7 = top[0..7], b_c = top[15 - c]
    ih = {20: palm_ids[0]}
    mano_j = {0: palm_ids[1]}
    for k in range(3):  # webs between neighbouring fingers
        b.quad(top[2 * k + 1], top[2 * k + 2], top[15 - 2 * k - 2], top[15 - 2 * k - 1])
    # ---- fingers: the loop (f2k, f2k+1, b2k+1, b2k) on the palm's top ring -> 8-vertex rings
    ang = np.radians(45.0 + 45.0 * np.arange(FINGER_SIDES))
    for k, f in enumerate((1, 2, 3, 4)):
        slot = MANO_FINGERS.index(f)
        loop = [top[2 * k], top[2 * k + 1], top[15 - 2 * k - 1], top[15 - 2 * k]]
        # loop angles 45, 135, 225, 315 degrees: ring vertex 2i sits above loop vertex i.
        centre, fr = joints[4 * f + 3], FRAMES[f]
        r0 = radius[f, 0] * 1.05
        p = _ring(centre, fr, r0, ang)
        ring = b.add(p, {0: 0.5, 1 + 3 * slot: 0.5}, f, centre, centre, fr[:, 1])
        for i in range(4):
            q0, q1 = loop[i], loop[(i + 1) % 4]
            r_a, r_b, r_c = ring[2 * i], ring[2 * i + 1], ring[(2 * i + 2) % FINGER_SIDES]
            b.faces += [(q0, r_a, r_b), (q0, r_b, q1), (q1, r_b, r_c)]
        reg = _tube(b, joints, f, slot, ring, p, ang, radius[f])
        ih.update(reg)
        mano_j.update({1 + 3 * slot: reg[4 * f + 3], 2 + 3 * slot: reg[4 * f + 2], 3 + 3 * slot: reg[4 * f + 1]})
    # ---- thumb: the 10-vertex hole on the palm -> 10-vertex rings
    pr = palm_ids
    loop = [pr[h0 - 1, 15], pr[h0 - 1, 0], pr[h0 - 1, 1], pr[h0, 1], pr[h0 + 1, 1],
            pr[h0 + 2, 1], pr[h0 + 2, 0], pr[h0 + 2, 15], pr[h0 + 1, 15], pr[h0, 15]]
    pos = np.concatenate(b.pos)
    fr, cmc = FRAMES[0], joints[3]
    # Ring vertex k above hole vertex k: the uniform ring (start angle, direction) nearest the hole.
    start = np.linspace(0, 2 * np.pi, 720, endpoint=False)[:, None, None]
    step = np.array([1.0, -1.0])[None, :, None] * 2 * np.pi * np.arange(THUMB_SIDES) / THUMB_SIDES
    cand = (start + step).reshape(-1, THUMB_SIDES)  # (1440, 10) angles
    pts = cmc + radius[0, 0] * (np.cos(cand)[..., None] * fr[:, 0] + np.sin(cand)[..., None] * fr[:, 2])
    uniform = cand[np.argmin(((pts - pos[loop]) ** 2).sum((1, 2)))]
    slot = MANO_FINGERS.index(0)
    p = _ring(cmc, fr, radius[0, 0], uniform)  # uniform angles: its centroid is the joint
    ring = b.add(p, {0: 0.5, 1 + 3 * slot: 0.5}, 0, cmc, cmc, fr[:, 1])
    b.strip(np.array(loop), ring)
    reg = _tube(b, joints, 0, slot, ring, p, uniform, radius[0])
    ih.update(reg)
    mano_j.update({1 + 3 * slot: reg[3], 2 + 3 * slot: reg[2], 3 + 3 * slot: reg[1]})
    return _finish(b, ih, mano_j)


def _orient(faces, pos):
    """Make the winding consistent (breadth-first over shared edges), then outward (positive signed
    volume once the wrist opening is closed by a fan to its centroid)."""
    faces = faces.copy()
    edge_faces = {}
    for i, (a, b_, c) in enumerate(faces):
        for e in ((a, b_), (b_, c), (c, a)):
            edge_faces.setdefault(frozenset(e), []).append(i)
    done = np.zeros(len(faces), bool)
    done[0] = True
    queue = [0]
    while queue:
        i = queue.pop()
        a, b_, c = faces[i]
        for u, v in ((a, b_), (b_, c), (c, a)):
            for j in edge_faces[frozenset((u, v))]:
                if j == i or done[j]:
                    continue
                fa = list(faces[j])
                directed = [(fa[0], fa[1]), (fa[1], fa[2]), (fa[2], fa[0])]
                if (u, v) in directed:  # same direction as ours: flip the neighbour
                    faces[j] = faces[j][[0, 2, 1]]
                done[j] = True
                queue.append(j)
    assert done.all(), "the mesh is not connected"
    boundary = [e for e, fs in edge_faces.items() if len(fs) == 1]
    ring = np.unique([v for e in boundary for v in e])
    centre = pos[ring].mean(0)
    vol = np.einsum("ij,ij->i", pos[faces[:, 0]], np.cross(pos[faces[:, 1]], pos[faces[:, 2]])).sum()
    for e in boundary:  # the fan closing the wrist, oriented like the faces it borders
        u, v = tuple(e)
        fa = faces[edge_faces[e][0]]
        directed = [(fa[0], fa[1]), (fa[1], fa[2]), (fa[2], fa[0])]
        u, v = (v, u) if (u, v) in directed else (u, v)
        vol += pos[u] @ np.cross(pos[v], centre)
    return faces if vol > 0 else faces[:, [0, 2, 1]]


def _finish(b, ih, mano_j):
    pos = np.concatenate(b.pos)
    n = len(pos)
    faces = _orient(np.array(b.faces, dtype=np.int64), pos)
    assert (n, len(faces)) == (N_VERTS, N_FACES), (n, len(faces))
    weights = np.zeros((n, 16))
    for v, w in enumerate(b.weights):
        for j, x in w.items():
            weights[v, j] = x
    j_reg, ih_reg = np.zeros((16, n)), np.zeros((21, n))
    for j, ids in mano_j.items():
        j_reg[j, ids] = 1.0 / len(ids)
    for j, ids in ih.items():
        ih_reg[j, ids] = 1.0 / len(ids)
    shapedirs = _shapedirs(b, pos)
    posedirs = _posedirs(b, pos, mano_j)
    mean, comps = _pose_pca()
    m = 1e-3
    v_template = pos * m
    return {"v_template": v_template, "f": faces.astype(np.uint32), "shapedirs": shapedirs * m,
            "posedirs": posedirs * m, "J_regressor": j_reg, "weights": weights,
            "kintree_table": np.stack([np.where(PARENTS < 0, 2 ** 32 - 1, PARENTS), np.arange(16)]).astype(np.int64),
            "hands_components": comps, "hands_mean": mean, "J": j_reg @ v_template,
            "ih_regressor": ih_reg}


def _shapedirs(b, pos):
    n = len(pos)
    part = np.array(b.part)
    centre = np.array(b.centre)
    base = np.array(b.base)
    axis = np.array(b.axis)
    finger = part >= 0
    axial = np.einsum("ij,ij->i", pos - base, axis)[:, None] * axis
    axial[~finger] = 0
    anchor = np.where(finger[:, None], base, pos)  # palm: the vertex itself; finger: its base joint
    sd = np.zeros((n, 3, 10))
    sd[:, :, 0] = SHAPE_SIZE * pos
    sd[:, :, 1] = 0.03 * axial
    sd[:, 0, 2] = 0.04 * anchor[:, 0]
    radial = pos - centre
    radial[finger] -= np.einsum("ij,ij->i", radial[finger], axis[finger])[:, None] * axis[finger]
    radial[~finger, :2] = 0  # the palm thickens along z only
    sd[:, :, 3] = 0.05 * radial
    sd[:, 1, 4] = 0.03 * anchor[:, 1]
    for k, f in enumerate((0, 1, 2, 3, 4)):
        sel = part == f
        sd[sel, :, 5 + k] = 0.04 * axial[sel]
    return sd


def _posedirs(b, pos, mano_j):
    """Knuckle bulge: for each of the 15 joints, the vertices of its ring move outwards on the back
    of the hand by BULGE_MM * (1 - cos angle) (minus the ring's mean displacement, so the ring's
    centroid - the joint - stays put); linear in the pose feature (R - I) through its trace."""
    pd = np.zeros((len(pos), 3, 135))
    for j in range(1, 16):
        ids = mano_j[j]
        f = MANO_FINGERS[(j - 1) // 3]
        back = -FRAMES[f][:, 2]
        centre = pos[ids].mean(0)
        u = pos[ids] - centre
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        d = np.maximum(u @ back, 0)[:, None] * u
        d -= d.mean(0)
        # 1 - cos(angle) = -(trace(R) - 3) / 2 = -sum_i (R_ii - 1) / 2
        for i in (0, 4, 8):
            pd[ids, :, 9 * (j - 1) + i] = -0.5 * BULGE_MM * d
    return pd


MIRROR_AA = np.array([1.0, -1.0, -1.0])  # axis-angle of the mirror image (x -> -x) of a rotation


def _pose_pca():
    """hands_mean and hands_components: mean and principal axes of poses sampled around the gestures."""
    rng = np.random.default_rng(20240516)
    keys = np.radians(np.array(list(hm.GESTURES.values()), dtype=np.float64))  # (G, 5, 4)
    samples = keys[rng.integers(len(keys), size=1024)] + rng.normal(0, np.radians(8), (1024, 5, 4))
    poses = hm.finger_pose(samples)
    mean = poses.mean(0)
    _, _, vt = np.linalg.svd(poses - mean, full_matrices=False)
    vt *= np.sign(vt[np.arange(45), np.abs(vt).argmax(1)])[:, None]  # a fixed sign per axis
    return np.round(mean, 6), np.round(vt, 6)


def mirror_left(right: dict) -> dict:
    """MANO_LEFT from the right model: x -> -x, faces reversed, joint rotations mirrored - and
    shapedirs[:, 0, :] left as the right model's, the way the official left file has it."""
    m = np.array([-1.0, 1.0, 1.0])
    s = np.outer(m, m).reshape(9)  # (R_L - I) = M (R_R - I) M entrywise
    posedirs = right["posedirs"] * m[None, :, None] * np.tile(s, 15)[None, None, :]
    shapedirs = right["shapedirs"] * m[None, :, None]
    shapedirs[:, 0, :] = right["shapedirs"][:, 0, :]  # the official left file's known bug
    mean = (right["hands_mean"].reshape(15, 3) * MIRROR_AA).reshape(45)
    comps = (right["hands_components"].reshape(45, 15, 3) * MIRROR_AA).reshape(45, 45)
    left = dict(right)
    left.update(v_template=right["v_template"] * m, f=right["f"][:, [0, 2, 1]].copy(), shapedirs=shapedirs,
                posedirs=posedirs, hands_mean=mean, hands_components=comps, J=right["J"] * m)
    return left
