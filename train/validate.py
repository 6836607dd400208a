"""Validation during training: the paper's metrics (eval/) on a held-out split, exactly as
`python -m eval --checkpoint` computes them: the same loader, prediction and scoring, in float32
(under bf16 autocast the argmax of a heatmap would tie and the metrics would differ)."""
from __future__ import annotations

import math

from pipeline.distributed import Dist

from .config import TrainConfig

SUMMARY_KEYS = ("mpjpe_all", "mpjpe_single", "mpjpe_interacting", "mrrpe", "handedness_accuracy")


def make_validator(cfg: TrainConfig, d: Dist, model_config, split_dir: str):
    """-> validate(model, epoch) -> dict of summary metrics (rank 0; {} on other ranks)."""
    from eval.gt import load_gt
    from eval.predict import predict
    from eval.score import check_predictions, score
    from pipeline import build_loader

    loader = build_loader(split_dir, model_config, batch_size=cfg.batch_size, train=False, device=d.device,
                          rank=d.rank, world_size=d.world_size, seed=cfg.seed, num_threads=cfg.num_threads or None,
                          cache_dir=cfg.cache_dir or None, verify=cfg.verify_shards)
    gt = load_gt(split_dir, progress=False) if d.is_main else None

    def validate(model, epoch: int) -> dict:
        preds = predict(model, loader, d.device, progress=d.is_main)
        if preds is None:  # not rank 0 under DDP: rank 0 gathered everything
            return {}
        m = score(check_predictions(preds, f"validation epoch {epoch}"), gt)["metrics"]
        return {k: float(m[k]) for k in SUMMARY_KEYS if not math.isnan(float(m[k]))}

    return validate
