"""A local copy of a split kept in object storage, for reading at local speed.

    local = cache_split("s3://bucket/shards/train", "/nvme/cache")  # /nvme/cache/s3/bucket/shards/train

DALI reads s3:// itself (pipeline.loader), but with one ranged GET per tar member, in sequence: about
three requests per sample, so its rate is bound by the store's latency (72 samples/s against a local
moto server where the same split read locally gives 486/s). Training at GPU rates wants the shards on a
local disk first: cache_split downloads each tar and index file of a split once (whole objects, several
at a time), checks its sha256 against the split's manifest before it gets its name, and writes the
manifest last. A later call re-reads only the remote manifest: files it verified before and whose size
and mtime are as it recorded them (.cache.json) are kept, any other file is fetched again. One process
at a time per folder (an flock on .lock), so the ranks of a node download once and the others wait.
Works for any fsspec URL (s3://, gs://, ...); keys come from the file system's usual sources and are
never written here (the folder name holds only the URL's bucket and path).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import posixpath
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import fsspec
from tqdm import tqdm

from .atomic import atomic_write_bytes, atomic_write_json
from .index import MANIFEST, open_split

RECORD = ".cache.json"  # {"files": {name: [size, mtime_ns, sha256]}}: verified files as they were then
_BLOCK = 8 << 20


def default_cache_dir() -> str:
    """$XDG_CACHE_HOME/interhand-fast/shards (~/.cache/... when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "interhand-fast", "shards")


def cache_path(url: str, cache_dir: str) -> str:
    """Where the split at `url` is kept under cache_dir: <protocol>/<bucket>/<path>, with anything
    that could leave the folder ('..', user@host parts) replaced."""
    protocol, _, rest = str(url).rstrip("/").partition("://")
    rest = rest.rsplit("@", 1)[-1]  # never keep a user:password@ part of a URL in a path
    parts = [re.sub(r"[^A-Za-z0-9._=-]", "_", p) for p in rest.split("/") if p not in ("", ".", "..")]
    return os.path.join(cache_dir, re.sub(r"[^a-z0-9]", "_", protocol.lower()), *parts)


@contextmanager
def _locked(folder: str):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _stat(path: str):
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def _download(fs, remote: str, local: str, sha256: str, size: int | None, bar) -> list:
    """remote -> local through a temporary name; the sha256 (and size) must be the manifest's."""
    tmp = f"{posixpath.dirname(local)}/.{posixpath.basename(local)}.{os.getpid()}.tmp"
    h, n = hashlib.sha256(), 0
    try:
        with fs.open(fsspec.core.url_to_fs(remote)[1], "rb", block_size=_BLOCK) as src, open(tmp, "wb") as dst:
            for block in iter(lambda: src.read(_BLOCK), b""):
                h.update(block)
                dst.write(block)
                n += len(block)
                bar.update(len(block))
        if h.hexdigest() != sha256 or (size is not None and n != size):
            raise ValueError(f"{remote}: {n} bytes with sha256 {h.hexdigest()}, its manifest says "
                             f"{size if size is not None else '?'} bytes, sha256 {sha256} (changed after the "
                             "conversion or damaged in transit); nothing was cached under its name")
        os.replace(tmp, local)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return [*_stat(local), sha256]


def _download_all(fs, url: str, todo: dict, files: dict, workers: int, progress: bool) -> None:
    """todo: {name: (remote, sha256, size, local path)}; each verified file's record goes into `files`."""
    if not todo:
        return
    total = sum(fs.size(fsspec.core.url_to_fs(remote)[1]) for remote, *_ in todo.values())
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"caching {url}", disable=not progress) as bar, \
            ThreadPoolExecutor(max(1, min(workers, len(todo)))) as pool:
        jobs = {n: pool.submit(_download, fs, remote, local, sha, size, bar)
                for n, (remote, sha, size, local) in todo.items()}
        try:
            for n, job in jobs.items():
                files[n] = job.result()
        finally:
            for job in jobs.values():
                job.cancel()


def cache_split(url: str, cache_dir: str | None = None, *, workers: int = 8, progress: bool = True) -> str:
    """The local folder holding a verified copy of the split at `url` (see the module docstring)."""
    split = open_split(url)  # the remote manifest, complete and consistent, index headers checked
    dest = cache_path(split.url, cache_dir or default_cache_dir())
    fs, _ = fsspec.core.url_to_fs(split.url)
    wanted = {}  # local name -> (remote URL, sha256, size)
    for s in split.shards:
        for key, sha, size in (("tar", "sha256", s.get("bytes")), ("idx", "idx_sha256", None)):
            if not s.get(sha):
                raise ValueError(f"{split.url}/{MANIFEST}: shard {posixpath.basename(s[key])} has no {sha}; "
                                 "re-run the conversion with this version")
            wanted[posixpath.basename(s[key])] = (s[key], s[sha], size)
    with _locked(dest):
        rec_path = os.path.join(dest, RECORD)
        try:
            with open(rec_path) as f:
                files = json.load(f).get("files", {})
        except (OSError, ValueError):
            files = {}
        keep = {n for n, (_, sha, _) in wanted.items() if os.path.exists(os.path.join(dest, n))
                and files.get(n) == [*_stat(os.path.join(dest, n)), sha]}
        todo = [n for n in wanted if n not in keep]
        for n in set(files) - set(wanted):  # files of an earlier version of the split
            if os.path.exists(os.path.join(dest, n)):
                os.unlink(os.path.join(dest, n))
        files = {n: files[n] for n in keep}
        man_path = os.path.join(dest, MANIFEST)
        if todo and os.path.exists(man_path):
            os.unlink(man_path)  # until every file is verified the folder is no split
        try:
            _download_all(fs, split.url, {n: (*wanted[n], os.path.join(dest, n)) for n in todo}, files,
                          workers, progress)
        finally:
            atomic_write_json(rec_path, {"files": files})
        # the manifest the files were checked against (not re-read: the remote may change meanwhile)
        atomic_write_bytes(man_path, json.dumps(split.manifest, indent=1).encode())
    return dest
