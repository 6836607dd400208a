"""InterNet (docs/conventions.md §5): ResNet backbone, two 3D-heatmap branches, root-depth and hand-type MLPs.

Module names follow the original so that `state_dict()` keys equal the original checkpoint's after
stripping DataParallel's `module.` (backbone_net.resnet.*, pose_net.joint_deconv_1.*, ...).
The model only predicts; the criterion (model.loss) and decoding (model.decode) are separate.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import JOINTS_PER_HAND, ModelConfig, get_config
from .resnet import ResNet

HEAD_CHANNELS = 256
MLP_HIDDEN = 512


class BackboneNet(nn.Module):
    def __init__(self, depth: int, init: bool = True):
        super().__init__()
        self.resnet = ResNet(depth, init)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.resnet(images)


def _deconv_stack(cin: int, width: int = HEAD_CHANNELS) -> nn.Sequential:
    """Three (ConvTranspose k4 s2 p1, no bias) + BN + ReLU; indices 0,1,2 / 3,4,5 / 6,7,8 as the original."""
    layers = []
    for c in (cin, width, width):
        layers += [nn.ConvTranspose2d(c, width, 4, stride=2, padding=1, bias=False),
                   nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _mlp(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, MLP_HIDDEN), nn.ReLU(inplace=True), nn.Linear(MLP_HIDDEN, cout))


class PoseNet(nn.Module):
    def __init__(self, cin: int, depth_bins: int, root_bins: int, width: int = HEAD_CHANNELS):
        super().__init__()
        self.depth_bins, self.width = depth_bins, width
        self.joint_deconv_1 = _deconv_stack(cin, width)
        self.joint_conv_1 = nn.Sequential(nn.Conv2d(width, JOINTS_PER_HAND * depth_bins, 1))
        self.joint_deconv_2 = _deconv_stack(cin, width)
        self.joint_conv_2 = nn.Sequential(nn.Conv2d(width, JOINTS_PER_HAND * depth_bins, 1))
        self.root_fc = _mlp(cin, root_bins)
        self.hand_fc = _mlp(cin, 2)

    def reset_parameters(self) -> None:
        """The original's head initialisation (docs/conventions.md §5)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def joint_heatmaps(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 42, D, 8h, 8w): branch 1 = right hand (joints 0-20), branch 2 = left."""
        f1 = self.joint_deconv_1(feat)
        f2 = self.joint_deconv_2(feat)
        # Both 1x1 convs as one grouped conv writing straight into the (B, 42*D, H, W) output: no
        # concatenation copy of the (large) heatmaps. Contiguous (NCHW) operands give an NCHW
        # output, i.e. a contiguous (B, 42, D, H, W) view, which the loss and decoding read.
        f = torch.cat((f1, f2), 1).contiguous()
        c1, c2 = self.joint_conv_1[0], self.joint_conv_2[0]
        w = torch.cat((c1.weight, c2.weight)).reshape(-1, self.width)[:, :, None, None]
        heat = F.conv2d(f, w, torch.cat((c1.bias, c2.bias)), groups=2)
        B, _, H, W = heat.shape
        return heat.contiguous().view(B, 2 * JOINTS_PER_HAND, self.depth_bins, H, W)

    def forward(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        gap = feat.mean(dim=(2, 3))  # (B, C): global average pool
        # Soft-argmax in float32 (also under bf16 autocast): value in root bins, (B,).
        prob = torch.softmax(self.root_fc(gap).float(), dim=1)
        bins = torch.arange(prob.shape[1], device=prob.device, dtype=prob.dtype)
        rel_root_depth = (prob * bins).sum(dim=1)
        hand_type = torch.sigmoid(self.hand_fc(gap).float())  # (B, 2) probabilities [right, left]
        return {"heatmaps": self.joint_heatmaps(feat), "rel_root_depth": rel_root_depth, "hand_type": hand_type}


class InterNet(nn.Module):
    """images (B, 3, H, W) float RGB in [0, 1] (no mean/std normalisation, as the original) ->
    dict(heatmaps (B, 42, D, H/4, W/4), rel_root_depth (B,) in root bins, hand_type (B, 2) probabilities)."""

    def __init__(self, config: ModelConfig, init: bool = True):
        """init=False skips the training initialisation (for weights about to be loaded)."""
        super().__init__()
        self.config = config
        self.backbone_net = BackboneNet(int(config.backbone.removeprefix("resnet")), init)
        self.pose_net = PoseNet(self.backbone_net.resnet.out_channels, config.depth_bins, config.root_bins,
                                config.head_channels)
        if init:
            self.pose_net.reset_parameters()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.pose_net(self.backbone_net(images))


def build_model(config: str | ModelConfig | dict = "paper", backbone_weights: str | Path | None = None,
                **overrides) -> InterNet:
    """An InterNet for a preset name / config (+ field overrides), optionally ImageNet-initialised."""
    model = InterNet(get_config(config, **overrides))
    if backbone_weights:
        load_backbone_weights(model, backbone_weights)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside torch.compile (`_orig_mod`) and DDP/DataParallel (`module`) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Copy a local torchvision ResNet state dict (conv1.weight, layer1.0..., fc.* ignored) into the backbone."""
    path = Path(path)
    resnet = unwrap(model).backbone_net.resnet
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"backbone weights file not found: {path}") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: expected a torchvision ResNet state dict (name -> tensor)")
    sd = {k.removeprefix("module."): v for k, v in sd.items() if not k.removeprefix("module.").startswith("fc.")}
    want = resnet.state_dict()
    missing = sorted(set(want) - set(sd))
    unexpected = sorted(set(sd) - set(want))
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(want[k].shape)}"
              for k in sorted(set(sd) & set(want)) if sd[k].shape != want[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"{path} does not fit a torchvision {resnet.depth}-layer ResNet: "
                         + describe_mismatch(missing, unexpected, shapes))
    resnet.load_state_dict(sd, strict=True)


def describe_mismatch(missing: list, unexpected: list, shapes: list, limit: int = 8) -> str:
    def part(name, items):
        more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
        return f"{len(items)} {name} {items[:limit]}{more}"
    return "; ".join(part(n, i) for n, i in (("missing keys", missing), ("unexpected keys", unexpected),
                                             ("shape mismatches", shapes)) if i)
