"""Atomic writes of training files (shards.atomic does the temp-file-then-rename)."""
from __future__ import annotations

import torch

from shards.atomic import atomic_write, atomic_write_bytes


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj, path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))
