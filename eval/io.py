"""Atomic writes (temporary file in the destination folder, then rename) for the evaluation outputs."""
import io
import json
import os
import tempfile

import numpy as np


def write_bytes(path: str, data: bytes) -> str:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str, obj) -> str:
    return write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def write_npz(path: str, arrays: dict) -> str:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return write_bytes(path, buf.getvalue())
