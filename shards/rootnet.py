"""RootNet's output for a split (docs/conventions.md §1.6): where it is, and its bbox and root depths
joined to the split's annotations by annot_id."""
from __future__ import annotations

import numpy as np

from . import fsio
from .checked import floats
from .jsonstream import stream_items


def find_rootnet(rootnet: str | None, root: str, templates, fps: int) -> str | None:
    """The RootNet file to use: None for none, a given path (must exist), or with "auto" the first of
    the data set's usual names (templates, relative to root) that exists."""
    if rootnet in (None, "", "none"):
        return None
    if rootnet != "auto":
        if not fsio.isfile(rootnet):
            raise FileNotFoundError(f"RootNet file {rootnet} does not exist")
        return fsio.root_path(rootnet)
    suffix = "_30fps" if fps == 30 else ""
    for t in templates:
        p = fsio.normpath(fsio.join(root, t.format(fps=suffix)))
        if fsio.isfile(p):
            return p
    return None


def load_rootnet(path: str, annot_id: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """-> (bbox (N, 4), abs_depth (N, 2) [right, left], problems {row: reason}) for the annotations
    `annot_id` (N,); rows without an entry are NaN and listed in problems."""
    n = len(annot_id)
    bbox = np.full((n, 4), np.nan, np.float32)
    depth = np.full((n, 2), np.nan, np.float32)
    order = np.argsort(annot_id)
    for i, e in enumerate(stream_items(path, "item")):
        try:
            aid = int(e["annot_id"])
            b = floats(e["bbox"], (4,), "bbox")
            d = np.asarray(e["abs_depth"], dtype=np.float64).reshape(-1)
            d = floats(np.repeat(d, 2) if d.size == 1 else d, (2,), "abs_depth")
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: entry {i}: {err}") from None
        p = np.searchsorted(annot_id[order], aid)
        if p < n and annot_id[order][p] == aid:
            bbox[order[p]], depth[order[p]] = b, d
    base = fsio.basename(path)
    problems = {int(r): f"{base}: no RootNet entry for annotation {annot_id[r]}" for r in np.flatnonzero(np.isnan(bbox[:, 0]))}
    return bbox, depth, problems
