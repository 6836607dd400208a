"""ResNet 18/34/50/101/152 feature extractor with torchvision's module names (no torchvision needed).

Same layout and key names as `torchvision.models.resnet*` (ResNet v1.5: the stride sits in the 3x3
conv of a bottleneck) minus `avgpool` and `fc`: the output is the last stage's feature map
(512 or 2048 channels at 1/32 of the input size).
"""
from __future__ import annotations

import torch
from torch import nn

# depth -> (block kind, blocks per stage)
SPECS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """conv1-bn1-relu-maxpool-layer1..4; (B, 3, H, W) -> (B, out_channels, H/32, W/32)."""

    def __init__(self, depth: int, init: bool = True):
        super().__init__()
        if depth not in SPECS:
            raise ValueError(f"ResNet depth must be one of {sorted(SPECS)}, got {depth!r}")
        kind, blocks = SPECS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.depth = depth
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks)):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or cin != planes * block.expansion:
                down = nn.Sequential(_conv1x1(cin, planes * block.expansion, stride),
                                     nn.BatchNorm2d(planes * block.expansion))
            layers = [block(cin, planes, stride, down)]
            cin = planes * block.expansion
            layers += [block(cin, planes) for _ in range(1, n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
        self.out_channels = cin
        if init:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's default initialisation (used when no ImageNet weights are given)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def depth_from_state_dict(sd: dict, prefix: str = "") -> int:
    """The ResNet depth whose layout a state dict (keys `prefix + 'layer1.0.conv1.weight'`...) has."""
    counts = []
    for stage in range(1, 5):
        p = f"{prefix}layer{stage}."
        idx = {int(k[len(p):].split(".", 1)[0]) for k in sd if k.startswith(p)}
        counts.append(len(idx))
    kind = "bottleneck" if f"{prefix}layer1.0.conv3.weight" in sd else "basic"
    for depth, spec in SPECS.items():
        if spec == (kind, tuple(counts)):
            return depth
    raise ValueError(f"no ResNet has {kind} blocks {counts} per stage (keys under {prefix!r})")
