"""The converter's inputs from an fsspec URL (shards/fsio.py: memory://, and s3:// on moto's S3 server,
tests/s3_fixtures.py), and re-runs that trust finished shards by their recorded size and mtime
(OUT/<split>/filestat.json) unless --verify-existing."""
import json
import os
import time

import fsspec
import pytest

from shards import writer
from shards.__main__ import main as cli_main
from shards.index import iter_shard_samples
from tests.s3_fixtures import s3, s3_server  # noqa: F401  (fixtures)
from tests.test_reader import write_interhand
from tests.test_shards import convert, digest


@pytest.fixture
def data_root(tmp_path):
    write_interhand(tmp_path / "data", split="val")
    return tmp_path / "data"


def to_memory(local_root, url):
    mem = fsspec.filesystem("memory")
    for d, _, names in os.walk(local_root):
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                mem.pipe(url.removeprefix("memory://") + "/" + os.path.relpath(p, local_root), f.read())
    return mem


def test_a_memory_root_gives_the_same_shards_and_refuses_escaping_names(data_root, tmp_path):
    url = "memory://inputs/data"
    mem = to_memory(data_root, url)
    man = convert(url, tmp_path / "mem")
    convert(data_root, tmp_path / "local")
    assert digest(tmp_path / "mem" / "val") == digest(tmp_path / "local" / "val")
    assert man["options"]["root"] == url and man["options"]["rootnet"].startswith(url + "/rootnet_output/")
    assert set(man["inputs"]) == set(json.loads((tmp_path / "local" / "val" / "manifest.json").read_text())["inputs"])
    # a file name leading out of the images folder is never read, on a URL root too
    mem.pipe("/inputs/secret.jpg", mem.cat("/inputs/data/images/val/Capture1/0001_seq/cam400001/image10.jpg"))
    path = "/inputs/data/annotations/val/InterHand2.6M_val_data.json"
    data = json.loads(mem.cat(path))
    img_id = next(a["image_id"] for a in data["annotations"] if a["id"] == 104)
    next(i for i in data["images"] if i["id"] == img_id)["file_name"] = "../../../secret.jpg"
    mem.pipe(path, json.dumps(data).encode())
    man = convert(url, tmp_path / "mem2")
    assert [s["annot_id"] for s in man["skipped"]] == [104]
    assert "file_name '../../../secret.jpg' leads outside memory://inputs/data/images/val" in man["skipped"][0]["reason"]
    assert 104 not in {int(s[0]) for s in iter_shard_samples(str(tmp_path / "mem2" / "val"))}
    mem.rm("/inputs", recursive=True)


def test_an_s3_root_read_by_forked_workers(s3, data_root, tmp_path):  # noqa: F811
    """--root s3://bucket/data: annotation files, RootNet and images from the bucket (images stat'ed by
    folder listings), 2 forked workers each with its own s3fs: the same shards as from the local root."""
    s3.fs.put(str(data_root) + "/", s3.url("data"), recursive=True)
    man = convert(s3.url("data"), tmp_path / "s3", workers=2)
    convert(data_root, tmp_path / "local")
    assert digest(tmp_path / "s3" / "val") == digest(tmp_path / "local" / "val")
    assert man["options"]["root"] == s3.url("data") and man["counts"]["total"] == 12 and not man["skipped"]
    assert all(size > 0 and mtime > 0 for size, mtime in man["inputs"].values())
    s3.fs.rm(s3.url("data/images/val/Capture1/0001_seq/cam400001/image10.jpg"))  # annotation 100
    man = convert(s3.url("data"), tmp_path / "s3b", workers=2)
    assert [(s["annot_id"], s["kind"]) for s in man["skipped"]] == [(100, "missing image")]


def test_a_finished_conversion_is_not_re_read_unless_asked(data_root, tmp_path, monkeypatch):
    out, d = tmp_path / "out", tmp_path / "out" / "val"
    hashed, real = [], writer.fsio.file_sha256  # the writer's resume check hashes through shards.fsio
    monkeypatch.setattr(writer.fsio, "file_sha256",
                        lambda fs, path, bar=None: hashed.append(os.path.basename(path)) or real(fs, path, bar))
    convert(data_root, out)  # 3 shards
    clean = digest(d)
    time.sleep(1.1)  # files this close to their record are checked by content (writer.RACY_NS)
    assert convert(data_root, out)["_run"]["shards_kept"] == 3 and len(hashed) == 6  # racy: read once
    hashed.clear()
    man = convert(data_root, out)
    assert man["_run"] == {**man["_run"], "shards_kept": 3, "shards_written": 0} and hashed == []  # trusted
    stat = json.loads((d / "filestat.json").read_text())["files"]
    assert sorted(stat) == sorted(clean) and stat["val-000001.tar"][:2] == [
        os.path.getsize(d / "val-000001.tar"), os.stat(d / "val-000001.tar").st_mtime_ns]
    past = time.time_ns() - 10**10
    os.utime(d / "val-000002.idx", ns=(past, past))  # another mtime, the same bytes: read once, kept
    assert convert(data_root, out)["_run"]["shards_kept"] == 3 and hashed == ["val-000002.idx"]
    hashed.clear()
    # corrupted in place with size and mtime kept: trusted by default, found by --verify-existing
    st = os.stat(d / "val-000001.tar")
    with open(d / "val-000001.tar", "r+b") as f:
        f.seek(600)
        f.write(b"XX")
    os.utime(d / "val-000001.tar", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert convert(data_root, out)["_run"]["shards_kept"] == 3 and hashed == []
    cli_main(["--source", "interhand", "--root", str(data_root), "--out", str(out), "--splits", "val",
              "--shard-count", "5", "--workers", "1", "--quiet", "--verify-existing"])
    assert len(hashed) >= 5 and digest(d) == clean  # every file read; the corrupt shard rewritten
    man = json.loads((d / "manifest.json").read_text())
    assert man["complete"] and os.stat(d / "val-000001.tar").st_mtime_ns != st.st_mtime_ns
