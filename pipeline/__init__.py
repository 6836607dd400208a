"""Stage 2: shards -> batches on the training device (DALI graph + batched torch targets)."""
from .loader import Loader, build_loader

__all__ = ["Loader", "build_loader"]
