"""Joint coordinates from 3D heatmaps (docs/conventions.md §7): per joint, the argmax of its (D, H, W) volume."""
from __future__ import annotations

import torch


def decode(heatmaps: torch.Tensor) -> torch.Tensor:
    """(B, J, D, H, W) -> (B, J, 3) float32 (x, y, z) in heatmap bins.

    Same result as the original's nested max (over z, then y, then x) and gathers, ties included:
    among equal maxima the smallest x wins, then the smallest y, then the smallest z. All joints at
    once; one pass over the volume (the max over z), the rest works on (B, J, H, W) or smaller.
    """
    if heatmaps.dim() != 5:
        raise ValueError(f"heatmaps must be (B, J, D, H, W), got shape {tuple(heatmaps.shape)}")
    B, J, D, H, W = heatmaps.shape
    val_z, idx_z = heatmaps.max(dim=2)  # (B, J, H, W): best z per (y, x)
    val_zy, idx_zy = val_z.max(dim=2)  # (B, J, W): best y per x
    x = val_zy.argmax(dim=2, keepdim=True)  # (B, J, 1)
    y = idx_zy.gather(2, x)  # (B, J, 1)
    z = idx_z.reshape(B, J, H * W).gather(2, y * W + x)  # (B, J, 1)
    return torch.cat((x, y, z), dim=2).float()
