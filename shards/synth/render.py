"""Ray-cast renderer of the synthetic hands (used by shards.synth).

Each hand is a set of solids built from its 21 camera-space joints alone: one capsule per finger
bone (its end spheres centred on the joints), metacarpal capsules, a flattened palm ellipsoid, a
thenar capsule and a forearm capsule ending at the wrist (pointing at the hand's elbow where the
generator gives one, else straight back along the hand). Every primitive is ray-cast vectorised
over its own screen bounding box into a z-buffer (depth = camera Z in mm, so occlusion within and
between hands is exact). Shading: Lambert + specular from a point light near the camera with
inverse-square fall-off (a natural depth cue); the palm side lighter and pinker than the back, as
real palms are (least pigmented skin), and nails on the back of the fingertips. Pixel centres sit at
integer coordinates (u = X/Z fx + cx).
"""
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .handmodel import RADIUS

# Joint indices within one hand (InterHand order).
WRIST, MIDDLE_BASE, INDEX_BASE, PINKY_BASE = 20, 11, 7, 19
SKIN_TONES = np.array([[250, 220, 195], [240, 195, 165], [225, 175, 135], [200, 145, 105],
                       [160, 105, 70], [105, 70, 50]], dtype=np.float32) / 255.0


@dataclass(frozen=True)
class Look:
    """Everything about one picture except the geometry."""
    skin: tuple  # ((r, g, b), (r, g, b)) albedo in [0, 1] of the right and left hand
    light: tuple  # point light position, camera space mm
    ambient: float
    background_seed: int  # the static background of a camera
    noise_seed: int  # per-picture sensor noise
    noise_std: float  # in 0-255 units


def random_look(rng: np.random.Generator, skin_base=None, background_seed=None) -> Look:
    """Random skin tone (or a given subject tone with a small per-hand variation), light, noise."""
    if skin_base is None:
        skin_base = random_skin(rng)
    skins = tuple(tuple(np.clip(np.asarray(skin_base) * rng.uniform(0.93, 1.07, 3), 0, 1).tolist())
                  for _ in range(2))
    light = (rng.uniform(-600, 600), rng.uniform(-700, 300), rng.uniform(-300, 200))
    bg = int(rng.integers(2**31)) if background_seed is None else int(background_seed)
    return Look(skins, light, float(rng.uniform(0.18, 0.35)), bg, int(rng.integers(2**31)),
                float(rng.uniform(1.0, 3.5)))


def random_skin(rng: np.random.Generator) -> np.ndarray:
    """A skin albedo interpolated between two neighbouring tones of SKIN_TONES."""
    i = rng.uniform(0, len(SKIN_TONES) - 1)
    k = int(i)
    return SKIN_TONES[k] * (1 - (i - k)) + SKIN_TONES[min(k + 1, len(SKIN_TONES) - 1)] * (i - k)


def _unit(v):
    return v / np.sqrt(np.einsum("...i,...i->...", v, v))[..., None]


def _rowdot(rows, vec):
    """(M, 3) rows dotted with one 3-vector (plain arithmetic: small matmuls call a threaded BLAS)."""
    return rows[:, 0] * vec[0] + rows[:, 1] * vec[1] + rows[:, 2] * vec[2]


def hand_solids(joints: np.ndarray, side: int, elbow=None):
    """joints (21, 3) camera mm, side +1 right / -1 left, elbow (3,) camera mm or None -> (capsules,
    ellipsoids, palm_normal).

    capsules: (pa (N, 3), pb (N, 3), radius (N,), is_distal (N,) bool);
    ellipsoids: list of (centre (3,), axes (3, 3) columns = semi-axis vectors)."""
    j = np.asarray(joints, dtype=np.float64)
    wrist = j[WRIST]
    k = np.linalg.norm(j[MIDDLE_BASE] - wrist) / 88.0  # subject scale
    y = _unit(j[MIDDLE_BASE] - wrist)
    xt = j[INDEX_BASE] - j[PINKY_BASE]
    x = _unit(xt - (xt @ y) * y)
    palm_n = side * np.cross(x, y)  # points out of the palm
    pa, pb, rad, distal = [], [], [], []
    for f in range(5):
        chain = [4 * f + 3, 4 * f + 2, 4 * f + 1, 4 * f]  # base .. tip
        for b in range(3):
            pa.append(j[chain[b]]), pb.append(j[chain[b + 1]])
            rad.append(RADIUS[f, b] * k), distal.append(b == 2)
        if f > 0:  # metacarpal
            pa.append(wrist + 0.3 * (j[chain[0]] - wrist)), pb.append(j[chain[0]])
            rad.append(RADIUS[f, 0] * 1.05 * k), distal.append(False)
    # thenar: from the wrist to the thumb's MCP (thumb2)
    pa.append(wrist + 0.2 * (j[3] - wrist) + 6 * k * palm_n), pb.append(j[2])
    rad.append(12.0 * k), distal.append(False)
    # forearm, ending at the wrist (in pieces: a long diagonal capsule has a wasteful screen box)
    arm = -y * 420.0 * k - palm_n * 10.0 * k if elbow is None else np.asarray(elbow, np.float64) - wrist
    for a, b in ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0)):
        pa.append(wrist + a * arm), pb.append(wrist + b * arm)
        rad.append(24.0 * k), distal.append(False)
    caps = (np.array(pa), np.array(pb), np.array(rad), np.array(distal))
    palm_c = wrist + 0.5 * (j[MIDDLE_BASE] - wrist) + 1.5 * k * palm_n
    ellipsoids = [(palm_c, np.stack([x * 40 * k, y * 50 * k, palm_n * 15 * k], axis=1))]
    return caps, ellipsoids, palm_n


def _rays(x0, x1, y0, y1, focal, princpt):
    """Rays through the pixel centres of a box, as separable components: direction
    (u, v, 1) with u (1, w) and v (h, 1); the ray parameter t is then the camera depth Z."""
    u = (np.arange(x0, x1, dtype=np.float64) - princpt[0]) / focal[0]
    v = (np.arange(y0, y1, dtype=np.float64) - princpt[1]) / focal[1]
    return u[None, :], v[:, None]


def _dot(rays, vec):
    """Ray directions (u, v, 1) dotted with a 3-vector, (h, w). Plain arithmetic, no BLAS."""
    return rays[0] * vec[0] + rays[1] * vec[1] + vec[2]


def _sphere_t(rays, rdrd, c, r):
    b = -_dot(rays, c)
    h = b * b - rdrd * (c @ c - r * r)
    return np.where(h >= 0, (-b - np.sqrt(np.maximum(h, 0))) / rdrd, np.inf)


def capsule_depth(rays, pa, pb, r):
    """First hit (depth Z) of the rays from the camera centre with the capsule of radius r around
    the segment pa-pb (camera mm); inf where missed."""
    ba, oa = pb - pa, -pa
    baba, baoa, oaoa = ba @ ba, ba @ oa, oa @ oa
    bard, rdoa = _dot(rays, ba), _dot(rays, oa)
    rdrd = rays[0] ** 2 + rays[1] ** 2 + 1.0
    a = np.maximum(baba * rdrd - bard * bard, 1e-9)
    b = baba * rdoa - baoa * bard
    h = b * b - a * (baba * oaoa - baoa * baoa - r * r * baba)
    t = (-b - np.sqrt(np.maximum(h, 0))) / a
    y = baoa + t * bard
    t = np.where((h >= 0) & (y > 0) & (y < baba), t, np.inf)
    return np.minimum(t, np.minimum(_sphere_t(rays, rdrd, pa, r), _sphere_t(rays, rdrd, pb, r)))


def ellipsoid_depth(rays, centre, axes):
    """First hit (depth Z) of the rays with the ellipsoid {centre + axes @ s : |s| <= 1}."""
    inv = np.linalg.inv(axes)
    o = inv @ -centre
    d = [_dot(rays, inv[i]) for i in range(3)]
    a = d[0] ** 2 + d[1] ** 2 + d[2] ** 2
    b = d[0] * o[0] + d[1] * o[1] + d[2] * o[2]
    h = b * b - a * (o @ o - 1.0)
    return np.where(h >= 0, (-b - np.sqrt(np.maximum(h, 0))) / a, np.inf)


def _screen_box(points, radius, focal, princpt, width, height):
    z = points[:, 2]
    if np.any(z <= radius):
        return None  # touches the camera plane: not drawn
    u = points[:, 0] / z * focal[0] + princpt[0]
    v = points[:, 1] / z * focal[1] + princpt[1]
    m = 1.15 * max(focal) * radius / z.min() + 2
    x0, x1 = int(max(np.floor(u.min() - m), 0)), int(min(np.ceil(u.max() + m) + 1, width))
    y0, y1 = int(max(np.floor(v.min() - m), 0)), int(min(np.ceil(v.max() + m) + 1, height))
    return (x0, x1, y0, y1) if x0 < x1 and y0 < y1 else None


class Raster:
    """Z-buffer of one picture: depth (H, W) camera Z in mm (inf = background), prim (H, W) the
    index of the visible primitive (-1 = background), and the primitive table."""

    def __init__(self, width, height):
        self.depth = np.full((height, width), np.inf, dtype=np.float32)
        self.prim = np.full((height, width), -1, dtype=np.int16)
        self.prims = []  # (kind, hand, params...) per primitive

    @property
    def hand(self) -> np.ndarray:
        """(H, W) int8: -1 background, 0 right hand, 1 left hand."""
        table = np.array([-1] + [p[1] for p in self.prims], dtype=np.int8)
        return table[self.prim.astype(np.int64) + 1]

    def write(self, box, t, prim):
        x0, x1, y0, y1 = box
        d, q = self.depth[y0:y1, x0:x1], self.prim[y0:y1, x0:x1]
        closer = t < d
        np.copyto(d, t, where=closer, casting="unsafe")
        np.copyto(q, prim, where=closer, casting="unsafe")


def rasterize(joints_cam, present, focal, princpt, width, height, elbows=None) -> Raster:
    """Z-buffer the hands. joints_cam (42, 3) mm, present (2,) bools [right, left], elbows (2, 3) mm
    or None."""
    focal = np.asarray(focal, dtype=np.float64)
    princpt = np.asarray(princpt, dtype=np.float64)
    ras = Raster(width, height)
    for h, side in ((0, 1), (1, -1)):
        if not present[h]:
            continue
        (pa, pb, rad, distal), ells, palm_n = hand_solids(np.asarray(joints_cam)[21 * h: 21 * h + 21], side,
                                                          None if elbows is None else elbows[h])
        for i in range(len(rad)):
            box = _screen_box(np.stack([pa[i], pb[i]]), rad[i], focal, princpt, width, height)
            if box is not None:
                rays = _rays(*box, focal, princpt)
                ras.write(box, capsule_depth(rays, pa[i], pb[i], rad[i]), len(ras.prims))
            ras.prims.append(("capsule", h, palm_n, bool(distal[i]), pa[i], pb[i], rad[i]))
        for centre, axes in ells:
            corners = centre + np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)]) @ axes.T
            box = _screen_box(corners, 0.0, focal, princpt, width, height)
            if box is not None:
                rays = _rays(*box, focal, princpt)
                ras.write(box, ellipsoid_depth(rays, centre, axes), len(ras.prims))
            ras.prims.append(("ellipsoid", h, palm_n, False, centre, axes, None))
    return ras


def surface(ras: Raster, focal, princpt, skins):
    """Deferred surface attributes of the visible hand pixels: (vs, us) indices, camera-space points
    (M, 3), unit normals (M, 3) and albedo (M, 3)."""
    vs, us = np.nonzero(ras.prim >= 0)
    z = ras.depth[vs, us].astype(np.float64)
    p = np.stack([(us - princpt[0]) / focal[0] * z, (vs - princpt[1]) / focal[1] * z, z], -1)
    ids = ras.prim[vs, us].astype(np.int64)
    kind = np.array([q[0] == "capsule" for q in ras.prims])
    hand = np.array([q[1] for q in ras.prims])[ids]
    palm_n = np.array([q[2] for q in ras.prims])[ids]
    distal = np.array([q[3] for q in ras.prims])[ids]
    pa = np.array([q[4] for q in ras.prims])[ids]
    ba = np.array([q[5] - q[4] if q[0] == "capsule" else np.ones(3) for q in ras.prims])[ids]
    axial = np.clip(np.einsum("ij,ij->i", p - pa, ba) / np.einsum("ij,ij->i", ba, ba), 0, 1)
    normal = p - pa - axial[:, None] * ba  # capsules: from the axis to the point
    for i in np.flatnonzero(~kind):  # ellipsoids: the gradient of |axes^-1 (p - centre)|^2
        sel = ids == i
        inv = np.linalg.inv(ras.prims[i][5])
        m = inv.T @ inv
        q = p[sel] - ras.prims[i][4]
        normal[sel] = sum(q[:, k:k + 1] * m[k] for k in range(3))
    normal = _unit(normal)
    facing = np.einsum("ij,ij->i", normal, palm_n)  # +1 palm side, -1 back
    nail = distal & (axial > 0.3) & (facing < -0.4)
    skin = np.asarray(skins, dtype=np.float64)[hand]
    palm = np.clip((facing + 0.2) / 0.7, 0, 1)[:, None]  # the palm's skin wraps a little round the sides
    pale = np.clip((skin + (1.0 - skin) * 0.45) * np.array([1.04, 0.95, 0.94]), 0, 1)
    albedo = skin * 0.95 * (1 - palm) + pale * palm
    albedo[nail] = 0.35 * skin[nail] + 0.65 * np.array([0.98, 0.88, 0.86])
    return (vs, us), p, normal, albedo


def _upsample(low, n_out, axis):
    """Linear interpolation of `low` to n_out samples along `axis` (pixel-centre aligned)."""
    n_in = low.shape[axis]
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    i0 = np.clip(np.floor(pos).astype(int), 0, n_in - 1)
    w = np.clip(pos - i0, 0, 1).astype(np.float32)
    shape = [1] * low.ndim
    shape[axis] = n_out
    w = w.reshape(shape)
    return np.take(low, i0, axis) * (1 - w) + np.take(low, np.minimum(i0 + 1, n_in - 1), axis) * w


@lru_cache(maxsize=4)
def _noise_texture(height, width):
    """A fixed Gaussian noise image of twice the picture size; each picture takes a random crop."""
    return np.random.default_rng(12345).standard_normal((2 * height, 2 * width, 3), dtype=np.float32)


@lru_cache(maxsize=64)
def background(width, height, seed) -> np.ndarray:
    """A static backdrop (H, W, 3) float32 in [0, 1] (read-only, cached: a camera keeps its
    backdrop): a two-colour gradient plus soft blobs, drawn at 1/16 resolution and upsampled."""
    rng = np.random.default_rng(seed)
    h, w = max(height // 16, 2), max(width // 16, 2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / h, xx / w
    c0, c1 = rng.uniform(0.02, 0.7, 3), rng.uniform(0.02, 0.7, 3)
    ang = rng.uniform(0, 2 * np.pi)
    g = np.clip((np.cos(ang) * (xx - 0.5) + np.sin(ang) * (yy - 0.5)) + 0.5, 0, 1)[..., None]
    low = c0 * (1 - g) + c1 * g
    for _ in range(rng.integers(3, 9)):
        cx, cy, s = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.04, 0.3)
        a = np.exp(-((xx - cx) ** 2 + ((yy - cy) * h / w) ** 2) / (2 * s * s))[..., None]
        low = low * (1 - 0.8 * a) + rng.uniform(0, 0.9, 3) * 0.8 * a
    out = _upsample(_upsample(low.astype(np.float32), height, 0), width, 1)
    out.flags.writeable = False
    return out


def shade(ras: Raster, focal, princpt, look: Look) -> np.ndarray:
    """Composite the z-buffer over the background -> (H, W, 3) uint8 RGB."""
    height, width = ras.depth.shape
    img = background(width, height, look.background_seed).copy()
    if (ras.prim >= 0).any():
        (vs, us), p, n, albedo = surface(ras, focal, princpt, look.skin)
        to_light = np.asarray(look.light) - p
        dist = np.linalg.norm(to_light, axis=-1, keepdims=True)
        light = to_light / dist
        diff = np.clip(np.einsum("ij,ij->i", n, light), 0, 1)[:, None]
        fall = np.minimum((np.median(dist) / dist) ** 2, 1.5)
        half = _unit(light + _unit(-p))
        spec = 0.12 * np.clip(np.einsum("ij,ij->i", n, half), 0, 1)[:, None] ** 24
        img[vs, us] = albedo * (look.ambient + 0.85 * diff * fall) + spec * fall
        # a slight optical blur ([1, 2, 1] / 4 separable) around the hands
        y0, y1 = max(vs.min() - 2, 0), min(vs.max() + 3, height)
        x0, x1 = max(us.min() - 2, 0), min(us.max() + 3, width)
        sub = img[y0:y1, x0:x1]
        sub[1:-1] = 0.5 * sub[1:-1] + 0.25 * (sub[:-2] + sub[2:])
        sub[:, 1:-1] = 0.5 * sub[:, 1:-1] + 0.25 * (sub[:, :-2] + sub[:, 2:])
    rng = np.random.default_rng(look.noise_seed)
    dy, dx = int(rng.integers(height)), int(rng.integers(width))
    noise = _noise_texture(height, width)[dy:dy + height, dx:dx + width]
    img *= 255.0
    img += 0.5
    img += look.noise_std * noise
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


def render(joints_cam, present, focal, princpt, width, height, look: Look, elbows=None):
    """The picture of the hands: (H, W, 3) uint8 RGB and its Raster (z-buffer)."""
    focal = np.asarray(focal, dtype=np.float64)
    princpt = np.asarray(princpt, dtype=np.float64)
    ras = rasterize(joints_cam, present, focal, princpt, width, height, elbows)
    return shade(ras, focal, princpt, look), ras
