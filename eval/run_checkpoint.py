"""`python -m eval --checkpoint ...`: the model (model.load_checkpoint) over the split through the
pipeline (pipeline.build_loader, evaluation mode), one part per rank under torchrun."""

from pipeline.distributed import setup_distributed

from .gt import split_url
from .predict import predict


def predict_checkpoint(checkpoint: str, shards: str, split: str, *, device=None, batch_size: int = 32,
                       rootnet: bool = False, progress: bool = True, cache_dir: str | None = None,
                       verify: bool = True) -> dict | None:
    """Form (a) prediction arrays with their output space on rank 0 (None on other ranks under torchrun)."""
    from model import load_checkpoint
    from pipeline import build_loader

    d = setup_distributed(device)
    ck = load_checkpoint(checkpoint, map_location=d.device)
    loader = build_loader(split_url(shards, split), ck.config, batch_size=batch_size, train=False,
                          device=d.device, rank=d.rank, world_size=d.world_size, use_rootnet=rootnet,
                          progress=progress, cache_dir=cache_dir, verify=verify)
    return predict(ck.model, loader, d.device, progress=progress)
