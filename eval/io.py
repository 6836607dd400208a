"""Atomic writes (temporary file in the destination folder, then rename) for the evaluation outputs."""
import io
import json

import numpy as np

from shards.atomic import atomic_write_bytes


def write_bytes(path: str, data: bytes) -> str:
    atomic_write_bytes(path, data)
    return path


def write_json(path: str, obj) -> str:
    return write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def write_npz(path: str, arrays: dict) -> str:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return write_bytes(path, buf.getvalue())
