"""Streaming JSON parsing for large annotation files (ijson, C backend): items arrive one at a
time, so a 4 GB data.json never sits in memory whole.

A path may be local or any fsspec URL (shards.fsio). Errors name the file. Python's json module
writes NaN / Infinity literals that are not JSON; when a file has them, the parse restarts with
those literals read as null (-> NaN in numeric arrays), so the reader reports the annotation and
field instead of a byte offset.
"""
import re

import ijson
from tqdm import tqdm

from . import fsio

_NAN = re.compile(rb"([\[,:]\s*)-?(?:NaN|Infinity)")
_CHUNK = 1 << 20


class _File:
    """Binary reader that counts bytes for a progress bar and optionally rewrites NaN literals."""

    def __init__(self, path, bar=None, fix_nan=False):
        self.f, self.bar, self.fix_nan, self.held = fsio.open_input(path), bar, fix_nan, b""

    def read(self, n=-1):
        if n == 0:  # ijson probes the type with read(0)
            return b""
        data = self.f.read(_CHUNK if n is None or n < 0 else min(n, _CHUNK))
        if self.bar is not None:
            self.bar.update(len(data))
        if not self.fix_nan:
            return data
        buf = self.held + data
        if not data:  # end of file: flush what was held back
            self.held = b""
            return _NAN.sub(rb"\1null", buf)
        # Hold back from the last delimiter on, so a literal is never cut in two.
        cut = max(buf.rfind(b","), buf.rfind(b"["), buf.rfind(b":"))
        if cut <= 0:
            self.held = buf
            return self.read(n)
        self.held = buf[cut:]
        return _NAN.sub(rb"\1null", buf[:cut])

    def close(self):
        self.f.close()


def _stream(path, prefix, kv, progress):
    try:
        size = fsio.stat(path)[0]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: annotation file not found") from None
    done, fix_nan = 0, False
    while True:
        bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"parse {progress}",
                   leave=False) if progress else None
        f = _File(path, bar, fix_nan)
        try:
            it = (ijson.kvitems if kv else ijson.items)(f, prefix, use_float=True)
            for i, item in enumerate(it):
                if i >= done:  # after a restart, skip what was already handed out
                    done += 1
                    yield item
            return
        except ijson.JSONError as e:
            if fix_nan:
                raise ValueError(f"{path}: not valid JSON: {e}") from None
            fix_nan = True
        finally:
            f.close()
            if bar is not None:
                bar.close()


def stream_items(path: str, prefix: str, progress: str | bool = False):
    """Yield the values under `prefix` (ijson syntax, e.g. "annotations.item")."""
    return _stream(path, prefix, False, progress)


def stream_kvitems(path: str, prefix: str, progress: str | bool = False):
    """Yield (key, value) pairs of the object at `prefix` ("" = the top-level object)."""
    return _stream(path, prefix, True, progress)
