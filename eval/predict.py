"""Inference over an evaluation loader -> form (a) prediction arrays (eval.score), DDP-aware.

Under torchrun each rank predicts its part of the split (the pipeline gives every sample exactly once
across ranks); rank 0 gathers the parts and keeps one row per annot_id.
"""
import numpy as np
import torch
from tqdm import tqdm

from pipeline.distributed import gather_to_main

from .convert import geometry_arrays


@torch.inference_mode()
def predict(model, loader, device, decode=None, progress: bool = True) -> dict:
    """Run `model` over `loader` (eval batches: images, annot_id, inv_trans) on `device`, in float32.

    Returns numpy arrays: annot_id (N,), joint_coord (N, 42, 3) bins, rel_root_depth (N,) bins,
    hand_type (N, 2), inv_trans (N, 2, 3), and the output space they are in (the loader's model
    config: eval.convert.GEOMETRY_KEYS) - on every rank without DDP; under DDP the gathered,
    de-duplicated arrays on rank 0 and None elsewhere. decode: heatmaps -> bins (default: the
    model package's argmax, model.decode).
    """
    if decode is None:
        from model import decode

    model.eval()
    parts = {k: [] for k in ("annot_id", "joint_coord", "rel_root_depth", "hand_type", "inv_trans")}
    rank0 = loader.rank == 0
    for batch in tqdm(loader, desc="predicting", unit="batch", disable=not (progress and rank0)):
        images = batch["images"].to(device, non_blocking=True)
        out = model(images)
        # Kept on the device until the end: no host sync per batch.
        parts["joint_coord"].append(decode(out["heatmaps"]).float())
        parts["rel_root_depth"].append(out["rel_root_depth"].float().reshape(-1))
        parts["hand_type"].append(out["hand_type"].float())
        parts["inv_trans"].append(batch["inv_trans"].to(device).double())
        parts["annot_id"].append(batch["annot_id"].to(device).long())
    if not parts["annot_id"]:
        local = {"annot_id": np.zeros(0, np.int64), "joint_coord": np.zeros((0, 42, 3), np.float32),
                 "rel_root_depth": np.zeros(0, np.float32), "hand_type": np.zeros((0, 2), np.float32),
                 "inv_trans": np.zeros((0, 2, 3))}
    else:
        local = {k: torch.cat(v).cpu().numpy() for k, v in parts.items()}
    gathered = gather_to_main(local)
    if gathered is None:
        return None
    local = unique_rows({k: np.concatenate([g[k] for g in gathered]) for k in local})
    return {**local, **geometry_arrays(loader.config)}


def unique_rows(preds: dict) -> dict:
    """Keep the first row of each annot_id (a DDP sampler or a padded batch may repeat samples),
    sorted by annot_id."""
    _, first = np.unique(preds["annot_id"], return_index=True)
    return {k: v[first] for k, v in preds.items()}
