"""Validation during training: the paper's metrics (eval/) on a held-out split."""
from __future__ import annotations

import math

from .config import TrainConfig
from .distributed import Dist

SUMMARY_KEYS = ("mpjpe_all", "mpjpe_single", "mpjpe_interacting", "mrrpe", "handedness_accuracy")


def make_validator(cfg: TrainConfig, d: Dist, mc, split_dir: str, criterion=None):
    """-> validate(model, epoch) -> dict of summary metrics (rank 0; {} on other ranks)."""
    from eval.gt import load_gt
    from eval.predict import predict
    from eval.score import check_predictions, score
    from pipeline import build_loader

    loader = build_loader(split_dir, batch_size=cfg.batch_size, train=False, device=d.device,
                          input_size=mc.input_size, heatmap_size=mc.heatmap_size, root_bins=mc.root_bins,
                          rank=d.rank, world_size=d.world_size, seed=cfg.seed, num_threads=cfg.num_threads or None)
    shards, _, split = split_dir.rstrip("/").rpartition("/")
    gt = load_gt(shards, split, progress=False) if d.is_main else None

    def validate(model, epoch: int) -> dict:
        preds = predict(model, loader, d.device, progress=d.is_main)
        if preds is None:  # not rank 0 under DDP: rank 0 gathered everything
            return {}
        preds.update(input_size=mc.input_size, heatmap_size=mc.heatmap_size, root_bins=mc.root_bins)
        m = score(check_predictions(preds, f"validation epoch {epoch}"), gt)["metrics"]
        return {k: float(m[k]) for k in SUMMARY_KEYS if not math.isnan(float(m[k]))}

    validate.loader = loader  # the trainer names a corrupt shard from its shard list
    return validate
