"""The shard converter (shards.writer, python -m shards): round trip, DALI index format, DALI's
reader, bad images, resume after an interruption, determinism, fsspec URLs."""
import hashlib
import json
import os
import re
import subprocess
import sys

import fsspec
import numpy as np
import pytest

from shards import labels, writer
from shards.__main__ import main as cli_main
from shards.index import iter_shard_samples, open_split
from shards.reader import iter_records
from shards.sources import get_source
from tests.test_reader import write_inline, write_interhand

WDS2IDX = os.path.join(os.path.dirname(sys.executable), "wds2idx")


def convert(root, out, split="val", **kw):
    kw = {"shard_count": 5, "workers": 1, "progress": False, **kw}
    return writer.convert_split("interhand", str(root), str(out), split, **kw)


def digest(d):
    return {p: hashlib.sha256(open(os.path.join(d, p), "rb").read()).hexdigest()
            for p in sorted(os.listdir(d)) if p.endswith((".tar", ".idx"))}


@pytest.fixture
def data_root(tmp_path):
    write_interhand(tmp_path / "data", split="val")
    return tmp_path / "data"


def test_round_trip_equals_reader(data_root, tmp_path):
    man = convert(data_root, tmp_path / "out")
    recs = {r["annot_id"]: r for r in iter_records("interhand", str(data_root), "val")}
    samples = list(iter_shard_samples(str(tmp_path / "out" / "val")))
    keys = [s[0] for s in samples]
    assert sorted(int(k) for k in keys) == sorted(recs) and len(set(keys)) == len(keys)  # each exactly once
    assert [int(k) for k in keys] != sorted(recs)  # shuffled
    for key, js, lbl, ids, jpg in samples:
        rec = recs[int(key)]
        assert set(js) == set(rec) - {"image_path"}
        for k, v in rec.items():
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(np.asarray(js[k], dtype=np.float32), v, err_msg=k)
            elif k != "image_path":
                assert js[k] == v, k
        assert (lbl, ids) == labels.encode(rec)
        assert jpg == open(rec["image_path"], "rb").read()
    c = man["counts"]
    assert c["total"] == len(recs) == sum(s["count"] for s in man["shards"]) and c["skipped"] == 0
    assert c["hand_type"] == {h: sum(r["hand_type"] == h for r in recs.values()) for h in ("right", "left", "interacting")}
    assert man["options"]["rootnet"].endswith("rootnet_interhand2.6m_output_val.json")


def test_index_matches_wds2idx_and_manifest(data_root, tmp_path):
    convert(data_root, tmp_path / "out")
    shards = open_split(str(tmp_path / "out" / "val")).shards
    assert len(shards) == 3  # 12 samples, 5 per shard
    for s in shards:
        ref = tmp_path / "ref.idx"
        subprocess.run([WDS2IDX, s["tar"], str(ref)], check=True, capture_output=True)
        assert open(s["idx"], "rb").read() == ref.read_bytes()
        assert hashlib.sha256(open(s["tar"], "rb").read()).hexdigest() == s["sha256"]
        assert os.path.getsize(s["tar"]) == s["bytes"]


def test_dali_reads_every_sample(data_root, tmp_path):
    from nvidia.dali import fn, pipeline_def, types
    convert(data_root, tmp_path / "out")
    shards = open_split(str(tmp_path / "out" / "val")).shards

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        return tuple(fn.readers.webdataset(paths=[s["tar"] for s in shards], index_paths=[s["idx"] for s in shards],
                                     ext=["jpg", "lbl", "ids"], dtypes=[types.UINT8, types.FLOAT, types.INT64],
                                     missing_component_behavior="error", name="r"))
    p = pipe()
    p.build()
    n = p.epoch_size("r")
    want = {int(s[0]): s for s in iter_shard_samples(str(tmp_path / "out" / "val"))}
    assert n == len(want)
    got = set()
    for _ in range(n):
        jpg, lbl, ids = (np.array(o[0]) for o in p.run())
        key = int(ids[0])
        assert jpg.tobytes() == want[key][4] and lbl.tobytes() == want[key][2]
        got.add(key)
    assert got == set(want)


def test_determinism_and_workers(data_root, tmp_path):
    convert(data_root, tmp_path / "a", seed=3)
    convert(data_root, tmp_path / "b", seed=3, workers=2)
    convert(data_root, tmp_path / "c", seed=4)
    a, b, c = (digest(tmp_path / x / "val") for x in "abc")
    assert a == b and a != c
    ma, mb = (json.load(open(tmp_path / x / "val" / "manifest.json")) for x in "ab")
    assert ma == mb


def test_bad_images_skipped_listed_or_strict(data_root, tmp_path, capsys):
    img_dir = data_root / "images" / "val" / "Capture1" / "0001_seq" / "cam400001"
    os.remove(img_dir / "image10.jpg")  # annotation 100
    (img_dir / "image15.jpg").write_bytes(open(img_dir / "image20.jpg", "rb").read()[:300])  # truncated: 102
    (data_root / "images" / "val" / "Capture1" / "0001_seq" / "cam400002" / "image10.jpg").write_bytes(b"hello")  # 101
    out = tmp_path / "out"
    cli_main(["--source", "interhand", "--root", str(data_root), "--out", str(out), "--splits", "val",
              "--shard-count", "4", "--workers", "1", "--quiet"])
    text = capsys.readouterr().out
    assert "SKIPPED 3" in text and "missing image: 1" in text and "bad image: 2" in text
    man = open_split(str(out / "val")).manifest
    assert [(s["annot_id"], s["kind"]) for s in man["skipped"]] == [(100, "missing image"), (101, "bad image"), (102, "bad image")]
    assert "does not decode" in man["skipped"][2]["reason"] and "image15.jpg" in man["skipped"][2]["reason"]
    assert man["counts"]["total"] == 9 and man["counts"]["skipped"] == 3
    assert sorted(int(s[0]) for s in iter_shard_samples(str(out / "val"))) == [a for a in range(103, 112)]
    with pytest.raises(FileNotFoundError, match="image10.jpg"):
        convert(data_root, tmp_path / "strict", strict=True)
    os.remove(img_dir.parent / "cam400002" / "image10.jpg")
    write_interhand(tmp_path / "d2", split="val")
    p = tmp_path / "d2" / "images" / "val" / "Capture2" / "0001_seq" / "cam400001" / "image15.jpg"
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ValueError, match="annotation 108: .*image15.jpg: does not decode"):
        convert(tmp_path / "d2", tmp_path / "strict2", strict=True)


def test_unusable_annotation_listed(tmp_path):
    data, cams, joints, _ = write_interhand(tmp_path / "data", split="val")
    joints["2"].pop("20")  # annotations 110, 111
    with open(tmp_path / "data" / "annotations" / "val" / "InterHand2.6M_val_joint_3d.json", "w") as f:
        json.dump(joints, f)
    man = convert(tmp_path / "data", tmp_path / "out")
    assert [(s["annot_id"], s["kind"]) for s in man["skipped"]] == [(110, "unusable annotation"), (111, "unusable annotation")]
    assert "no frame 20" in man["skipped"][0]["reason"] and man["counts"]["total"] == 10
    with pytest.raises(ValueError, match="annotation 110.*no frame 20"):
        convert(tmp_path / "data", tmp_path / "out2", strict=True)


def test_resume_after_interruption(data_root, tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    convert(data_root, clean, shard_count=2)
    out = tmp_path / "out"
    real, calls = writer._write_shard, []

    def crash_after_three(job):
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated interruption")
        calls.append(job[0])
        return real(job)
    monkeypatch.setattr(writer, "_write_shard", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        convert(data_root, out, shard_count=2)
    monkeypatch.setattr(writer, "_write_shard", real)
    man = json.loads((out / "val" / "manifest.json").read_text())
    assert not man["complete"] and sum(s is not None for s in man["shards"]) == 3
    with pytest.raises(ValueError, match="did not finish"):
        open_split(str(out / "val"))
    d = out / "val"
    with open(d / "val-000001.tar", "r+b") as f:  # corrupt a finished shard
        f.seek(600)
        f.write(b"XX")
    (d / ".val-000005.tar.999-0123abcd.tmp").write_bytes(b"partial")  # a half-written leftover of a killed run
    keep_mtime = os.stat(d / "val-000000.tar").st_mtime_ns
    man = convert(data_root, out, shard_count=2)
    assert man["_run"] == {**man["_run"], "shards_kept": 2, "shards_written": 4}
    assert os.stat(d / "val-000000.tar").st_mtime_ns == keep_mtime
    assert digest(d) == digest(clean / "val") and not any(p.endswith(".tmp") for p in os.listdir(d))
    assert convert(data_root, out, shard_count=2)["_run"]["shards_kept"] == 6  # finished: nothing to redo


def test_memory_url_and_other_sources(tmp_path):
    write_interhand(tmp_path / "data", split="val")
    man = convert(tmp_path / "data", "memory://conv/out")
    samples = list(iter_shard_samples("memory://conv/out/val"))
    assert len(samples) == man["counts"]["total"] == 12
    assert fsspec.filesystem("memory").exists("/conv/out/val/val-000000.idx")
    convert(tmp_path / "data", tmp_path / "local")
    convert(tmp_path / "data", f"file://{tmp_path}/viaurl")
    assert digest(tmp_path / "local" / "val") == digest(tmp_path / "viaurl" / "val")
    assert len(list(iter_shard_samples(f"file://{tmp_path}/viaurl/val"))) == 12
    mem = fsspec.filesystem("memory")
    assert [mem.cat(f"/conv/out/val/{n}") for n in sorted(digest(tmp_path / "local" / "val"))] == [
        open(tmp_path / "local" / "val" / n, "rb").read() for n in sorted(digest(tmp_path / "local" / "val"))]
    with pytest.raises(ValueError, match="workers=1"):
        convert(tmp_path / "data", "memory://conv/out2", workers=2)
    for fmt in ("rhd", "stb"):
        write_inline(tmp_path / fmt, fmt, split="test", n=5)
        m = writer.convert_split(fmt, str(tmp_path / fmt), str(tmp_path / f"o{fmt}"), "test", shard_count=2,
                                 workers=1, progress=False)
        assert m["counts"]["total"] == 5 and m["counts"]["hand_type"]["interacting"] == 0
        assert len(list(iter_shard_samples(str(tmp_path / f"o{fmt}" / "test")))) == 5


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from shards.synth import generate
    base = tmp_path_factory.mktemp("synth")
    for fmt in ("interhand", "rhd", "stb"):
        generate(base / fmt, size="tiny", seed=1, fmt=fmt, workers=2)
    return base


@pytest.mark.parametrize("fmt", ["interhand", "rhd", "stb"])
def test_synthetic_sets_round_trip(synth_root, tmp_path, fmt):
    """The generator's tiny output in all three layouts: the readers agree with the plain reference
    of tests/test_reader.py, and every annotation lands in the shards exactly once."""
    from tests.test_reader import assert_matches, ref_inline, ref_interhand
    root = synth_root / fmt
    for split in get_source(fmt).splits:
        recs = list(iter_records(fmt, str(root), split))
        data_file = root / get_source(fmt).data_file[split]
        data = json.load(open(data_file))
        assert len(recs) == len(data["annotations"]) > 0
        imgs = {i["id"]: i for i in data["images"]}
        if fmt == "interhand":
            ann_dir = data_file.parent
            cams = json.load(open(ann_dir / f"InterHand2.6M_{split}_camera.json"))
            joints = json.load(open(ann_dir / f"InterHand2.6M_{split}_joint_3d.json"))
        for rec, ann in list(zip(recs, data["annotations"]))[:8]:
            img = imgs[ann["image_id"]]
            ref = ref_interhand(ann, img, cams, joints) if fmt == "interhand" else ref_inline(ann, img)
            assert_matches(rec, ref)
        man = writer.convert_split(fmt, str(root), str(tmp_path), split, shard_count=16, workers=1, progress=False)
        keys = sorted(int(s[0]) for s in iter_shard_samples(str(tmp_path / split)))
        assert keys == sorted(r["annot_id"] for r in recs) and man["counts"]["skipped"] == 0


def test_ustar_header_equals_tarfile_and_image_checks():
    import tarfile

    from shards.index import ustar_header
    for name, size in (("000000001.jpg", 0), ("000123456.json", 5000), ("a" * 100, 1), ("é.lbl", 77)):
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, 0, 0o644, 0, 0, "", ""
        assert ustar_header(name, size) == info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")
    from tests.test_reader import tiny_jpeg
    jpg = tiny_jpeg(0)
    assert writer.check_image(jpg, "full") is None and writer.check_image(jpg, "header") is None
    assert "truncated" in writer.check_image(jpg[:-40], "header")
    assert "does not decode" in writer.check_image(jpg[:-40], "full")
    assert writer.check_image(b"GIF89a....", "full") == "not a JPEG or PNG file (starts with 47494638)"


def test_json_member_float32_exact_and_short():
    """A sample's json member (orjson): every float32 reads back to the same float32 from its shortest
    digits, strided views included; an object it cannot write is an error, not a silent str()."""
    import json as _json

    from shards.writer import _json_bytes

    rng = np.random.default_rng(0)
    a = (rng.normal(0, 300, (42, 3)) * rng.choice([1e-6, 1e-2, 1, 1e4], (42, 3))).astype(np.float32)
    rec = {"joint_cam": a, "joint_img": a[:, :2], "x": np.float32(0.1), "n": np.int64(7), "m": None,
           "image_path": "/not/written"}
    out = _json_bytes(rec)
    back = _json.loads(out)
    assert "image_path" not in back and back["n"] == 7 and back["m"] is None
    assert np.array_equal(np.asarray(back["joint_cam"], np.float32), a)
    assert np.array_equal(np.asarray(back["joint_img"], np.float32), a[:, :2])
    assert b'"x":0.1,' in out  # shortest float32 digits, not 0.10000000149011612
    with pytest.raises(TypeError):  # orjson.JSONEncodeError
        _json_bytes({"bad": object()})


@pytest.mark.parametrize("case", ["interhand_rootnet", "interhand_no_rootnet", "rhd", "stb"])
def test_batch_labels_equal_per_record_encode(tmp_path, case):
    """The writer's batch label encoding (SplitData.batch -> labels.encode_batch) gives, row by row, the
    bytes labels.encode gives for each record: with and without RootNet, world and inline joints."""
    from shards.reader import load_split

    if case.startswith("interhand"):
        write_interhand(tmp_path, split="val")
        data = load_split("interhand", str(tmp_path), "val", rootnet="auto" if case == "interhand_rootnet" else None)
        assert (data.rootnet_file is not None) == (case == "interhand_rootnet")
    else:
        write_inline(tmp_path, case)
        data = load_split(case, str(tmp_path), "test", rootnet=None)
    rows = np.random.default_rng(0).permutation(len(data))
    recs, lbl, ids = data.batch(rows)
    assert lbl.dtype == np.dtype("<f4") and ids.dtype == np.dtype("<i8") and len(recs) == len(rows) >= 6
    for rec, row_lbl, row_ids in zip(recs, lbl, ids):
        assert (row_lbl.tobytes(), row_ids.tobytes()) == labels.encode(rec)
    with pytest.raises(ValueError, match="field 'bbox' has shape"):
        labels.encode_batch({**{k: np.zeros((2, *shape)) for k, (_, _, shape) in labels.OFFSETS.items()},
                             "bbox": np.zeros((2, 3))}, [1, 2], [1, 2])


def test_parsed_split_arrays_are_narrowed_where_values_fit(tmp_path):
    """Per-image columns and row indices are int32 (4 bytes less per value at millions of rows); ids stay
    int64, and a column whose values do not fit int32 is kept as int64, never wrapped."""
    from shards.checked import narrow as _narrow
    from shards.reader import load_split

    write_interhand(tmp_path, split="val")
    data = load_split("interhand", str(tmp_path), "val", rootnet=None)
    assert data.img["id"].dtype == np.int64 and data.annot_id.dtype == np.int64
    for k in ("width", "height", "capture", "frame_idx", "seq", "cam"):
        assert data.img[k].dtype == np.int32, k
    assert data.ann_img.dtype == data.img_camrow.dtype == data.img_framerow.dtype == np.int32
    assert not hasattr(data, "ann_image_id")
    big = np.array([1, 2 ** 31], dtype=np.int64)
    assert _narrow(big).dtype == np.int64 and _narrow(big)[1] == 2 ** 31
    assert _narrow(np.array([-(2 ** 31), 2 ** 31 - 1])).dtype == np.int32
    assert _narrow(np.zeros(0, np.int64)).dtype == np.int32


def test_checked_floats_reshapes_nesting_and_refuses_bad_values():
    """shards.checked.floats: the one check of numeric annotation fields (reader, RootNet, cameras,
    joint_3d, MANO): another nesting of the right size is reshaped (joint_valid as 42 one-element
    lists), a wrong size, NaN, null or text is refused with the field's name and the reason."""
    from shards.checked import floats

    v = floats([[1], [0]] * 21, (42,), "joint_valid")
    assert v.shape == (42,) and v.dtype == np.float64 and v[:2].tolist() == [1.0, 0.0]
    assert floats([[1, 2, 3]], (3,), "campos").tolist() == [1.0, 2.0, 3.0]
    for value, reason in [([1, 2], "shape (2,), expected (4,)"), ([1, 2, float("nan"), 4], "NaN or infinity"),
                          ([1, 2, None, 4], "NaN or infinity"), (["a", 1, 2, 3], "not numeric"),
                          ([1, 2, float("inf"), 4], "NaN or infinity")]:
        with pytest.raises(ValueError, match=re.escape(reason)) as e:
            floats(value, (4,), "bbox")
        assert str(e.value).startswith("bbox: "), str(e.value)
