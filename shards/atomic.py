"""Atomic local file writes, shared by every stage: write a temporary file in the destination
folder, then os.replace it onto the final name, so an interrupted run never leaves a half-written
file under the real name. Temporary names are `.<name>.<random>.tmp`."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write: Callable[[BinaryIO], object], fsync: bool = True) -> Path:
    """Call `write(file)` on a temporary file beside `path`, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path, data: bytes, fsync: bool = True) -> Path:
    return atomic_write(path, lambda f: f.write(data), fsync=fsync)


def atomic_write_text(path, text: str, fsync: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode(), fsync=fsync)


def atomic_write_json(path, obj, indent: int | None = 2) -> Path:
    """JSON with a final newline; NaN/inf are refused (they are not JSON)."""
    import json

    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def atomic_write_npz(path, arrays: dict, compressed: bool = False) -> Path:
    import numpy as np

    save = np.savez_compressed if compressed else np.savez
    return atomic_write(path, lambda f: save(f, **arrays))


def atomic_savefig(fig, path, **savefig_kwargs) -> Path:
    """A matplotlib figure as PNG (or the format savefig_kwargs name)."""
    savefig_kwargs.setdefault("format", "png")
    return atomic_write(path, lambda f: fig.savefig(f, **savefig_kwargs))


def atomic_write_files(out, writers: dict) -> list:
    """All or nothing for several files: call writer(path) for each name into a fresh folder inside
    `out`, give every file the usual mode (0666 & ~umask) and fsync it, then move them all onto
    out/<name>. On any failure no name in `out` is touched (and an `out` this call created is
    removed); an OSError of a writer carries `output`, the final path it was for."""
    import shutil

    out = str(out)
    created = not os.path.isdir(out)
    os.makedirs(out, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".stage-", suffix=".tmp", dir=out)
    try:
        for name, write in writers.items():
            try:
                write(os.path.join(stage, name))
            except OSError as e:
                e.output = os.path.join(out, name)
                raise
        mode = 0o666 & ~_umask()
        for name in writers:
            fd = os.open(os.path.join(stage, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(os.path.join(stage, name), mode)
        paths = []
        for name in writers:
            os.replace(os.path.join(stage, name), os.path.join(out, name))
            paths.append(os.path.join(out, name))
        return paths
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
