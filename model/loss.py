"""The original's three losses (docs/conventions.md §6), with a heatmap loss that never builds the target volumes.

The original renders t = peak * exp(-((x-cx)^2 + (y-cy)^2 + (z-cz)^2) / (2 sigma^2)) for every joint
(B x 42 x 64^3, 44 MB per sample in float32) and averages v * (p - t)^2 over all B*42*D*H*W elements.
Here, per joint, sum((p - t)^2) = sum(p^2) - 2 sum(p t) + sum(t^2) with t = peak * gz(z) gy(y) gx(x):
- sum(p t) contracts p with gx, then gy, then gz (a batched matrix-vector product per axis);
- sum(t^2) = peak^2 * sum(gz^2) sum(gy^2) sum(gx^2): 1D sums over the grid, so a Gaussian cut by
  the grid border (or centred outside it) is exact too;
- the gradient 2 v (p - t) / N is written by a hand-made backward into one buffer (t broadcast from
  its 1D factors), so fwd+bwd needs one heatmap-sized tensor (the gradient) beyond the prediction.
Precision: near convergence the loss is the small difference of large terms (~5.7e6 per joint for a
64^3 Gaussian of peak 255). The volume passes reduce only the W axis in float32 (64-term sums); all
further sums and the combination are float64 on tensors 1/W the size (benchmarks/loss.py measures it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig, get_config


def gaussian_1d(center: torch.Tensor, n: int, sigma: float) -> torch.Tensor:
    """(...,) centres in bins -> (..., n) exp(-((i - c) / sigma)^2 / 2), float32."""
    i = torch.arange(n, device=center.device, dtype=torch.float32)
    return torch.exp(-(((i - center.float()[..., None]) / sigma) ** 2) / 2)


class _HeatmapLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, heat, coord, valid, sigma: float, peak: float):
        B, J, D, H, W = heat.shape
        p = heat.float().contiguous()  # no-op for a contiguous float32 prediction
        gx = gaussian_1d(coord[..., 0], W, sigma)  # (B, J, W)
        gy = gaussian_1d(coord[..., 1], H, sigma)  # (B, J, H)
        gz = gaussian_1d(coord[..., 2], D, sigma)  # (B, J, D)
        # One float32 pass each over the volume, reducing only the W axis (short sums, small rounding);
        # everything after that is (B, J, D, H) or smaller and is summed in float64.
        row_p2 = torch.linalg.vector_norm(p, dim=-1).double().square()  # (B, J, D, H): sum_x p^2
        cx = torch.bmm(p.view(B * J, D * H, W), gx.view(B * J, W, 1)).view(B, J, D, H).double()  # sum_x p gx
        sum_p2 = row_p2.sum(dim=(2, 3))  # (B, J)
        sum_pt = torch.einsum("bjzy,bjy,bjz->bj", cx, gy.double(), gz.double())  # (B, J), without the peak
        g64 = [g.double().square().sum(-1) for g in (gx, gy, gz)]
        sum_t2 = g64[0] * g64[1] * g64[2]  # (B, J), without peak^2
        per_joint = sum_p2 - 2 * peak * sum_pt + peak * peak * sum_t2
        n = heat.numel()
        ctx.save_for_backward(heat, gx, gy, gz, valid)
        ctx.sigma, ctx.peak, ctx.n = sigma, peak, n
        return ((per_joint * valid.double()).sum() / n).float()

    @staticmethod
    def backward(ctx, grad_out):
        heat, gx, gy, gz, valid = ctx.saved_tensors
        coef = (2.0 / ctx.n) * grad_out.float() * valid.float()  # (B, J)
        grad = heat.float() * coef[:, :, None, None, None]  # the one heatmap-sized buffer
        tzy = (gz[:, :, :, None] * gy[:, :, None, :]) * (-ctx.peak * coef)[:, :, None, None]  # (B, J, D, H)
        grad.addcmul_(tzy[..., None], gx[:, :, None, None, :])  # -= coef * t, t broadcast from 1D factors
        return grad.to(heat.dtype), None, None, None, None


def heatmap_loss(heatmaps: torch.Tensor, joint_coord: torch.Tensor, joint_valid: torch.Tensor,
                 sigma: float = 2.5, peak: float = 255.0) -> torch.Tensor:
    """mean over B*J*D*H*W of joint_valid * (heatmaps - gaussian target)^2, float32 scalar.

    heatmaps (B, J, D, H, W) any float dtype; joint_coord (B, J, 3) (x, y, z) bins; joint_valid (B, J).
    """
    if heatmaps.dim() != 5 or joint_coord.shape != (*heatmaps.shape[:2], 3) \
            or joint_valid.shape != heatmaps.shape[:2]:
        raise ValueError(f"heatmap loss: heatmaps {tuple(heatmaps.shape)}, joint_coord {tuple(joint_coord.shape)}, "
                         f"joint_valid {tuple(joint_valid.shape)} do not fit (B, J, D, H, W) / (B, J, 3) / (B, J)")
    # Float32/float64 math whatever the caller's autocast state (bmm would otherwise run in bf16).
    with torch.autocast(device_type=heatmaps.device.type, enabled=False):
        return _HeatmapLoss.apply(heatmaps, joint_coord.float(), joint_valid.float(), float(sigma), float(peak))


def root_depth_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """mean over B of root_valid * |pred - target| (bins)."""
    _check_same_shape("rel_root_depth", pred, target, valid)
    return ((pred.float() - target.float()).abs() * valid.float()).mean()


def hand_type_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """mean over B of hand_type_valid * (BCE averaged over the 2 outputs).

    F.binary_cross_entropy as the original (logs clamped at -100, and a backward that stays finite
    when a probability saturates at 0 or 1 - a written-out clamp(log) gives 0/0 = NaN there). It
    refuses to run under autocast, so autocast is switched off around it (float32 inputs).
    """
    _check_same_shape("hand_type", pred, target)
    if valid.shape != pred.shape[:1]:
        raise ValueError(f"hand_type_valid must be (B,) = {tuple(pred.shape[:1])}, got {tuple(valid.shape)}")
    with torch.autocast(device_type=pred.device.type, enabled=False):
        bce = F.binary_cross_entropy(pred.float(), target.float(), reduction="none")  # (B, 2)
    return (bce.mean(dim=1) * valid.float()).mean()


def _check_same_shape(name: str, *tensors: torch.Tensor) -> None:
    # (B,) against (B, 1) would broadcast to (B, B) silently.
    shapes = [tuple(t.shape) for t in tensors]
    if len(set(shapes)) != 1:
        raise ValueError(f"{name} loss: prediction, target (and validity) shapes differ: {shapes}")


class Criterion(nn.Module):
    """forward(outputs of InterNet, batch) -> dict(joint_heatmap, rel_root_depth, hand_type): float32 batch
    means, named as the original's losses. The training objective is their unweighted sum (docs/conventions.md §6)."""

    def __init__(self, config: str | ModelConfig | dict = "paper", peak: float = 255.0):
        super().__init__()
        self.sigma = get_config(config).sigma
        self.peak = peak

    def forward(self, out: dict, batch: dict) -> dict[str, torch.Tensor]:
        # All three in float32 (or better) also under autocast; the other two are elementwise after .float().
        return {
            "joint_heatmap": heatmap_loss(out["heatmaps"], batch["joint_coord"], batch["joint_valid"],
                                          self.sigma, self.peak),
            "rel_root_depth": root_depth_loss(out["rel_root_depth"], batch["rel_root_depth"], batch["root_valid"]),
            "hand_type": hand_type_loss(out["hand_type"], batch["hand_type"], batch["hand_type_valid"]),
        }

