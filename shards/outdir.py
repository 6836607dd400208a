"""The output folder's own files beside the shards (shards.writer's module doc has the layout):
temporary names, manifest.json and filestat.json written through them, the earlier run's state read
back, and removal of what an earlier run wrote that the new plan does not keep. Nothing else in the
folder is ever touched. Any fsspec file system.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time

import fsspec

from . import fsio

FILESTAT = "filestat.json"


def tmp_name(path: str) -> str:
    """A temporary name beside `path`, unique to this process and call (a worker of an interrupted run
    that is still finishing cannot collide with a new run): `.<name>.<pid>-<random>.tmp`."""
    d, n = path.rsplit("/", 1)
    return f"{d}/.{n}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


def file_stat(fs, path) -> tuple[int, int]:
    """(size, mtime_ns) of an output file; FileNotFoundError when it is not there."""
    if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    info = fs.info(path)
    return int(info["size"]), fsio.mtime_ns(info)


def write_json(fs, path, obj):
    tmp = tmp_name(path)
    with fs.open(tmp, "wb") as f:
        f.write(json.dumps(obj, indent=1).encode())
    fs.mv(tmp, path)


def read_json(fs, path):
    if not fs.exists(path):
        return None
    try:
        with fs.open(path, "rb") as f:
            return json.load(f)
    except ValueError:
        return None  # a torn or foreign file: start over


def remove_stale(fs, out_dir, split, old: dict | None, keep: set):
    """Delete what an earlier run of this converter wrote and the new plan does not keep: the shard
    files its manifest lists, and our temporary files. Nothing else in the folder is touched."""
    ours = {e[k] for e in (old or {}).get("shards") or () if isinstance(e, dict) for k in ("tar", "idx") if k in e}
    tmp = re.compile(rf"^\.({re.escape(split)}-\d{{6}}\.(tar|idx)|manifest\.json|filestat\.json)\.\d+-[0-9a-f]{{8}}\.tmp$")
    try:
        listed = fs.ls(out_dir, detail=False)
    except FileNotFoundError:  # object stores have no empty folders: nothing written there yet
        return
    for p in listed:
        name = p.rsplit("/", 1)[-1]
        if (name in ours and name not in keep) or tmp.match(name):
            fs.rm(p)


def write_state(fs, out_dir, man, filestat):
    """The manifest, then the file records of its shards (filestat.json: shards.writer's module doc)."""
    write_json(fs, out_dir + "/manifest.json", man)
    names = {e[k] for e in man["shards"] if e is not None and e["count"] for k in ("tar", "idx")}
    write_json(fs, out_dir + "/" + FILESTAT, {"format": "interhand-shards-filestat", "written_ns": time.time_ns(),
                                               "files": {n: filestat[n] for n in sorted(names) if n in filestat}})
