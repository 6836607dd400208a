"""Streaming conversion of one data set split into webdataset shards (the offline step).

Run it as `python -m shards --source interhand --root DATA --out OUT` (see shards/__main__.py),
or call convert_split(...). Read the result with shards.index (list_shards, iter_shard_samples)
or DALI's fn.readers.webdataset.

Layout of OUT/<split>/ (OUT: a local path or any fsspec URL):
  <split>-000000.tar, ...  plain ustar archives, one sample per annotation, samples shuffled
        globally with a fixed seed. Sample key = annot_id as 9+ digits (e.g. "000012345");
        members in this order: <key>.jpg  the original image bytes, unchanged (JPEG; RHD's
        are PNG files under the same component name - DALI's decoder sniffs the format),
        <key>.json  every record field except image_path (shards.reader; arrays as lists,
        float32 values, rootnet_* null when no RootNet file; mano / mano_cam: the hands' MANO
        parameters in the world and the sample's camera frame, shards/mano/records.py), <key>.lbl  float32 labels
        (shards.labels), <key>.ids  int64 [annot_id, image_id]. Fixed mtime/uid/mode: the same
        input and seed give byte-identical shards.
  <split>-000000.idx, ...  DALI index beside each tar (the format of DALI's wds2idx).
  manifest.json  {"format": "interhand-shards", "version", "complete", "source", "split",
        "options": {...}, "inputs": {file: [size, mtime_ns]}, "plan": sha256 of the sample order
        and shard boundaries, "counts": {"annotations", "total" (written), "hand_type": {right,
        left, interacting}, "skipped", "skipped_by_kind"}, "skipped": [{"annot_id", "kind",
        "reason"}], "shards": [{"tar", "idx", "count", "bytes", "sha256", "idx_sha256",
        "hand_type": {...}, "skipped": [...]}]}. Shards with count 0 have no files.
  filestat.json  {"format": "interhand-shards-filestat", "written_ns", "files": {name: [size,
        mtime_ns, sha256]}}: how each finished shard file looked on this file system when it was
        written or last checked (kept apart from the manifest, which stays byte-identical for the
        same input and seed).
Writes go to a temporary name (unique per process) and are renamed. A re-run with the same arguments
keeps the shards the manifest lists whose images are as they were (size + mtime of each, the shard's
"images" fingerprint) and whose files are intact, and writes only the rest; it removes only files an
earlier run wrote (listed in its manifest, or its temporary names). Intact: size and mtime as
filestat.json recorded them (a file changed within RACY_NS of that record, or on a file system
without mtimes, is checked by content as git does), else the sha256 of its bytes; verify_existing
(--verify-existing) always reads and hashes them. Each image is checked (verify) and its size
compared with data.json's width/height. The root may be a local path or any fsspec URL (shards.fsio).
Worker processes on this machine write the shards (forked: they share the parsed split); with
cluster="ray" (shards.cluster) Ray tasks across a cluster's nodes write them, byte for byte the same.
"""
import gc
import hashlib
import multiprocessing as mp
import os
import signal
import time

import fsspec
import numpy as np
import orjson
from tqdm import tqdm

from . import fsio
from .datacheck import check_image, image_size
from .index import ShardTar
from .outdir import FILESTAT, file_stat, read_json, remove_stale, tmp_name, write_state
from .reader import AnnotationError, load_split

CONVERTER_VERSION = "4"  # 2: records carry mano / mano_cam; 3: per-shard image fingerprints, size checks;
# 4: json members written by orjson (shortest float32 digits)
EST_META_BYTES = 4 * 512 + 6144  # headers + json + lbl + ids per sample, for sizing shards by bytes
VERIFY = ("full", "header", "none")
_STATE = {}  # per process: the split data and options, inherited by forked workers (no pickling)
RACY_NS = 1_000_000_000  # a file modified this close to its record is checked by content (mtime granularity)


def _json_bytes(rec) -> bytes:
    """The record's json member. orjson writes numpy arrays directly and each float32 in its shortest
    form that reads back to the same float32 (12x faster than json.dumps over .tolist(), 40 % fewer
    bytes). It would write NaN as null: the reader has refused non-finite values already
    (shards/reader.py, shards/mano/data.py), so none reaches here."""
    return orjson.dumps({k: v for k, v in rec.items() if k != "image_path"}, default=_contiguous,
                        option=orjson.OPT_SERIALIZE_NUMPY)


def _contiguous(obj):
    """orjson's fallback: a strided numpy view becomes a C-contiguous copy (then written as above)."""
    if isinstance(obj, np.ndarray) and not obj.flags.c_contiguous:
        return np.ascontiguousarray(obj)
    raise TypeError(f"cannot write {type(obj).__name__} into a shard's json member")


def _image_problem(rec, jpg, verify) -> str | None:
    """Why the image of a record is unusable (its bytes, then its size against data.json), or None."""
    reason = check_image(jpg, verify)
    if reason or verify == "none":
        return reason
    size = image_size(jpg)
    if size is not None and size != (rec["width"], rec["height"]):
        return f"the image is {size[0]}x{size[1]}, the annotation says {rec['width']}x{rec['height']}"
    return None


def _write_shard(job):
    """Worker: build, check and write one whole shard (temp names, then rename)."""
    no, rows, images_fp = job
    st = _STATE
    data, fs, out_dir, split = st["data"], st["fs"], st["out_dir"], st["split"]
    name = f"{split}-{no:06d}"
    tar_path, idx_path = f"{out_dir}/{name}.tar", f"{out_dir}/{name}.idx"
    tar_tmp, idx_tmp = tmp_name(tar_path), tmp_name(idx_path)
    skipped, counts, done = [], {"right": 0, "left": 0, "interacting": 0}, 0
    with fs.open(tar_tmp, "wb") as f:
        tar = ShardTar(f)
        for s in range(0, len(rows), 256):
            recs, lbls, ids = data.batch(rows[s:s + 256])
            for rec, lbl, id_ in zip(recs, lbls, ids):
                try:
                    jpg = fsio.read_bytes(rec["image_path"])
                    reason = _image_problem(rec, jpg, st["verify"])
                except OSError as e:
                    reason = f"cannot read image ({e.strerror or e})"
                if reason:
                    msg = f"{rec['image_path']}: {reason}"
                    if st["strict"]:
                        raise ValueError(f"annotation {rec['annot_id']}: {msg}")
                    skipped.append({"annot_id": rec["annot_id"], "kind": "bad image", "reason": msg})
                    continue
                tar.add(f"{rec['annot_id']:09d}", [("jpg", jpg), ("json", _json_bytes(rec)), ("lbl", lbl.tobytes()),
                                                   ("ids", id_.tobytes())])
                counts[rec["hand_type"]] += 1
            if st.get("counter") is not None:
                with st["counter"].get_lock():
                    st["counter"].value += min(256, len(rows) - s)
            done += min(256, len(rows) - s)
        size, sha = tar.finish()
    entry = {"tar": name + ".tar", "idx": name + ".idx", "count": len(tar.samples), "bytes": size,
             "sha256": sha, "idx_sha256": None, "images": images_fp, "hand_type": counts, "skipped": skipped}
    if not tar.samples:  # nothing usable: no files (DALI rejects an empty tar)
        fs.rm(tar_tmp)
        entry["bytes"], entry["sha256"] = 0, None
        return no, entry, {}
    idx = tar.index_text().encode()
    entry["idx_sha256"] = hashlib.sha256(idx).hexdigest()
    with fs.open(idx_tmp, "wb") as f:
        f.write(idx)
    fs.mv(idx_tmp, idx_path)
    fs.mv(tar_tmp, tar_path)
    return no, entry, {entry["tar"]: [*file_stat(fs, tar_path), sha], entry["idx"]: [*file_stat(fs, idx_path), entry["idx_sha256"]]}


def _verify_shard(job):
    """Worker: is a shard listed in the old manifest still intact? job: (entry, {file name: [size,
    mtime_ns, sha256] as filestat.json recorded it}, the record's written_ns). Returns (intact, the
    files' records now)."""
    entry, recorded, written_ns = job
    fs, d = _STATE["fs"], _STATE["out_dir"]
    if entry["count"] == 0:
        return True, {}
    now = {}
    for key, sha, size in (("tar", entry["sha256"], entry["bytes"]), ("idx", entry["idx_sha256"], None)):
        path = f"{d}/{entry[key]}"
        try:
            st = [*file_stat(fs, path), sha]
        except FileNotFoundError:
            return False, {}
        if size is not None and st[0] != size:
            return False, {}
        trusted = (not _STATE.get("verify_existing") and st == recorded.get(entry[key])
                   and 0 < st[1] < written_ns - RACY_NS)
        if not trusted and fsio.file_sha256(fs, path) != sha:
            return False, {}
        now[entry[key]] = st
    return True, now


def _stat_images(rows):
    """Worker: (size, mtime_ns) of the image files of annotation rows, (2, len(rows)); size -1 when missing."""
    data = _STATE["data"]
    return fsio.stat_many([data.image_path(int(data.ann_img[r])) for r in rows])


def _images_fingerprint(annot_id, stats) -> str:
    """sha256 of a shard's images as found on disk (annot_id, size, mtime): a re-run rewrites a shard
    whose images changed, were fixed or restored, without reading them."""
    return hashlib.sha256(np.stack([annot_id, *stats]).astype("<i8").tobytes()).hexdigest()


def plan_shards(sizes, shard_bytes: int | None, shard_count: int | None) -> list[int]:
    """Split a sequence of per-sample byte estimates into shards; returns boundaries [0, ..., n]."""
    bounds, acc, n = [0], 0, 0
    for i, s in enumerate(sizes):
        full = (shard_count and n >= shard_count) or (shard_bytes and n and acc + s > shard_bytes)
        if full:
            bounds.append(i)
            acc, n = 0, 0
        acc, n = acc + int(s), n + 1
    if n:
        bounds.append(len(sizes))
    return bounds


def trim_heap():
    """Hand the memory the parse freed back to the OS (glibc keeps it otherwise: ~0.1 KB per annotation),
    before the workers fork or Ray starts beside this process."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _die_with_parent():
    """Worker initializer (Linux): the kernel ends the worker when the converter dies (kill -9 included)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _init_worker():
    """Worker initializer: die with the converter, and a file system of the worker's own. An async
    fsspec file system (s3fs, gcsfs) runs its I/O on an event-loop thread that fork does not copy
    ("This class is not fork-safe"); the same class and options make a fresh one (fsspec caches
    instances per process)."""
    _die_with_parent()
    fs = _STATE.get("fs")
    if fs is not None:
        _STATE["fs"] = type(fs)(*fs.storage_args, **fs.storage_options)


class _Pool:
    """Forked worker processes sharing the parsed split; in-process when workers == 1."""

    def __init__(self, workers):
        self.pool = mp.get_context("fork").Pool(workers, initializer=_init_worker) if workers > 1 else None

        self.workers = workers

    def map(self, fn, jobs):
        return self.pool.map(fn, jobs, chunksize=1) if self.pool else [fn(j) for j in jobs]

    def results(self, todo, bar):
        """Yield _write_shard's (shard no, entry, file records) as workers finish, ticking the progress
        bar from the shared counter."""
        counter = _STATE["counter"]
        it = self.pool.imap_unordered(_write_shard, todo, chunksize=1) if self.pool else (_write_shard(j) for j in todo)
        while True:
            try:
                res = it.next(timeout=0.5) if self.pool else next(it)
            except mp.TimeoutError:
                res = None
            except StopIteration:
                return
            bar.update(counter.value - bar.n)
            if res is not None:
                yield res

    def close(self):
        if self.pool:
            self.pool.terminate()
            self.pool.join()


def _fingerprint(data) -> dict:
    files = [data.data_file, data.rootnet_file]
    if data.source.world:
        files += [fsio.join(data.root, t.format(split=data.split)) for t in (data.source.camera_file, data.source.joint_file)]
    return {fsio.basename(p): list(fsio.stat(p)) for p in files if p}


def _keep_finished(pool, fs, out_dir, old, man, jobs) -> dict:
    """Put the old manifest's shards that are still good into `man` (same plan: images as they were,
    files intact); returns their file records."""
    rec = read_json(fs, out_dir + "/" + FILESTAT) or {}
    files, written = rec.get("files") or {}, int(rec.get("written_ns") or 0)
    listed = [(i, e) for i, e in enumerate(old["shards"]) if e is not None and e.get("images") == jobs[i][2]]
    checks = [(e, {e[k]: files.get(e[k]) for k in ("tar", "idx") if e.get(k)}, written) for _, e in listed]
    filestat = {}
    for (i, e), (ok, now) in zip(listed, pool.map(_verify_shard, checks)):
        if ok:
            man["shards"][i] = e
            filestat.update(now)
    return filestat


def convert_split(source, root: str, out: str, split: str, *, rootnet: str | None = "auto", fps: int = 5,
                  shard_size: int | None = 512 << 20, shard_count: int | None = None, workers: int | None = None,
                  seed: int = 0, strict: bool = False, verify: str = "full", progress: bool = True,
                  mano: str | None = None, verify_existing: bool = False, cluster: str | None = None) -> dict:
    """Convert one split to OUT/<split>/ (layout in the module docstring); returns the manifest.
    cluster: None (forked worker processes on this machine), or "ray", "auto", "ray://HOST:PORT":
    the shards are written by Ray tasks (shards.cluster; workers then sizes a Ray instance started here)."""
    if verify not in VERIFY:
        raise ValueError(f"verify must be one of {VERIFY}, got {verify!r}")
    if not shard_size and not shard_count:
        raise ValueError("give a shard size in bytes and/or a shard sample count")
    workers = workers or os.cpu_count() or 1
    fs, base = fsspec.core.url_to_fs(out)
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if (workers > 1 or cluster) and "memory" in protocols:
        raise ValueError("memory:// file systems live in one process: use workers=1 (and no cluster)")
    if cluster:
        from .cluster import address
        address(cluster)  # a bad value fails before the parse
        if str(root).startswith("memory://"):
            raise ValueError("a memory:// root lives in this process: a cluster's nodes cannot read it")
    out_dir = base.rstrip("/") + "/" + split
    fs.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    data = load_split(source, root, split, rootnet=rootnet, fps=fps, progress=progress, mano=mano)
    trim_heap()
    t_parse = time.time()
    if strict and data.problems:
        r = min(data.problems)
        raise AnnotationError(data.data_file, int(data.annot_id[r]), "annotation", data.problems[r])
    skipped = [{"annot_id": int(data.annot_id[r]), "kind": "unusable annotation", "reason": m}
               for r, m in sorted(data.problems.items())]
    good = np.setdiff1d(np.arange(len(data)), np.fromiter(data.problems, np.int64, len(data.problems)))
    order = good[np.random.default_rng(seed).permutation(len(good))]
    _STATE.clear()
    _STATE.update(data=data, fs=fs, out_dir=out_dir, split=split, verify=verify, strict=strict,
                  verify_existing=verify_existing, counter=None if cluster else mp.get_context("fork").Value("q", 0))
    if cluster:
        from .cluster import RayPool
        pool = RayPool(cluster, _STATE, workers)
        data = _STATE["data"]  # now the object store's copy: the parse's own arrays are freed
    else:
        pool = _Pool(workers)
    try:
        chunks = np.array_split(order, max(1, min(len(order) // 4096, 64 * pool.workers)))
        stats = np.concatenate(pool.map(_stat_images, chunks), axis=1) if len(order) else np.zeros((2, 0), np.int64)
        sizes = stats[0]
        for r in order[sizes < 0]:
            msg = f"{data.image_path(int(data.ann_img[r]))}: image file missing"
            if strict:
                raise FileNotFoundError(f"annotation {data.annot_id[r]}: {msg}")
            skipped.append({"annot_id": int(data.annot_id[r]), "kind": "missing image", "reason": msg})
        order, stats = order[sizes >= 0], stats[:, sizes >= 0]
        sizes = stats[0]
        bounds = plan_shards((sizes + 511) // 512 * 512 + EST_META_BYTES, shard_size, shard_count)
        jobs = [(i, order[a:b], _images_fingerprint(data.annot_id[order[a:b]], stats[:, a:b]))
                for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
        plan = hashlib.sha256(data.annot_id[order].astype("<i8").tobytes() + np.asarray(bounds, "<i8").tobytes())
        man = {"format": "interhand-shards", "version": CONVERTER_VERSION, "complete": False,
               "source": data.source.name, "split": split,
               "options": {"root": data.root, "rootnet": data.rootnet_file, "fps": fps, "seed": seed,
                           "shard_size": shard_size, "shard_count": shard_count, "verify": verify,
                           "mano": data.mano.model_dir},
               "inputs": {**_fingerprint(data), **data.mano.fingerprint()}, "plan": plan.hexdigest(), "shards": [None] * len(jobs)}
        old = read_json(fs, out_dir + "/manifest.json")
        filestat = {}
        if old and all(old.get(k) == man[k] for k in ("version", "options", "inputs", "plan")):
            filestat = _keep_finished(pool, fs, out_dir, old, man, jobs)
        kept = {e[k] for e in man["shards"] if e is not None and e["count"] for k in ("tar", "idx")}
        remove_stale(fs, out_dir, split, old, kept)
        write_state(fs, out_dir, man, filestat)
        todo = [j for j in jobs if man["shards"][j[0]] is None]
        t_plan = time.time()
        n_kept = len(jobs) - len(todo)
        bar = tqdm(total=sum(len(j[1]) for j in todo), unit="sample", desc=f"{data.source.name} {split}",
                   disable=not progress, smoothing=0.1)
        for no, entry, files in pool.results(todo, bar):
            man["shards"][no] = entry
            filestat.update(files)
            write_state(fs, out_dir, man, filestat)  # after every shard: an interrupted run loses no finished shard
        bar.close()
        remove_stale(fs, out_dir, split, None, set())  # temporary files of attempts that died (a killed task)
    finally:
        pool.close()
    entries = man["shards"]
    skipped += [s for e in entries for s in e["skipped"]]
    skipped.sort(key=lambda s: s["annot_id"])
    kinds = {}
    for s in skipped:
        kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
    man["counts"] = {"annotations": len(data), "total": sum(e["count"] for e in entries),
                     "hand_type": {h: sum(e["hand_type"][h] for e in entries) for h in ("right", "left", "interacting")},
                     "skipped": len(skipped), "skipped_by_kind": kinds}
    man["skipped"] = skipped
    man["complete"] = True
    write_state(fs, out_dir, man, filestat)
    man["_run"] = {"seconds": time.time() - t0, "parse_s": t_parse - t0, "plan_s": t_plan - t_parse,
                   "write_s": time.time() - t_plan, "shards_kept": n_kept, "shards_written": len(jobs) - n_kept,
                   "cluster": cluster or "local"}
    return man
