"""`python -m eval --checkpoint ...`: the model (model.load_checkpoint) over the split through the
pipeline (pipeline.build_loader, evaluation mode), one part per rank under torchrun."""
import os

import numpy as np
import torch
import torch.distributed as dist

from .convert import BBOX_3D_SIZE, BBOX_3D_SIZE_ROOT
from .predict import predict


def _setup(device):
    """(rank, world_size, torch.device) from the torchrun environment; joins the process group."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device("cuda", local) if device == "cuda" else torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return rank, world, dev


def predict_checkpoint(args) -> dict | None:
    """Form (a) prediction arrays (+ input_size, heatmap_size, root_bins) on rank 0, None elsewhere."""
    from model import decode, load_checkpoint
    from pipeline.loader import build_loader

    rank, world, device = _setup(args.device)
    ck = load_checkpoint(args.checkpoint, map_location=device)
    cfg = ck.config
    if (cfg.depth_range_mm, cfg.root_depth_range_mm) != (BBOX_3D_SIZE, BBOX_3D_SIZE_ROOT):
        raise ValueError(f"{args.checkpoint}: depth ranges {cfg.depth_range_mm}/{cfg.root_depth_range_mm} mm; the "
                         f"evaluation (SPEC 6) uses {BBOX_3D_SIZE}/{BBOX_3D_SIZE_ROOT} mm")
    split_dir = os.path.join(args.shards, args.split)
    loader = build_loader(split_dir, batch_size=args.batch_size, train=False, device=device,
                          input_size=cfg.input_size, heatmap_size=cfg.heatmap_size, root_bins=cfg.root_bins,
                          rank=rank, world_size=world, use_rootnet=args.rootnet)
    preds = predict(ck.model, loader, device, decode=decode, progress=not args.quiet)
    if world > 1:
        dist.barrier()
    if preds is None:
        return None
    preds["input_size"] = np.array([cfg.input_size, cfg.input_size])
    preds["heatmap_size"] = np.array(cfg.heatmap_size)
    preds["root_bins"] = np.array(cfg.root_bins)
    return preds
