"""Training targets from the label vectors, batched in torch on the training device (docs/conventions.md §3.3-§3.7).

Input per batch: `lbl` (B, LABEL_SIZE) as stored in the shards, `affine` (B, 2, 3) the image -> patch
matrix the image was warped with (flip folded in, pixel centres at integers; the inverse of the
graph's patch -> image matrix, see invert_affine) and `aug` (B, 8) the
augmentation parameters (pipeline.graph.AUG_FIELDS). No per-sample Python, no host syncs.
"""
from __future__ import annotations

import numpy as np
import torch

from shards.labels import OFFSETS
from shards.skeleton import FLIP_PERM, JOINTS_PER_HAND, ROOT

assert (FLIP_PERM == np.roll(np.arange(2 * JOINTS_PER_HAND), JOINTS_PER_HAND)).all()  # make_targets relies on it


def _field(lbl: torch.Tensor, name: str) -> torch.Tensor:
    start, end, shape = OFFSETS[name]
    return lbl[:, start:end].reshape(lbl.shape[0], *shape)


def invert_affine(affine: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) -> (B, 2, 3) inverse affine (closed-form 2x2 inverse, computed in float64)."""
    a = affine.double()
    a00, a01, t0 = a[:, 0, 0], a[:, 0, 1], a[:, 0, 2]
    a10, a11, t1 = a[:, 1, 0], a[:, 1, 1], a[:, 1, 2]
    det = a00 * a11 - a01 * a10
    i00, i01, i10, i11 = a11 / det, -a01 / det, -a10 / det, a00 / det
    it0 = -(i00 * t0 + i01 * t1)
    it1 = -(i10 * t0 + i11 * t1)
    inv = torch.stack([torch.stack([i00, i01, it0], -1), torch.stack([i10, i11, it1], -1)], 1)
    return inv.to(affine.dtype)


def finish_images(patch: torch.Tensor, inv: torch.Tensor, img_size: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) float 0..255 warped with clamped borders -> network input in [0, 1], in place.
    inv: (B, 2, 3) the patch -> image matrix the patch was sampled with.

    OpenCV's zero border (BORDER_CONSTANT) equals the clamped warp times the in-image share of the
    bilinear weights, wx * wy with wx = clamp(min(sx + 1, width - sx), 0, 1) at source x = sx (1
    inside the image, falling linearly to 0 over the pixel beyond the edge). Then the original's
    colour step: clip(patch * color, 0, 255) / 255."""
    b, h, w, _ = patch.shape
    inv = inv.float()
    u = torch.arange(w, device=patch.device, dtype=torch.float32).view(1, 1, w)
    v = torch.arange(h, device=patch.device, dtype=torch.float32).view(1, h, 1)
    size = img_size.float()  # (B, 2) width, height

    def share(row, extent):  # min(s + 1, n - s) = (n + 1) / 2 - |s - (n - 1) / 2|, clamped to [0, 1]
        centre = (extent - 1.0) / 2.0
        d = inv[:, row, 0, None, None] * u + (inv[:, row, 1, None, None] * v + (inv[:, row, 2] - centre)[:, None, None])
        return d.abs_().neg_().add_(((extent + 1.0) / 2.0)[:, None, None]).clamp_(0.0, 1.0)  # (B, H, W)

    weight = share(0, size[:, 0]).mul_(share(1, size[:, 1]))
    patch.mul_(weight.unsqueeze(-1) * (color / 255.0)[:, None, None, :])
    return patch.clamp_(0.0, 1.0)


def make_targets(lbl: torch.Tensor, affine: torch.Tensor, aug: torch.Tensor, config) -> dict:
    """The batch's targets: joint_coord (B, 42, 3) bins (x, y, z), joint_valid (B, 42), rel_root_depth (B,),
    root_valid (B,), hand_type (B, 2), hand_type_valid (B,). config: the model's geometry
    (model.ModelConfig: input_size, heatmap_size (D, H, W), root_bins, depth_range_mm, root_depth_range_mm)."""
    lbl, affine = lbl.float(), affine.float()
    input_size, root_bins = config.input_size, config.root_bins
    depth_bins, hm_h, hm_w = config.heatmap_size
    joint_img = _field(lbl, "joint_img")  # (B, 42, 3): u, v px, Z mm
    valid = _field(lbl, "joint_valid")  # (B, 42)
    hand_type = _field(lbl, "hand_type")  # (B, 2)
    flip = aug[:, 4] > 0.5  # (B,)

    # Joints through the patch affine (the mirror is already folded into it).
    xy = torch.einsum("bij,bnj->bni", affine[:, :, :2], joint_img[..., :2]) + affine[:, None, :, 2]
    z = joint_img[..., 2]
    inside = (xy[..., 0] >= 0) & (xy[..., 0] < input_size) & (xy[..., 1] >= 0) & (xy[..., 1] < input_size)
    valid = valid * inside.to(valid.dtype)
    coord = torch.cat([xy, z[..., None]], -1)  # (B, 42, 3) patch px, px, mm

    # A flip swaps the right and left halves of joints, validity and hand type: FLIP_PERM is a roll by
    # one hand (checked at import), so no index tensor is copied to the device (a host sync) per batch.
    coord = torch.where(flip[:, None, None], coord.roll(JOINTS_PER_HAND, 1), coord)
    valid = torch.where(flip[:, None], valid.roll(JOINTS_PER_HAND, 1), valid)
    hand_type = torch.where(flip[:, None], hand_type.flip(-1), hand_type)

    right, left = ROOT["right"], ROOT["left"]
    rel_root = coord[:, left, 2] - coord[:, right, 2]  # (B,) mm
    two_hands = (hand_type[:, 0] * hand_type[:, 1]) == 1
    root_valid = torch.where(two_hands, valid[:, right] * valid[:, left], torch.zeros_like(rel_root))

    # Output (heatmap) space.
    half, root_half = config.depth_range_mm / 2.0, config.root_depth_range_mm / 2.0
    root_z = torch.cat([coord[:, right:right + 1, 2].expand(-1, JOINTS_PER_HAND),
                        coord[:, left:left + 1, 2].expand(-1, JOINTS_PER_HAND)], 1)  # (B, 42)
    z_bins = ((coord[..., 2] - root_z) / half + 1.0) / 2.0 * depth_bins
    joint_coord = torch.stack([coord[..., 0] / input_size * hm_w, coord[..., 1] / input_size * hm_h, z_bins], -1)
    valid = valid * ((z_bins >= 0) & (z_bins < depth_bins)).to(valid.dtype)
    rel_root_bins = (rel_root / root_half + 1.0) / 2.0 * root_bins
    root_valid = root_valid * ((rel_root_bins >= 0) & (rel_root_bins < root_bins)).to(root_valid.dtype)

    out = {
        "joint_coord": joint_coord, "joint_valid": valid, "rel_root_depth": rel_root_bins,
        "root_valid": root_valid, "hand_type": hand_type, "hand_type_valid": _field(lbl, "hand_type_valid")[:, 0],
    }
    return out
