"""The DALI graph: read shard samples, decode, draw the augmentation, warp one patch per sample.

One graph for both devices: `device_id=None` decodes on the CPU, an integer decodes with nvJPEG
(`mixed`) and warps on that GPU. The random augmentation (SPEC 3.2) is drawn here with `fn.random.*`
and returned per sample together with the image -> patch affine, so the batched label transform
(pipeline/targets.py) uses exactly the matrix the image was warped with.

Only the region of interest is decoded: the bounding box of the pixels the patch samples (its
rotated, scaled square mapped back into the image, plus a margin for the bilinear taps), clamped to
the image. Every sample point outside that box lies outside the image, so the zero border is kept.

warp='dali' warps in the graph (fn.warp_affine, the GPU path); warp='host' returns the decoded ROI
and its origin, and the loader warps it with OpenCV (the CPU path: DALI's CPU warp is ~5x slower
than cv2.warpAffine, and cv2 is the original's own warp, float32 in, float32 out).
"""
from __future__ import annotations

import math

from nvidia.dali import fn, types
from nvidia.dali import math as dmath
from nvidia.dali.pipeline import Pipeline

from shards.labels import OFFSETS

# The per-sample `aug` output: translation (x, y) in bbox sizes, scale, rotation (degrees),
# flip (0/1), colour scale (r, g, b).
AUG_FIELDS = ("tx", "ty", "scale", "rot", "flip", "color_r", "color_g", "color_b")
IDENTITY_AUG = (0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0)
OUTPUTS = ("images", "lbl", "affine", "aug", "ids", "ids_host", "has_rootnet", "roi_origin")
WARPS = ("dali", "host")
ROI_MARGIN = 2  # pixels around the sampled region: the bilinear taps and float rounding

# The original's augmentation constants (SPEC 3.2).
TRANS_FACTOR = 0.15
SCALE_FACTOR = 0.25
ROT_FACTOR = 45.0
ROT_PROB = 0.6
FLIP_PROB = 0.5
COLOR_FACTOR = 0.2


def aug_vector(trans=(0.0, 0.0), scale=1.0, rot=0.0, flip=False, color=(1.0, 1.0, 1.0)) -> tuple:
    """Forced augmentation parameters in AUG_FIELDS order (for tests and previews)."""
    vec = (float(trans[0]), float(trans[1]), float(scale), float(rot), float(bool(flip)), *map(float, color))
    if len(vec) != len(AUG_FIELDS):
        raise ValueError(f"augmentation needs trans (2), scale, rot, flip, color (3); got {vec}")
    if vec[2] <= 0:
        raise ValueError(f"augmentation scale must be > 0, got {vec[2]}")
    return vec


def _random_aug():
    """SPEC 3.2, drawn per sample: the original's get_aug_config."""
    trans = fn.random.uniform(range=[-TRANS_FACTOR, TRANS_FACTOR], shape=[2])
    scale = dmath.clamp(fn.random.normal(), -1.0, 1.0) * SCALE_FACTOR + 1.0
    do_rot = fn.cast(fn.random.coin_flip(probability=ROT_PROB), dtype=types.FLOAT)
    rot = dmath.clamp(fn.random.normal(), -2.0, 2.0) * ROT_FACTOR * do_rot
    flip = fn.cast(fn.random.coin_flip(probability=FLIP_PROB), dtype=types.FLOAT)
    color = fn.random.uniform(range=[1.0 - COLOR_FACTOR, 1.0 + COLOR_FACTOR], shape=[3])
    middle = fn.stack(fn.cast(scale, dtype=types.FLOAT), fn.cast(rot, dtype=types.FLOAT), flip)
    return fn.cat(trans, middle, color)


def _field(lbl, name, k=0):
    start = OFFSETS[name][0]
    return lbl[start + k]


def patch_affine_nodes(lbl, aug, input_size: int, use_rootnet: bool):
    """Image -> patch affine (2x3, pixel centres at integers, the OpenCV convention) as DALI scalars.

    The flip is folded in: mirroring the image (x -> width - 1 - x) and then warping around the
    mirrored centre equals warping the unmirrored image with M @ F, F the mirror; joints go through
    the same matrix. Returns (a00, a01, t0, a10, a11, t1)."""
    box = "rootnet_bbox" if use_rootnet else "bbox"
    bx, by, bw, bh = (_field(lbl, box, k) for k in range(4))
    img_w = _field(lbl, "img_size", 0)
    tx, ty, s, rot, f = (aug[k] for k in range(5))
    size = float(input_size)
    # Shifted bbox centre (original: bbox x += w * tx, y += h * ty; centre = x + w / 2).
    cx = bx + bw * tx + bw * 0.5
    cy = by + bh * ty + bh * 0.5
    cx = cx + f * (img_w - 1.0 - 2.0 * cx)  # mirrored centre when flipped
    r = rot * (math.pi / 180.0)
    cos, sin = dmath.cos(r), dmath.sin(r)
    kx = size / (bw * s)
    ky = size / (bh * s)
    a00, a01 = kx * cos, kx * sin
    a10, a11 = -ky * sin, ky * cos
    t0 = size * 0.5 - (a00 * cx + a01 * cy)
    t1 = size * 0.5 - (a10 * cx + a11 * cy)
    # M @ F with F(x, y) = (img_w - 1 - x, y).
    t0 = t0 + f * (img_w - 1.0) * a00
    t1 = t1 + f * (img_w - 1.0) * a10
    sx = 1.0 - 2.0 * f
    return a00 * sx, a01, t0, a10 * sx, a11, t1


def roi_nodes(lbl, aug, input_size: int, use_rootnet: bool):
    """The decoded region [x0, y0, x1, y1) (ints) holding every pixel the patch samples.

    The patch square of side S around its centre maps back to a rectangle of sides (bw, bh) * scale
    rotated by rot around the shifted bbox centre; a flip mirrors the region about the image centre
    and mirrors it back, so in the stored image it is the same. Its bounding box has half-extents
    ex = (|cos| bw + |sin| bh) s / 2, ey = (|sin| bw + |cos| bh) s / 2."""
    box = "rootnet_bbox" if use_rootnet else "bbox"
    bx, by, bw, bh = (_field(lbl, box, k) for k in range(4))
    img_w, img_h = _field(lbl, "img_size", 0), _field(lbl, "img_size", 1)
    tx, ty, s, rot = (aug[k] for k in range(4))
    cx = bx + bw * tx + bw * 0.5
    cy = by + bh * ty + bh * 0.5
    r = rot * (math.pi / 180.0)
    c, sn = dmath.abs(dmath.cos(r)), dmath.abs(dmath.sin(r))
    ex = (c * bw + sn * bh) * (s * 0.5) + ROI_MARGIN
    ey = (sn * bw + c * bh) * (s * 0.5) + ROI_MARGIN
    x0 = dmath.clamp(dmath.floor(cx - ex), 0.0, img_w - 1.0)
    y0 = dmath.clamp(dmath.floor(cy - ey), 0.0, img_h - 1.0)
    x1 = dmath.clamp(dmath.floor(cx + ex) + 2.0, x0 + 1.0, img_w)
    y1 = dmath.clamp(dmath.floor(cy + ey) + 2.0, y0 + 1.0, img_h)
    return x0, y0, x1, y1


def shift_origin(coeffs, x0, y0):
    """The affine of image pixels for the ROI's pixels (p_roi = p_img - origin): t += A @ origin.
    The same in either pixel-centre convention, the shift being whole pixels."""
    a00, a01, t0, a10, a11, t1 = coeffs
    return a00, a01, t0 + a00 * x0 + a01 * y0, a10, a11, t1 + a10 * x0 + a11 * y0


def to_dali_convention(a00, a01, t0, a10, a11, t1):
    """DALI's warp puts pixel centres at +0.5 ([0, 0] is the corner of the first pixel), OpenCV at
    integers. Conjugate by the half-pixel shift: M'(p) = M(p - 0.5) + 0.5."""
    return a00, a01, t0 + 0.5 - 0.5 * (a00 + a01), a10, a11, t1 + 0.5 - 0.5 * (a10 + a11)


def _stack6(vals):
    return fn.reshape(fn.stack(*[fn.cast(v, dtype=types.FLOAT) for v in vals]), shape=[2, 3])


def build_pipeline(tars, idxs, *, batch_size: int, train: bool, device_id: int | None, num_threads: int,
                   seed: int, shuffle_seed: int, shard_id: int, num_shards: int, input_size: int = 256,
                   use_rootnet: bool = False, hw_decoder_load: float = 0.65, prefetch: int = 2,
                   initial_fill: int = 4096, force_aug=None, half_pixel: bool = True,
                   checkpoint: str | None = None, warp: str = "dali") -> Pipeline:
    """Build (not run) the pipeline over the given shard tars and their DALI index files.

    train: shuffle (buffer + per-epoch shard order), no padding, random augmentation.
    eval: stored order, this rank's part only, last batch padded by repeating the last sample.
    force_aug: an AUG_FIELDS vector applied to every sample instead of the random draw.
    half_pixel=False skips the pixel-centre compensation (only to prove it matters in a test).
    warp: 'dali' (images are the warped patches) or 'host' (CPU only: images are the decoded ROIs,
    roi_origin their top-left pixel in the image, for the loader's OpenCV warp).
    """
    if warp not in WARPS:
        raise ValueError(f"warp must be one of {WARPS}, got {warp!r}")
    if use_rootnet and train:
        raise ValueError("use_rootnet is for evaluation only (train=False)")
    gpu = device_id is not None
    pipe = Pipeline(batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=seed,
                    prefetch_queue_depth=prefetch, enable_checkpointing=True, checkpoint=checkpoint)
    with pipe:
        jpg, lbl, ids = fn.readers.webdataset(
            paths=list(tars), index_paths=list(idxs), ext=["jpg", "lbl", "ids"],
            dtypes=[types.UINT8, types.FLOAT, types.INT64], missing_component_behavior="error",
            shard_id=shard_id, num_shards=num_shards, random_shuffle=train, initial_fill=initial_fill,
            pad_last_batch=not train, stick_to_shard=not train, name="reader",
            **({"shuffle_after_epoch": True, "shuffle_after_epoch_seed": shuffle_seed} if train else {}))
        if force_aug is not None:
            vec = [float(v) for v in force_aug]
            if len(vec) != len(AUG_FIELDS):
                raise ValueError(f"force_aug needs {len(AUG_FIELDS)} values {AUG_FIELDS} (see aug_vector), got {vec}")
            aug = fn.constant(fdata=vec, shape=[len(AUG_FIELDS)], dtype=types.FLOAT)
        elif train:
            aug = _random_aug()
        else:
            aug = fn.constant(fdata=list(IDENTITY_AUG), shape=[len(AUG_FIELDS)], dtype=types.FLOAT)
        coeffs = patch_affine_nodes(lbl, aug, input_size, use_rootnet)
        affine = _stack6(coeffs)  # OpenCV convention, for the labels
        x0, y0, x1, y1 = roi_nodes(lbl, aug, input_size, use_rootnet)
        start = fn.cast(fn.stack(x0, y0), dtype=types.INT32)  # "WH" order
        end = fn.cast(fn.stack(x1, y1), dtype=types.INT32)
        # libjpeg-turbo / nvJPEG skip the work outside the ROI.
        image = fn.decoders.image_slice(jpg, start=start, end=end, device="mixed" if gpu else "cpu",
                                        output_type=types.RGB,
                                        **({"hw_decoder_load": hw_decoder_load} if gpu else {}))
        roi_origin = fn.cast(start, dtype=types.FLOAT)
        if warp == "dali":
            roi_coeffs = shift_origin(to_dali_convention(*coeffs) if half_pixel else coeffs, x0, y0)
            # No fill_value: DALI then clamps source coordinates (its fast path, ~2x faster on the
            # CPU); pipeline.targets.finish_images multiplies by the in-image share of the bilinear
            # weights, which gives exactly OpenCV's zero border, and applies the colour scale.
            images = fn.warp_affine(image, matrix=_stack6(roi_coeffs), size=[input_size, input_size],
                                    inverse_map=False, interp_type=types.INTERP_LINEAR, dtype=types.FLOAT)
        elif gpu:
            raise ValueError("warp='host' is the CPU path (device_id=None); on a GPU the graph warps")
        else:
            images = image  # (h, w, 3) uint8 ROI, warped by the loader
        has_rootnet = _field(lbl, "has_rootnet")
        ids_host = ids
        if gpu:  # small per-sample vectors go to the GPU inside DALI: no host sync in the training loop
            lbl, affine, aug, ids = lbl.gpu(), affine.gpu(), aug.gpu(), ids.gpu()
        pipe.set_outputs(images, lbl, affine, aug, ids, ids_host, has_rootnet, roi_origin)
    return pipe

