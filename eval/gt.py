"""Ground truth of a split, read from its webdataset shards (`lbl` + `ids` components, shards/labels.py).

The split folder OUT/<split> (any fsspec URL) is read through its manifest (shards.index.open_split,
as the loader reads it). Only the small label members are read; the tar reader seeks over the JPEGs.
`load_images` fetches the JPEGs of a few samples for pictures.
"""
import posixpath
import tarfile

import fsspec
import numpy as np
from tqdm import tqdm

from shards.index import check_count, open_split
from shards.labels import IDS_SIZE, LABEL_SIZE, decode

from .metrics import hand_type_codes


def split_url(shards: str, split: str) -> str:
    """The folder (or fsspec URL) of `split` under a shard root."""
    return f"{str(shards).rstrip('/')}/{split}"


def _split_member(name: str):
    """'dir/key.ext' -> (key, ext); webdataset keys end at the first dot of the base name."""
    d, b = posixpath.split(name)
    key, _, ext = b.partition(".")
    return posixpath.join(d, key), ext


def _iter_members(url: str, wanted: set):
    """Yield (key, ext, bytes) for members whose extension is in `wanted`, seeking over the rest."""
    try:
        with fsspec.open(url, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                key, ext = _split_member(m.name)
                if ext in wanted:
                    yield key, ext, tar.extractfile(m).read()
    except tarfile.TarError as e:
        raise ValueError(f"{url}: not a readable tar ({e})") from None


def load_gt(split_url: str, progress: bool = True) -> dict:
    """Every sample's labels, sorted by annot_id: the decoded label fields (shards.labels.FIELDS),
    annot_id, image_id, hand_code (0 right, 1 left, 2 interacting), tar (index into `tars`), key."""
    split = open_split(split_url, check_files=False)
    tars = split.tars
    lbls, ids, tar_idx, keys = [], [], [], []
    name = posixpath.basename(split.url)
    for t, shard in enumerate(tqdm(split.shards, desc=f"reading {name} labels", unit="shard", disable=not progress)):
        url, pending = shard["tar"], {}
        for key, ext, data in _iter_members(url, {"lbl", "ids"}):
            parts = pending.setdefault(key, {})
            if ext in parts:
                raise ValueError(f"{url}: member {key}.{ext} appears more than once")
            parts[ext] = data
        for key, parts in pending.items():
            if set(parts) != {"lbl", "ids"}:
                raise ValueError(f"{url}: sample {key!r} lacks the {'ids' if 'lbl' in parts else 'lbl'} component")
            if len(parts["lbl"]) != 4 * LABEL_SIZE or len(parts["ids"]) != 8 * IDS_SIZE:
                raise ValueError(f"{url}: sample {key!r} has lbl/ids of {len(parts['lbl'])}/{len(parts['ids'])} bytes, "
                                 f"expected {4 * LABEL_SIZE}/{8 * IDS_SIZE}")
            lbls.append(parts["lbl"])
            ids.append(parts["ids"])
            tar_idx.append(t)
            keys.append(key)
        check_count(shard, len(pending))
    if not lbls:
        raise ValueError(f"{split.url}: the split holds no samples")
    lbl = np.frombuffer(b"".join(lbls), dtype="<f4").reshape(-1, LABEL_SIZE)
    idv = np.frombuffer(b"".join(ids), dtype="<i8").reshape(-1, IDS_SIZE)
    gt = decode(lbl, idv)
    order = np.argsort(gt["annot_id"], kind="stable")
    gt = {k: np.ascontiguousarray(v[order]) for k, v in gt.items()}
    gt["tar"] = np.asarray(tar_idx, dtype=np.int64)[order]
    gt["key"] = np.asarray(keys, dtype=object)[order]
    gt["tars"] = tars
    dup = np.flatnonzero(np.diff(gt["annot_id"]) == 0)
    if dup.size:
        raise ValueError(f"{split.url}: annot_id {int(gt['annot_id'][dup[0]])} appears more than once in the shards "
                         f"({dup.size} duplicates)")
    gt["hand_code"] = hand_type_codes(gt["hand_type"])
    return gt


def crop_source(gt: dict, rootnet: bool):
    """(bbox (N, 4), abs_depth (N, 2)) from the GT (default) or RootNet (the original's trans_test)."""
    if not rootnet:
        return gt["bbox"], gt["abs_depth"]
    missing = np.flatnonzero(gt["has_rootnet"].reshape(-1) < 0.5)
    if missing.size:
        raise ValueError(f"--rootnet: {missing.size} samples have no RootNet output in the shards "
                         f"(e.g. annot_id {gt['annot_id'][missing[:5]].tolist()}); rebuild them with --rootnet FILE")
    return gt["rootnet_bbox"], gt["rootnet_abs_depth"]


def align(gt_ids, pred_ids, source: str = "predictions") -> np.ndarray:
    """Index into the predictions for each GT sample (gt_ids sorted); missing, duplicated or unknown
    annot_id -> ValueError naming a few of them."""
    gt_ids = np.asarray(gt_ids).astype(np.int64).reshape(-1)
    p = np.asarray(pred_ids).reshape(-1)
    if p.dtype.kind not in "iu":
        raise ValueError(f"{source}: annot_id must be integers, got dtype {p.dtype}")
    p = p.astype(np.int64)
    order = np.argsort(p, kind="stable")
    ps = p[order]
    dup = np.unique(ps[1:][np.diff(ps) == 0])
    if dup.size:
        raise ValueError(f"{source}: {dup.size} duplicated annot_id, e.g. {dup[:5].tolist()}")
    unknown = np.setdiff1d(ps, gt_ids, assume_unique=True)
    if unknown.size:
        raise ValueError(f"{source}: {unknown.size} annot_id not in the split, e.g. {unknown[:5].tolist()}")
    missing = np.setdiff1d(gt_ids, ps, assume_unique=True)
    if missing.size:
        raise ValueError(f"{source}: {missing.size} annot_id of the split have no prediction, e.g. {missing[:5].tolist()}")
    return order[np.searchsorted(ps, gt_ids)]


def load_images(gt: dict, rows) -> dict:
    """JPEG bytes of the samples at `rows` of `gt` -> {row: bytes}; reads only the tars involved."""
    rows = [int(r) for r in rows]
    out = {}
    for t in sorted({int(gt["tar"][r]) for r in rows}):
        want = {gt["key"][r]: r for r in rows if gt["tar"][r] == t}
        for key, ext, data in _iter_members(gt["tars"][t], {"jpg", "jpeg"}):
            if key in want:
                out[want.pop(key)] = data
                if not want:
                    break
    lost = [int(gt["annot_id"][r]) for r in rows if r not in out]
    if lost:
        raise ValueError(f"no jpg component in the shards for annot_id {lost[:5]}")
    return out
