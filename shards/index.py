"""Deterministic tar shards with DALI index files, and reading them back without DALI.

ShardTar writes a plain ustar archive (mtime 0, uid/gid 0, empty user/group names, mode 0644,
10240-byte records like GNU tar) while hashing it and noting each member's data offset, so
the DALI index (the exact format of DALI's `wds2idx` tool, version v1.2) comes for free:

    v1.2 <number of samples>
    <ext> <data offset> <size> <member name> <ext> <offset> <size> <name> ...   (one line per sample)

open_split reads a split folder (any fsspec URL) through its manifest: the one reader every stage
calls; iter_shard_samples streams its samples without DALI.
"""
import hashlib
import json
import tarfile
from dataclasses import dataclass

import fsspec

INDEX_VERSION = "v1.2"
_BLOCK, _RECORD = 512, 10240


def _template() -> bytes:
    info = tarfile.TarInfo("x")
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = 0, 0, 0o644, 0, 0, "", ""
    return info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


_TEMPLATE = _template()
# The header's byte sum without name, size and checksum fields (the checksum counts as 8 spaces): the
# checksum of a header is this plus the bytes of its name and size fields.
_BASE_SUM = sum(_TEMPLATE) - sum(_TEMPLATE[0:100]) - sum(_TEMPLATE[124:136]) - sum(_TEMPLATE[148:156]) + 8 * 32


def ustar_header(name: str, size: int) -> bytes:
    """The 512-byte ustar header tarfile would write for a regular file (mtime 0, uid/gid 0, mode
    0644, no user/group names), built by patching name, size and checksum into a template: ~50x
    faster than tarfile.TarInfo.tobuf, which matters at millions of members."""
    raw = name.encode("utf-8")
    if len(raw) > 100 or size >= 8 ** 11:
        raise ValueError(f"tar member {name!r} ({size} bytes): name over 100 bytes or size over 8 GiB")
    size_field = b"%011o\0" % size
    h = bytearray(_TEMPLATE)
    h[0:100] = raw.ljust(100, b"\0")
    h[124:136] = size_field
    h[148:156] = b"%06o\0 " % (_BASE_SUM + sum(raw) + sum(size_field))
    return bytes(h)


class ShardTar:
    """Write samples into an open binary file object; sha256, size and index as it goes."""

    def __init__(self, f):
        self.f, self.sha, self.pos, self.samples = f, hashlib.sha256(), 0, []

    def _write(self, data):
        self.f.write(data)
        self.sha.update(data)
        self.pos += len(data)

    def add(self, key: str, components):
        """components: [(ext, bytes)] of one sample; members are written in the given order."""
        if "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must not contain '.' or '/'")
        entry, parts, pos = [], [], self.pos
        for ext, data in components:
            name = f"{key}.{ext}"
            parts.append(ustar_header(name, len(data)))
            entry.append((ext, pos + _BLOCK, len(data), name))
            parts.append(data)
            pad = -len(data) % _BLOCK
            if pad:
                parts.append(b"\0" * pad)
            pos += _BLOCK + len(data) + pad
        self._write(b"".join(parts))
        self.samples.append(entry)

    def finish(self) -> tuple[int, str]:
        """End-of-archive blocks and record padding; returns (size in bytes, sha256 hex)."""
        self._write(b"\0" * (2 * _BLOCK))
        if self.pos % _RECORD:
            self._write(b"\0" * (_RECORD - self.pos % _RECORD))
        return self.pos, self.sha.hexdigest()

    def index_text(self) -> str:
        lines = [f"{INDEX_VERSION} {len(self.samples)}\n"]
        lines += [" ".join(" ".join(map(str, c)) for c in entry) + "\n" for entry in self.samples]
        return "".join(lines)


MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Split:
    """A finished split folder, as its manifest describes it. `shards`: the non-empty shards in
    order, each {tar, idx (full paths or URLs), count, bytes, sha256, ...}; `manifest`: the whole
    manifest.json (shards.writer documents its fields)."""
    url: str
    manifest: dict
    shards: tuple

    @property
    def tars(self) -> list[str]:
        return [s["tar"] for s in self.shards]

    @property
    def idxs(self) -> list[str]:
        return [s["idx"] for s in self.shards]

    @property
    def counts(self) -> list[int]:
        return [int(s["count"]) for s in self.shards]

    @property
    def num_samples(self) -> int:
        return sum(self.counts)


def _manifest_error(path: str, what: str) -> ValueError:
    return ValueError(f"{path}: {what}")


def open_split(url: str, *, check_files: bool = True) -> Split:
    """The one reader of a split folder (local path or fsspec URL) for every stage: its manifest,
    which must be complete and agree with itself, and its shards. check_files: every listed tar and
    index file exists and each index header counts the samples the manifest says."""
    url = str(url).rstrip("/")
    fs, path = fsspec.core.url_to_fs(url)
    man_path = f"{url}/{MANIFEST}"
    if not fs.exists(path + "/" + MANIFEST):
        what = "does not exist" if not fs.exists(path) else "has no manifest.json (not a shard folder, or the conversion never ran)"
        raise FileNotFoundError(f"shard folder {url} {what}")
    try:
        with fs.open(path + "/" + MANIFEST, "rb") as f:
            man = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise _manifest_error(man_path, f"not valid JSON ({e}); re-run the conversion") from None
    if not isinstance(man, dict):
        raise _manifest_error(man_path, "not a manifest written by shards.writer (not a JSON object)")
    if not man.get("complete"):
        raise _manifest_error(man_path, "the conversion did not finish (complete: false); re-run the same command")
    if not isinstance(man.get("shards"), list):
        raise _manifest_error(man_path, "no 'shards' list: not a manifest written by shards.writer")
    shards, total = [], 0
    for i, e in enumerate(man["shards"]):
        if not isinstance(e, dict) or not all(k in e for k in ("tar", "idx", "count")):
            raise _manifest_error(man_path, f"shard entry {i} lacks tar/idx/count")
        if not isinstance(e["count"], int) or e["count"] < 0:
            raise _manifest_error(man_path, f"shard entry {i} ({e['tar']}) has count {e['count']!r}")
        total += e["count"]
        if e["count"]:
            shards.append(dict(e, tar=f"{url}/{e['tar']}", idx=f"{url}/{e['idx']}"))
    counted = (man.get("counts") or {}).get("total")
    if counted != total:
        raise _manifest_error(man_path, f"counts.total is {counted!r} but its shard list holds {total} samples "
                                        "(a shard entry lost or edited?); re-run the conversion")
    split = Split(url, man, tuple(shards))
    if check_files:
        for s in split.shards:
            for key in ("tar", "idx"):
                if not fs.exists(fsspec.core.url_to_fs(s[key])[1]):
                    raise FileNotFoundError(f"{man_path}: lists {s[key]}, which is missing")
            with fsspec.open(s["idx"], "rt") as f:
                head = f.readline().split()
            if len(head) != 2 or not head[1].isdigit():
                raise ValueError(f"{s['idx']}: first line {' '.join(head)!r} is not a wds2idx header 'v1.x <count>'")
            if int(head[1]) != s["count"]:
                raise ValueError(f"{s['idx']}: {head[1]} samples, but {man_path} says {s['count']}")
    return split


def iter_shard_samples(split_url: str):
    """Yield (key, json dict, lbl bytes, ids bytes, jpg bytes) for every sample of a split, in
    shard order (the converter's shuffled order). Needs no DALI: plain tar streaming via fsspec.
    A shard that yields another number of samples than the manifest says is an error naming it
    (Python's tarfile stops quietly at a garbled header)."""
    for shard in open_split(split_url, check_files=False).shards:
        n = 0
        try:
            with fsspec.open(shard["tar"], "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
                key, parts = None, {}
                for member in tar:
                    if not member.isfile():
                        continue
                    k, ext = member.name.split(".", 1)
                    if key is not None and k != key:
                        yield _sample(shard["tar"], key, parts)
                        n, parts = n + 1, {}
                    key, parts[ext] = k, tar.extractfile(member).read()
                if key is not None:
                    yield _sample(shard["tar"], key, parts)
                    n += 1
        except tarfile.TarError as e:
            raise ValueError(f"{shard['tar']}: not a readable tar after {n} samples ({e})") from None
        check_count(shard, n)


def check_count(shard: dict, n: int) -> None:
    """A shard read to its end must have given the samples the manifest lists."""
    if n != shard["count"]:
        raise ValueError(f"{shard['tar']}: read {n} samples, the manifest lists {shard['count']} "
                         "(a garbled tar header or a truncated file stops the read early)")


def _sample(where, key, parts):
    missing = {"json", "lbl", "ids", "jpg"} - set(parts)
    if missing:
        raise ValueError(f"{where}: sample {key} lacks {sorted(missing)}")
    return key, json.loads(parts["json"]), parts["lbl"], parts["ids"], parts["jpg"]
