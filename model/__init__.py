"""InterNet (docs/conventions.md §5-§7): model, criterion, decoding, checkpoints.

    from model import build_model, Criterion, decode
    model = build_model("paper")             # or "demo" / "tiny" / a ModelConfig
    out = model(images)                      # heatmaps (B,42,D,H,W), rel_root_depth (B,), hand_type (B,2)
    losses = Criterion(model.config)(out, batch); sum(losses.values()).backward()
    joints = decode(out["heatmaps"])         # (B, 42, 3) bins
"""
from .checkpoint import LoadedCheckpoint, clean_state_dict, config_from_state_dict, load_checkpoint, save_checkpoint
from .config import PRESETS, ModelConfig, get_config
from .decode import decode
from .internet import InterNet, build_model, load_backbone_weights, unwrap
from .loss import Criterion, hand_type_loss, heatmap_loss, root_depth_loss

__all__ = [
    "ModelConfig", "PRESETS", "get_config", "InterNet", "build_model", "load_backbone_weights", "unwrap",
    "Criterion", "heatmap_loss", "root_depth_loss", "hand_type_loss", "decode",
    "load_checkpoint", "save_checkpoint", "LoadedCheckpoint", "clean_state_dict", "config_from_state_dict",
]
