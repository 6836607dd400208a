"""Name the corrupt shard when DALI fails while reading a split.

DALI's own errors often do not say which file is broken (a garbled JPEG gives
`nvImageCodec failure: '#4'`). On such a failure the trainer scans the split's shards with their
DALI index files: first the cheap structural checks (every member inside the file, tar header
name/size/checksum, label sizes, JPEG markers and header), then, if those pass, a full JPEG decode,
and reports the first bad sample: shard file, member name and byte offset.
"""
from __future__ import annotations

import os
import re

from tqdm import tqdm

from shards.labels import LABEL_SIZE

SIZES = {"lbl": 4 * LABEL_SIZE, "ids": 16}  # float32 label vector, int64 [annot_id, image_id]


def is_dali_error(err: BaseException) -> bool:
    text = str(err)
    return isinstance(err, RuntimeError) and ("Critical error in pipeline" in text or "nvidia.dali" in text)


def _octal(field: bytes, empty: int) -> int | None:
    """A NUL/space-padded octal tar header field; `empty` when blank, None when not a number."""
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else empty
    except ValueError:
        return None


def _tar_header_problem(head: bytes, name: str, size: int) -> str | None:
    if len(head) != 512:
        return "tar header cut off"
    stored = sum(head[:148]) + 8 * 32 + sum(head[156:])
    chk = _octal(head[148:156], -1)
    if chk is None:
        return "tar header checksum field is not a number"
    if chk != stored:
        return f"tar header checksum {chk} != {stored} (garbled header)"
    member = head[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
    if member != name and not member.endswith("/" + name):
        return f"tar header names {member!r}, the index says {name!r}"
    hsize = _octal(head[124:136], 0)
    if hsize is None:
        return "tar header size field is not a number"
    if hsize != size:
        return f"tar header size {hsize} != index size {size}"
    return None


def _entries(idx_path):
    """(sample line number, [(ext, offset, size, name), ...]) per sample of a wds2idx index."""
    with open(idx_path) as f:
        f.readline()  # header "v1.x <count>"
        for line_no, line in enumerate(f, start=2):
            tok = line.split()
            if len(tok) % 4:
                yield line_no, None
                continue
            yield line_no, [(tok[i], int(tok[i + 1]), int(tok[i + 2]), tok[i + 3]) for i in range(0, len(tok), 4)]


def scan_shards(tars, idxs, full_decode: bool, progress: bool = True) -> str | None:
    """The first problem found, as 'SHARD: member NAME at byte OFFSET: what', or None."""
    import simplejpeg

    total = 0
    for idx in idxs:
        with open(idx) as f:
            total += int(f.readline().split()[1])
    bar = tqdm(total=total, desc="scanning shards" + (" (decoding)" if full_decode else ""), unit="sample",
               disable=not progress)
    try:
        for tar, idx in zip(tars, idxs):
            tar_size = os.path.getsize(tar)
            with open(tar, "rb") as f:
                for line_no, comps in _entries(idx):
                    bar.update(1)
                    if comps is None:
                        return f"{idx}: line {line_no} is not a list of (ext, offset, size, name)"
                    for ext, off, size, name in comps:
                        where = f"{tar}: member {name} at byte {off}"
                        if off < 512 or off + size > tar_size:
                            return f"{where}: outside the file ({tar_size} bytes; truncated?)"
                        if not full_decode:
                            f.seek(off - 512)
                            problem = _tar_header_problem(f.read(512), name, size)
                            if problem:
                                return f"{where}: {problem}"
                            if ext in SIZES and size != SIZES[ext]:
                                return f"{where}: {size} bytes, a `{ext}` has {SIZES[ext]}"
                        if ext != "jpg":
                            continue
                        f.seek(off)
                        data = f.read(size)
                        try:
                            if full_decode:
                                simplejpeg.decode_jpeg(data, colorspace="RGB")
                            else:
                                if data[:2] != b"\xff\xd8":
                                    return f"{where}: not a JPEG (starts with {data[:4].hex()})"
                                simplejpeg.decode_jpeg_header(data)
                        except ValueError as e:
                            return f"{where}: JPEG does not decode: {e}"
    finally:
        bar.close()
    return None


def describe_data_error(loader, err: BaseException, where: str, progress: bool = True) -> str:
    """A message naming the corrupt shard (scanning the loader's shards) for a DALI failure."""
    tars, idxs = list(loader.tars), list(loader.idxs)
    text = str(err)
    op = re.search(r"Error in \w+ operator `([^`]+)`", text)
    said = text.split("encountered:", 1)[-1].split("Current pipeline object", 1)[0]
    said = " ".join(line.strip() for line in said.splitlines() if line.strip() and not line.startswith("C++ context"))
    dali = f"{op.group(1)}: {said}" if op else said
    try:
        found = scan_shards(tars, idxs, full_decode=False, progress=progress)
        if found is None:
            found = scan_shards(tars, idxs, full_decode=True, progress=progress)
    except (OSError, ValueError, IndexError) as scan_err:  # e.g. an index file garbled beyond parsing
        return (f"reading {loader.split_dir} failed {where}; scanning its {len(tars)} shard(s) failed too: "
                f"{type(scan_err).__name__}: {scan_err}\n(DALI said: {dali[:600]})")
    head = f"reading {loader.split_dir} failed {where}"
    if found is not None:
        return f"{head}: corrupt shard {found}\n(DALI said: {dali[:600]})"
    return (f"{head}; a scan of its {len(tars)} shard(s) found no corrupt sample ({', '.join(tars[:8])}"
            f"{' ...' if len(tars) > 8 else ''})\n(DALI said: {dali[:600]})")
