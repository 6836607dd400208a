"""The converter's inputs (annotation files, images) from a local path or any fsspec URL: the one
place that decides how a path is read.

A local path (or a file:// URL, read as the path it names) takes plain os / open(), so the common
case pays nothing. Every other URL (s3://bucket/InterHand2.6M, gs://..., a cluster's shared store)
goes through fsspec, with path arithmetic on the URL's path part (posixpath; os.path.normpath would
fold 's3://' into 's3:/'). Images are stat'ed in bulk by listing their folders (one request per
folder on an object store instead of one per image).
"""
from __future__ import annotations

import datetime
import hashlib
import os
import posixpath

import fsspec
import numpy as np


def is_url(path) -> bool:
    """True for a URL read through fsspec (anything with '://' except file://)."""
    p = str(path)
    return "://" in p and not p.startswith("file://")


def _local(path) -> str:
    return os.fspath(path).removeprefix("file://")


def root_path(root) -> str:
    """A data set root as the readers keep it: an absolute local path, or the URL without a trailing '/'."""
    return str(root).rstrip("/") if is_url(root) else os.path.abspath(_local(root))


def join(base, *parts) -> str:
    return "/".join([str(base).rstrip("/"), *parts]) if is_url(base) else os.path.join(_local(base), *parts)


def normpath(path) -> str:
    if not is_url(path):
        return os.path.normpath(_local(path))
    proto, rest = str(path).split("://", 1)
    return f"{proto}://{posixpath.normpath(rest)}"


def sep(path) -> str:
    return "/" if is_url(path) else os.sep


def basename(path) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1] if is_url(path) else os.path.basename(path)


def open_input(path):
    """A binary file object for reading (close it, or use it in `with`)."""
    return fsspec.open(path, "rb").open() if is_url(path) else open(_local(path), "rb")


def read_bytes(path) -> bytes:
    if not is_url(path):
        with open(_local(path), "rb") as f:
            return f.read()
    fs, p = fsspec.core.url_to_fs(path)
    return fs.cat_file(p)


def isfile(path) -> bool:
    if not is_url(path):
        return os.path.isfile(_local(path))
    fs, p = fsspec.core.url_to_fs(path)
    return fs.isfile(p)


def mtime_ns(info: dict) -> int:
    """Modification time in ns from an fsspec info dict (local 'mtime', S3 'LastModified', GCS
    'updated', ...); 0 when the file system gives none."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified", "created"):
        v = info.get(key)
        if v is None:
            continue
        if isinstance(v, str):
            try:
                v = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                continue
        if isinstance(v, datetime.datetime):
            if v.tzinfo is None:
                v = v.replace(tzinfo=datetime.timezone.utc)
            return int(v.timestamp() * 1e6) * 1000
        if isinstance(v, (int, float)):
            return int(v * 1e9)
    return 0


def stat(path) -> tuple[int, int]:
    """(size, mtime_ns) of a file; OSError (FileNotFoundError) when it is not there."""
    if not is_url(path):
        st = os.stat(_local(path))
        return st.st_size, st.st_mtime_ns
    fs, p = fsspec.core.url_to_fs(path)
    info = fs.info(p)
    return int(info["size"]), mtime_ns(info)


def stat_many(paths) -> np.ndarray:
    """(2, n) int64: size and mtime_ns of each path; size -1 where the file is missing. URLs: one
    listing per parent folder."""
    out = np.empty((2, len(paths)), np.int64)
    if not paths or not is_url(paths[0]):
        for i, p in enumerate(paths):
            try:
                st = os.stat(_local(p))
                out[:, i] = st.st_size, st.st_mtime_ns
            except OSError:
                out[:, i] = -1, 0
        return out
    fs, _ = fsspec.core.url_to_fs(paths[0])
    folders = {}
    for i, p in enumerate(paths):
        d, name = p.rsplit("/", 1)
        folders.setdefault(d, []).append((i, name))
    for d, items in folders.items():
        try:
            listing = {e["name"].rstrip("/").rsplit("/", 1)[-1]: e
                       for e in fs.ls(fsspec.core.url_to_fs(d)[1], detail=True) if e.get("type") != "directory"}
        except FileNotFoundError:
            listing = {}
        for i, name in items:
            e = listing.get(name)
            out[:, i] = (int(e["size"]), mtime_ns(e)) if e is not None else (-1, 0)
    return out


def file_sha256(fs, path, bar=None) -> str:
    """sha256 hex digest of a file on an fsspec file system, read in 8 MiB blocks (a tqdm `bar`, if
    given, advances by the bytes read)."""
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
            if bar is not None:
                bar.update(len(block))
    return h.hexdigest()
