"""InterNet configuration: one frozen, validated dataclass and named presets (docs/conventions.md §5).

The heatmap grid is (D, H, W) with H = W = input_size / 4 (the backbone's stride 32 and three
stride-2 deconvolutions); only the depth bins D are free. Depth ranges are the original's 400 mm
(`bbox_3d_size` and `bbox_3d_size_root`): a bin count changes the resolution, not the range.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from shards.geometry import DEPTH_RANGE_MM

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
JOINTS_PER_HAND = 21


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet50"
    input_size: int = 256  # square input patch, pixels
    depth_bins: int = 64  # D of the (D, H, W) joint heatmaps
    root_bins: int = 64  # bins of the relative root depth soft-argmax
    sigma: float = 2.5  # target Gaussian, in heatmap bins
    depth_range_mm: float = DEPTH_RANGE_MM  # joint depth range around the hand root (bins <-> mm)
    root_depth_range_mm: float = DEPTH_RANGE_MM  # relative root depth range (bins <-> mm)
    head_channels: int = 256  # width of the deconvolution heads (the original: 256)

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if not isinstance(self.input_size, int) or self.input_size < 32 or self.input_size % 32:
            raise ValueError(f"input_size must be a positive multiple of 32, got {self.input_size!r}")
        if not isinstance(self.head_channels, int) or self.head_channels < 1:
            raise ValueError(f"head_channels must be a positive int, got {self.head_channels!r}")
        for name in ("depth_bins", "root_bins"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 2:
                raise ValueError(f"{name} must be an int >= 2, got {v!r}")
        for name in ("sigma", "depth_range_mm", "root_depth_range_mm"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)!r}")

    @property
    def heatmap_size(self) -> tuple[int, int, int]:
        """(D, H, W) of each joint's heatmap."""
        return (self.depth_bins, self.input_size // 4, self.input_size // 4)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {unknown}; known: {sorted(known)}")
        return cls(**d)


PRESETS: dict[str, ModelConfig] = {
    # The paper's InterNet: ResNet-50, 256x256 input, 64^3 heatmaps, 64 root bins.
    "paper": ModelConfig(),
    # A middle size: ResNet-18, 128x128 input, 32^3 heatmaps (~5x the demo's cost per image).
    "small": ModelConfig(backbone="resnet18", input_size=128, depth_bins=32, root_bins=32),
    # `make demo` on 2 CPU cores in minutes: ResNet-18, 64x64 input, 16^3 heatmaps, 64-channel
    # deconvolution heads (the 256-channel heads cost 2/3 of the step at this size: ~90 vs ~42 images/s
    # training at batch 16 vs 8; same test MPJPE after the same minutes, in twice the images).
    "demo": ModelConfig(backbone="resnet18", input_size=64, depth_bins=16, root_bins=16, head_channels=64),
    # Tests: the smallest sensible network (the demo's sizes).
    "tiny": ModelConfig(backbone="resnet18", input_size=64, depth_bins=16, root_bins=16),
}


def get_config(cfg: str | ModelConfig | dict, **overrides) -> ModelConfig:
    """A preset name, a dict or a ModelConfig, with field overrides -> a validated ModelConfig."""
    if isinstance(cfg, str):
        if cfg not in PRESETS:
            raise ValueError(f"unknown model preset {cfg!r}; presets: {sorted(PRESETS)}")
        cfg = PRESETS[cfg]
    elif isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    elif not isinstance(cfg, ModelConfig):
        raise TypeError(f"expected a preset name, dict or ModelConfig, got {type(cfg).__name__}")
    if overrides:
        cfg = ModelConfig.from_dict({**cfg.to_dict(), **overrides})
    return cfg
