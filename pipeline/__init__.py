"""Stage 2: shards -> batches on the training device (DALI graph + batched torch targets).

`pipeline.targets` (labels -> training targets) is torch only. The loader needs NVIDIA DALI and is
imported on first use (`pipeline.build_loader`, `pipeline.Loader`), so a machine without DALI can
still import this package, build targets and run the torch-only benchmarks.
"""
__all__ = ["Loader", "build_loader"]


def __getattr__(name):
    if name in __all__:
        from . import loader
        return getattr(loader, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
