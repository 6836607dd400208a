"""The DALI graph: read shard samples, decode, draw the augmentation, warp one patch per sample.

One graph for both devices: `device_id=None` decodes on the CPU, an integer decodes with nvJPEG
(`mixed`) and warps on that GPU. The random augmentation (docs/conventions.md §3.2) is drawn here with `fn.random.*`
and returned per sample together with the patch -> image affine, so the batched label transform
(pipeline/targets.py) uses exactly the matrix the image was warped with (inverted in torch).

Only the region of interest is decoded: the bounding box of the pixels the patch samples (its
rotated, scaled square mapped back into the image, plus a margin for the bilinear taps), clamped to
the image. Every sample point outside that box lies outside the image, so the zero border is kept.

warp='dali' warps in the graph (fn.warp_affine, the GPU path); warp='host' returns the decoded ROI
and its origin, and the loader warps it with OpenCV (the CPU path: DALI's CPU warp is ~5x slower
than cv2.warpAffine, the original's own warp; uint8 in and out, 3x faster than float32 and within
half a grey level of it).
"""
from __future__ import annotations

from nvidia.dali import fn, types
from nvidia.dali import math as dmath
from nvidia.dali.pipeline import Pipeline

from shards.labels import OFFSETS

# The per-sample `aug` output: translation (x, y) in bbox sizes, scale, rotation (degrees),
# flip (0/1), colour scale (r, g, b).
AUG_FIELDS = ("tx", "ty", "scale", "rot", "flip", "color_r", "color_g", "color_b")
IDENTITY_AUG = (0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0)
WARPS = ("dali", "host")
ROI_MARGIN = 2  # pixels around the sampled region: the bilinear taps and float rounding

# The original's augmentation constants (docs/conventions.md §3.2).
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
    """docs/conventions.md §3.2, drawn per sample: the original's get_aug_config."""
    trans = fn.random.uniform(range=[-TRANS_FACTOR, TRANS_FACTOR], shape=[2])
    scale = dmath.clamp(fn.random.normal(), -1.0, 1.0) * SCALE_FACTOR + 1.0
    do_rot = fn.cast(fn.random.coin_flip(probability=ROT_PROB), dtype=types.FLOAT)
    rot = dmath.clamp(fn.random.normal(), -2.0, 2.0) * ROT_FACTOR * do_rot
    flip = fn.cast(fn.random.coin_flip(probability=FLIP_PROB), dtype=types.FLOAT)
    color = fn.random.uniform(range=[1.0 - COLOR_FACTOR, 1.0 + COLOR_FACTOR], shape=[3])
    middle = fn.stack(fn.cast(scale, dtype=types.FLOAT), fn.cast(rot, dtype=types.FLOAT), flip)
    return fn.cat(trans, middle, color)


def _field(lbl, name, k=0, n=None):
    """A label field's scalar k, or its slice [k, k + n) when n is given (one DALI node)."""
    start = OFFSETS[name][0] + k
    return lbl[start] if n is None else lbl[start:start + n]


def patch_nodes(lbl, aug, input_size: int, use_rootnet: bool):
    """The patch -> image affine (2x3, pixel centres at integers, the OpenCV convention) and the
    decoded region [start, end) (int32 x, y) holding every pixel the patch samples.

    The original's forward map (gen_trans_from_patch_cv) sends the shifted bbox centre c to the patch
    centre S/2 and the bbox, scaled by s, rotated by rot, onto the S x S square; the image is mirrored
    first when flipped (x -> W - 1 - x, centre mirrored with it). Its inverse, applied to a patch
    point p, is x = c + Flip(R(rot) diag(bw s / S, bh s / S) (p - S/2)), Flip negating x: mirroring
    the image and the centre together cancels except for the sign of the offset from the centre.
    Built as a chain of fn.transforms (a handful of nodes instead of a scalar expression per
    coefficient: 139 nodes of per-sample arithmetic took ~40 % of the CPU graph's time, 56 now).

    The region is the bounding box of the patch square's corners mapped into the image, plus
    ROI_MARGIN pixels for the bilinear taps and rounding, clamped to the image (at least 1 pixel);
    every sample point outside it lies outside the image, so the zero border is kept."""
    box = "rootnet_bbox" if use_rootnet else "bbox"
    xy, wh = _field(lbl, box, 0, 2), _field(lbl, box, 2, 2)
    img_size = _field(lbl, "img_size", 0, 2)
    size = float(input_size)
    centre = xy + wh * (aug[0:2] + 0.5)  # original: bbox x += w * tx, y += h * ty; centre = x + w / 2
    one = fn.constant(fdata=[1.0], shape=[1], dtype=types.FLOAT)
    inv = fn.transforms.translation(offset=[-size / 2, -size / 2])
    inv = fn.transforms.scale(inv, scale=wh * (aug[2] * (1.0 / size)))
    inv = fn.transforms.rotation(inv, angle=aug[3])  # degrees; x right, y down as the original's
    inv = fn.transforms.scale(inv, scale=fn.cat(1.0 - 2.0 * aug[4:5], one))  # the flip
    inv = fn.transforms.translation(inv, offset=centre)
    corners = fn.constant(fdata=[0.0, 0.0, size, 0.0, 0.0, size, size, size], shape=[4, 2], dtype=types.FLOAT)
    pts = fn.coord_transform(corners, MT=inv)
    lo = dmath.clamp(dmath.floor(fn.reductions.min(pts, axes=0)) - float(ROI_MARGIN), 0.0, img_size - 1.0)
    hi = dmath.clamp(dmath.floor(fn.reductions.max(pts, axes=0)) + float(ROI_MARGIN + 2), lo + 1.0, img_size)
    return inv, lo, fn.cast(lo, dtype=types.INT32), fn.cast(hi, dtype=types.INT32)


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
        inv, origin, start, end = patch_nodes(lbl, aug, input_size, use_rootnet)
        # libjpeg-turbo / nvJPEG skip the work outside the ROI. Pixels as stored, as the original's
        # cv2.IMREAD_IGNORE_ORIENTATION (the annotations refer to them; DALI would apply EXIF
        # rotation by default); on the GPU the chroma upsampling of libjpeg-turbo (cv2.imread's),
        # not nvJPEG's default.
        image = fn.decoders.image_slice(jpg, start=start, end=end, device="mixed" if gpu else "cpu",
                                        output_type=types.RGB, adjust_orientation=False,
                                        **({"hw_decoder_load": hw_decoder_load, "jpeg_fancy_upsampling": True}
                                           if gpu else {}))
        if warp == "dali":
            # Destination -> source in the ROI's pixels. DALI puts pixel centres at +0.5 ([0, 0] is the
            # corner of the first pixel), OpenCV at integers: conjugate by the half-pixel shift,
            # M'(p) = M(p - 0.5) + 0.5, then subtract the ROI's origin.
            half = 0.5 if half_pixel else 0.0
            matrix = fn.transforms.combine(fn.transforms.translation(offset=[-half, -half]), inv,
                                           fn.transforms.translation(offset=half - origin))
            # No fill_value: DALI then clamps source coordinates (its fast path, ~2x faster on the
            # CPU); pipeline.targets.finish_images multiplies by the in-image share of the bilinear
            # weights, which gives exactly OpenCV's zero border, and applies the colour scale.
            images = fn.warp_affine(image, matrix=matrix, size=[input_size, input_size], inverse_map=True,
                                    interp_type=types.INTERP_LINEAR, dtype=types.FLOAT)
        elif gpu:
            raise ValueError("warp='host' is the CPU path (device_id=None); on a GPU the graph warps")
        else:
            images = image  # (h, w, 3) uint8 ROI, warped by the loader
        has_rootnet = _field(lbl, "has_rootnet")
        ids_host = ids
        if gpu:  # small per-sample vectors go to the GPU inside DALI: the label maths runs on the device
            lbl, inv, aug, ids = lbl.gpu(), inv.gpu(), aug.gpu(), ids.gpu()
        pipe.set_outputs(images, lbl, inv, aug, ids, ids_host, has_rootnet, origin)
    return pipe

