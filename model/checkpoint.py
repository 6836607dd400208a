"""Checkpoints: the original `snapshot_<epoch>.pth.tar` files and ours, loaded with weights_only=True.

Original (docs/conventions.md §5): {"epoch", "network": DataParallel state dict ("module." keys), "optimizer"};
the backbone depth, depth bins and root bins are read off the weights (input size: 256 unless given).
Ours: {"format", "model_config": dict, "model": state dict, ...extra} (save_checkpoint); training
checkpoints with the same "model"/"model_config" entries load too. Keys are cleaned of the prefixes
torch.compile (`_orig_mod.`) and DDP/DataParallel (`module.`) add.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shards.atomic import atomic_write

from .config import JOINTS_PER_HAND, ModelConfig, get_config
from .internet import InterNet, describe_mismatch, unwrap
from .resnet import depth_from_state_dict

FORMAT = "interhand-fast/internet-v1"


@dataclass
class LoadedCheckpoint:
    model: InterNet  # in eval mode, on map_location
    config: ModelConfig
    epoch: int | None
    layout: str  # "original" | "ours" | "state_dict"
    raw: dict  # everything the file holds (optimizer state, ...)


def clean_state_dict(sd: dict) -> dict:
    """Drop `_orig_mod.` (torch.compile, anywhere in a key) and leading `module.` (DDP, DataParallel)."""
    out = {}
    for k, v in sd.items():
        parts = [p for p in k.split(".") if p != "_orig_mod"]
        while parts and parts[0] == "module":
            parts = parts[1:]
        out[".".join(parts)] = v
    return out


def config_from_state_dict(sd: dict, input_size: int = 256, sigma: float = 2.5) -> ModelConfig:
    """The ModelConfig an InterNet state dict (clean keys) was built with; input size and sigma
    are not in the weights."""
    need = ("pose_net.joint_conv_1.0.weight", "pose_net.root_fc.2.weight")
    if any(k not in sd for k in need) or not any(k.startswith("backbone_net.resnet.") for k in sd):
        raise ValueError(f"not an InterNet state dict: needs backbone_net.resnet.* and {list(need)}")
    depth = depth_from_state_dict(sd, "backbone_net.resnet.")
    channels = sd["pose_net.joint_conv_1.0.weight"].shape[0]
    if channels % JOINTS_PER_HAND:
        raise ValueError(f"pose_net.joint_conv_1.0.weight has {channels} output channels, not a multiple of 21")
    return ModelConfig(backbone=f"resnet{depth}", input_size=input_size, depth_bins=channels // JOINTS_PER_HAND,
                       root_bins=sd["pose_net.root_fc.2.weight"].shape[0], sigma=sigma,
                       head_channels=sd["pose_net.joint_conv_1.0.weight"].shape[1])


def _safe_globals() -> list:
    # ModelConfig objects and numpy RNG states (training checkpoints) are all we allow besides tensors.
    core = getattr(np, "_core", None) or np.core
    return [ModelConfig, core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _read(path: Path, map_location):
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {path}") from None
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: cannot be loaded with weights_only=True (holds objects other than tensors, "
                         f"containers, ModelConfig and numpy RNG state): {e}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    input_size: int | None = None) -> LoadedCheckpoint:
    """Build the InterNet a checkpoint file describes and load its weights (original or ours)."""
    path = Path(path)
    ckpt = _read(path, map_location)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict, got {type(ckpt).__name__}")
    stored = None
    if isinstance(ckpt.get("network"), dict):
        layout, sd = "original", ckpt["network"]
    elif isinstance(ckpt.get("model"), dict):
        layout, sd, stored = "ours", ckpt["model"], ckpt.get("model_config")
    elif ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        layout, sd = "state_dict", ckpt
    else:
        raise ValueError(f"{path}: neither an original snapshot ('network'), nor ours ('model'), nor a state dict; "
                         f"top-level keys {sorted(map(str, ckpt))[:10]}")
    sd = clean_state_dict(sd)
    try:
        if stored is not None:
            config = get_config(stored if isinstance(stored, ModelConfig) else dict(stored))
            if input_size is not None:
                config = get_config(config, input_size=input_size)
        else:
            config = config_from_state_dict(sd, input_size=input_size or 256)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None
    with torch.device("meta"):  # no initialisation work: every tensor comes from the file
        model = InterNet(config, init=False)
    want = model.state_dict()
    missing, unexpected = sorted(set(want) - set(sd)), sorted(set(sd) - set(want))
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(want[k].shape)}"
              for k in sorted(set(sd) & set(want)) if sd[k].shape != want[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"{path} ({layout} layout) does not fit InterNet {config}: "
                         + describe_mismatch(missing, unexpected, shapes))
    model.load_state_dict({k: v.to(torch.device(map_location)) for k, v in sd.items()}, strict=True, assign=True)
    model.eval()
    epoch = ckpt.get("epoch")
    return LoadedCheckpoint(model, config, int(epoch) if epoch is not None else None, layout, ckpt)


def save_checkpoint(path: str | Path, model: nn.Module, config: ModelConfig | None = None, **extra) -> Path:
    """Write {"format", "model_config", "model", **extra} atomically (temp file, then rename).

    `model` may be wrapped by torch.compile / DDP; keys are stored clean. `extra` (epoch, optimizer
    state, ...) should hold only tensors, containers and plain values to stay weights_only-loadable.
    """
    path = Path(path)
    net = unwrap(model)
    config = config or net.config
    payload = {"format": FORMAT, "model_config": config.to_dict(), "model": clean_state_dict(net.state_dict()), **extra}
    atomic_write(path, lambda f: torch.save(payload, f))
    return path
