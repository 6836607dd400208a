"""Checks of the shard format's bytes: is an image usable (the converter's check), and which
sample of a split is corrupt when DALI fails while reading it.

DALI's own errors often do not say which file is broken (a garbled JPEG gives
`nvImageCodec failure: '#4'`). On such a failure the loader (pipeline.loader, for training,
evaluation, previews and benchmarks alike) scans the split's shards with their DALI index files:
first the cheap structural checks (every member inside the file, tar header name/size/checksum,
label sizes and finiteness, image signatures and headers), then, if those pass, a full decode of
every image, and reports the first bad sample: shard file, member name and byte offset.

Some damage makes no DALI error at all: a JPEG whose entropy-coded data was garbled after conversion
decodes with decoder warnings on stderr (which name no file) into a wrong picture. verify_shards
catches it before reading: every shard and index file of a split is hashed against the sha256 its
manifest recorded, and a shard that changed is scanned with a strict decode (a decoder warning is an
error) to name the sample. Evaluation and training do this by default (pipeline.loader; local or
cached splits).
"""
from __future__ import annotations

import re

import fsspec
import numpy as np
from tqdm import tqdm

from .fsio import file_sha256
from .index import Split
from .labels import LABEL_SIZE

SIZES = {"lbl": 4 * LABEL_SIZE, "ids": 16}  # float32 label vector, int64 [annot_id, image_id]


class DataError(RuntimeError):
    """Reading a split failed; the message names the corrupt shard, member and offset if one was found."""


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
    with fsspec.open(idx_path, "rt") as f:
        f.readline()  # header "v1.x <count>"
        for line_no, line in enumerate(f, start=2):
            tok = line.split()
            if len(tok) % 4:
                yield line_no, None
                continue
            yield line_no, [(tok[i], int(tok[i + 1]), int(tok[i + 2]), tok[i + 3]) for i in range(0, len(tok), 4)]


def check_image(data: bytes, verify: str) -> str | None:
    """None if the image is usable, else the reason. verify: "full" decodes every byte of the
    compressed stream (truncated or corrupt data fails), "header" only the header, "none" nothing.
    JPEG and PNG (RHD stores PNG files under the `jpg` component; DALI sniffs the format)."""
    import simplejpeg

    if verify == "none":
        return None if data else "empty image file"
    try:
        if data[:2] == b"\xff\xd8":
            if verify == "full":  # the whole entropy-coded stream, IDCT at 1/8 scale (faster)
                simplejpeg.decode_jpeg(data, strict=True, min_height=1, min_width=1, min_factor=8)
            else:
                simplejpeg.decode_jpeg_header(data)
                if not data.rstrip(b"\0").endswith(b"\xff\xd9"):
                    return "truncated (no JPEG end marker)"
        elif data[:8] == b"\x89PNG\r\n\x1a\n":
            import io

            from PIL import Image
            with Image.open(io.BytesIO(data)) as im:
                im.load() if verify == "full" else im.size
            if not data.endswith(b"IEND\xaeB`\x82"):
                return "truncated (no PNG end chunk)"
        else:
            return f"not a JPEG or PNG file (starts with {data[:4].hex()})"
    except Exception as e:  # noqa: BLE001 - any decoder failure means "does not decode"
        return f"does not decode ({type(e).__name__}: {e})"
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG or PNG header; None for other bytes."""
    if data[:2] == b"\xff\xd8":
        import simplejpeg

        h, w, _, _ = simplejpeg.decode_jpeg_header(data)
        return int(w), int(h)
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def scan_shards(split: Split, full_decode: bool, progress: bool = True) -> str | None:
    """The first problem found in a split's shards, as 'SHARD: member NAME at byte OFFSET: what', or None."""
    bar = tqdm(total=split.num_samples, desc="scanning shards" + (" (decoding)" if full_decode else ""),
               unit="sample", disable=not progress)
    try:
        for tar, idx in zip(split.tars, split.idxs):
            fs, path = fsspec.core.url_to_fs(tar)
            tar_size = fs.size(path)
            with fs.open(path, "rb") as f:
                for line_no, comps in _entries(idx):
                    bar.update(1)
                    if comps is None:
                        return f"{idx}: line {line_no} is not a list of (ext, offset, size, name)"
                    for ext, off, size, name in comps:
                        problem = _member_problem(f, ext, off, size, name, tar_size, full_decode)
                        if problem:
                            return f"{tar}: member {name} at byte {off}: {problem}"
    finally:
        bar.close()
    return None


def verify_shards(split: Split, shards=None, progress: bool = True) -> None:
    """Hash the shard and index files of `split` (or the given shard numbers) against its manifest's
    sha256; raise DataError for the first that differs, naming the changed file and, for a tar, its
    first member that fails the structural checks or a strict decode."""
    picks = range(len(split.shards)) if shards is None else shards
    files = [(i, split.shards[i][k], split.shards[i].get(s)) for i in picks for k, s in (("tar", "sha256"), ("idx", "idx_sha256"))]
    total = 0
    for _, url, _ in files:
        fs, path = fsspec.core.url_to_fs(url)
        total += fs.size(path)
    bar = tqdm(total=total, desc="verifying shards (sha256)", unit="B", unit_scale=True, disable=not progress)
    try:
        for i, url, want in files:
            if not want:
                raise DataError(f"{split.url}/manifest.json: shard {i} ({url}) has no sha256 to verify against")
            if file_sha256(*fsspec.core.url_to_fs(url), bar=bar) != want:
                raise DataError(_changed(split, i, url, progress))
    finally:
        bar.close()


def _changed(split: Split, i: int, url: str, progress: bool) -> str:
    head = f"{url}: sha256 differs from the one {split.url}/manifest.json recorded (changed since it was written)"
    if url != split.shards[i]["tar"]:
        return head + "; convert the split again (python -m shards) or restore the file"
    one = Split(split.url, split.manifest, (split.shards[i],))
    try:
        found = scan_shards(one, full_decode=False, progress=progress) or scan_shards(one, full_decode=True,
                                                                                       progress=progress)
    except (OSError, ValueError, IndexError) as e:
        found = f"{url}: its index cannot be followed ({type(e).__name__}: {e})"
    if found:
        return f"{head}; corrupt shard {found}"
    return head + "; every member still passes the checks and a strict decode (a change decoding cannot see)"


def _member_problem(f, ext, off, size, name, tar_size, full_decode) -> str | None:
    if off < 512 or off + size > tar_size:
        return f"outside the file ({tar_size} bytes; truncated?)"
    if not full_decode:
        f.seek(off - 512)
        problem = _tar_header_problem(f.read(512), name, size)
        if problem:
            return problem
        if ext in SIZES and size != SIZES[ext]:
            return f"{size} bytes, a `{ext}` has {SIZES[ext]}"
    if ext == "lbl" and not full_decode:
        f.seek(off)
        values = np.frombuffer(f.read(size), "<f4")
        if not np.isfinite(values).all():
            return f"label vector holds non-finite values at positions {np.flatnonzero(~np.isfinite(values))[:5].tolist()}"
    if ext != "jpg":
        return None
    f.seek(off)
    return check_image(f.read(size), "full" if full_decode else "header")


def describe_data_error(split: Split, err: BaseException, where: str, progress: bool = True) -> str:
    """A message naming the corrupt sample of `split` (found by scanning its shards) for a DALI failure."""
    text = str(err)
    op = re.search(r"Error in \w+ operator `([^`]+)`", text)
    said = text.split("encountered:", 1)[-1].split("Current pipeline object", 1)[0]
    said = " ".join(line.strip() for line in said.splitlines() if line.strip() and not line.startswith("C++ context"))
    dali = f"{op.group(1)}: {said}" if op else said
    n = len(split.tars)
    try:
        found = scan_shards(split, full_decode=False, progress=progress)
        if found is None:
            found = scan_shards(split, full_decode=True, progress=progress)
    except (OSError, ValueError, IndexError) as scan_err:  # e.g. an index file garbled beyond parsing
        return (f"reading {split.url} failed {where}; scanning its {n} shard(s) failed too: "
                f"{type(scan_err).__name__}: {scan_err} (DALI said: {dali[:600]})")
    head = f"reading {split.url} failed {where}"
    if found is not None:
        return f"{head}: corrupt shard {found} (DALI said: {dali[:600]})"
    return (f"{head}; a scan of its {n} shard(s) found no corrupt sample ({', '.join(split.tars[:8])}"
            f"{' ...' if n > 8 else ''}) (DALI said: {dali[:600]})")
