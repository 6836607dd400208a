"""Object storage end to end against a real S3-compatible server (moto's, its own process on
127.0.0.1; tests/s3_fixtures.py) through s3fs and DALI: shards written to a bucket equal the local
conversion byte for byte (1 and 2 worker processes), read back by every reader; resume after an
interrupted write; evaluation's ground truth from the bucket; DALI reading s3:// itself; training and
`eval --checkpoint` from the bucket (DALI reading it, or a sha256-checked local cache: shards.cache);
the credentials in no file and no log."""
import hashlib
import json
import os
import subprocess

import numpy as np
import pytest

from shards import writer
from shards.__main__ import main as shards_main
from shards.index import iter_shard_samples, open_split
from tests.s3_fixtures import ACCESS_KEY, SECRET, s3, s3_server  # noqa: F401  (fixtures)
from tests.test_reader import write_interhand
from tests.test_shards import convert, digest
from tests.test_train_fixtures import FAST, REPO, python, train_shards


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3data") / "data"
    write_interhand(root, split="val")
    return root


@pytest.fixture(scope="module")
def local(data_root, tmp_path_factory):
    """The local conversion of the same input and seed, 2 samples per shard."""
    out = tmp_path_factory.mktemp("s3local")
    convert(data_root, out, shard_count=2)
    return out / "val"


def bucket_digest(s3, url):
    """{name: sha256} of the .tar/.idx objects under a bucket URL (as tests.test_shards.digest)."""
    return {p.rsplit("/", 1)[1]: hashlib.sha256(s3.fs.cat(p)).hexdigest()
            for p in sorted(s3.fs.ls(url, detail=False)) if p.endswith((".tar", ".idx"))}


def assert_no_credentials(texts=(), folders=()):
    """Neither key appears in the given strings nor in any file under the folders."""
    for i, t in enumerate(texts):
        assert SECRET not in t and ACCESS_KEY not in t, f"a credential in captured output #{i}"
    for folder in folders:
        files = [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names]
        assert files, folder
        for p in files:
            with open(p, "rb") as f:
                data = f.read()
            assert SECRET.encode() not in data and ACCESS_KEY.encode() not in data, f"a credential in {p}"


@pytest.mark.parametrize("workers", [1, 2])
def test_shards_in_a_bucket_equal_the_local_ones(s3, data_root, local, workers, capfd):
    """`python -m shards --out s3://...` (forked workers open the bucket with their own s3fs), then
    every reader of the split on the bucket: the same bytes and manifest as the local conversion."""
    assert shards_main(["--source", "interhand", "--root", str(data_root), "--out", s3.url("shards"), "--splits", "val",
                        "--shard-count", "2", "--workers", str(workers), "--quiet"]) in (0, None)
    url = s3.url("shards/val")
    assert bucket_digest(s3, url) == digest(local) and len(digest(local)) == 12
    assert not [p for p in s3.fs.ls(url, detail=False) if p.endswith(".tmp")]
    split, want = open_split(url), open_split(str(local))
    assert split.manifest == want.manifest and split.tars == [f"{url}/{os.path.basename(t)}" for t in want.tars]
    for s in split.shards:  # the manifest's checksums hold for the objects
        assert hashlib.sha256(s3.fs.cat(s["tar"])).hexdigest() == s["sha256"] and s3.fs.size(s["tar"]) == s["bytes"]
        assert hashlib.sha256(s3.fs.cat(s["idx"])).hexdigest() == s["idx_sha256"]
    got, ref = list(iter_shard_samples(url)), list(iter_shard_samples(str(local)))
    assert len(got) == 12 and got == ref
    assert_no_credentials([s3.fs.cat(f"{url}/manifest.json").decode(), *capfd.readouterr()])


def test_resume_after_an_interrupted_write_to_a_bucket(s3, data_root, local, monkeypatch):
    """tests/test_shards.py::test_resume_after_interruption on the bucket: a run stopped after three
    shards, one finished shard then garbled and a killed run's temporary object left behind; the
    re-run keeps the two intact shards, rewrites the rest and removes the leftover."""
    out, url = s3.url("out"), s3.url("out/val")
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
    man = json.loads(s3.fs.cat(f"{url}/manifest.json"))
    assert not man["complete"] and sum(s is not None for s in man["shards"]) == 3
    with pytest.raises(ValueError, match="did not finish"):
        open_split(url)
    tar = bytearray(s3.fs.cat(f"{url}/val-000001.tar"))
    tar[600:602] = b"XX"
    s3.fs.pipe(f"{url}/val-000001.tar", bytes(tar))  # corrupt a finished shard
    s3.fs.pipe(f"{url}/.val-000005.tar.999-0123abcd.tmp", b"partial")  # a killed run's leftover
    s3.fs.pipe(f"{url}/notes.txt", b"not ours")  # a foreign object stays
    kept_etag = s3.fs.info(f"{url}/val-000000.tar")["ETag"]
    man = convert(data_root, out, shard_count=2)
    assert man["_run"] == {**man["_run"], "shards_kept": 2, "shards_written": 4}
    assert s3.fs.info(f"{url}/val-000000.tar")["ETag"] == kept_etag
    assert bucket_digest(s3, url) == digest(local)
    assert sorted(p.rsplit("/", 1)[1] for p in s3.fs.ls(url, detail=False) if not p.endswith((".tar", ".idx"))) == [
        "filestat.json", "manifest.json", "notes.txt"]
    assert convert(data_root, out, shard_count=2)["_run"]["shards_kept"] == 6  # finished: nothing to redo


def test_eval_ground_truth_from_the_bucket(s3, local, tmp_path):
    """`python -m eval --predictions ... --shards s3://...` (its own process, the AWS variables only)
    gives the metrics of the same predictions on the local shards; best/worst read JPEGs from the bucket."""
    from eval.__main__ import main as eval_main
    from eval.gt import load_gt

    s3.fs.put(str(local) + "/", s3.url("shards/val"), recursive=True)
    gt_local, gt = load_gt(str(local), progress=False), load_gt(s3.url("shards/val"), progress=False)
    for k in gt_local:
        if k != "tars":
            np.testing.assert_array_equal(gt[k], gt_local[k], err_msg=k)
    rng = np.random.default_rng(0)
    preds = tmp_path / "preds.npz"
    np.savez(preds, annot_id=gt_local["annot_id"], hand_type=rng.uniform(0, 1, (len(gt_local["annot_id"]), 2)),
             joint_cam=gt_local["joint_cam"] + rng.normal(0, 20, gt_local["joint_cam"].shape))
    res = subprocess.run([python(), "-m", "eval", "--predictions", str(preds), "--shards", s3.url("shards"),
                          "--split", "val", "--out", str(tmp_path / "bucket"), "--pictures", "2", "--quiet"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    eval_main(["--predictions", str(preds), "--shards", str(local.parent), "--split", "val",
               "--out", str(tmp_path / "local"), "--pictures", "0", "--quiet"])
    got, want = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("bucket", "local"))
    assert got.pop("meta")["shards"] == s3.url("shards") and want.pop("meta")
    assert got == want and 0 < got["mpjpe_all"] < 100
    assert (tmp_path / "bucket" / "worst.png").stat().st_size > 1000
    assert_no_credentials([res.stdout, res.stderr], [tmp_path / "bucket"])


def test_dali_reads_every_sample_from_the_bucket(s3, local):
    """DALI's fn.readers.webdataset opens s3:// tars and index files itself (the AWS SDK for C++, endpoint
    and keys from the AWS variables): every sample, byte for byte."""
    from nvidia.dali import fn, pipeline_def, types

    s3.fs.put(str(local) + "/", s3.url("shards/val"), recursive=True)
    split = open_split(s3.url("shards/val"))
    assert all(t.startswith("s3://") for t in split.tars + split.idxs)

    @pipeline_def(batch_size=4, num_threads=1, device_id=None)
    def pipe():
        return tuple(fn.readers.webdataset(paths=split.tars, index_paths=split.idxs, ext=["jpg", "lbl", "ids"],
                                           dtypes=[types.UINT8, types.FLOAT, types.INT64],
                                           missing_component_behavior="error", name="r"))
    p = pipe()
    p.build()
    assert p.epoch_size("r") == 12
    want = {int(k): (lbl, jpg) for k, _, lbl, _, jpg in iter_shard_samples(str(local))}
    got = {}
    for _ in range(3):
        for jpg, lbl, ids in zip(*(list(o) for o in p.run())):
            got[int(np.array(ids)[0])] = (np.array(lbl).tobytes(), np.array(jpg).tobytes())
    assert got == want


def test_train_and_evaluate_from_the_bucket(s3, tmp_path_factory, tmp_path):
    """`train/main.py --shards s3://...` (two steps of the tiny model) and `python -m eval --checkpoint`
    on the bucket's val split, each in its own process; the keys are in no file of the run or
    evaluation folders and in none of their output."""
    shards = train_shards(tmp_path_factory)
    for split in ("train", "val"):
        s3.fs.put(str(shards / split) + "/", s3.url(f"shards/{split}"), recursive=True)
    run, ev = tmp_path / "run", tmp_path / "eval"
    res = subprocess.run([python(), str(REPO / "train" / "main.py"), f"--shards={s3.url('shards')}", f"--out={run}",
                          *FAST, "--max_steps=2", "--val_every=0", "--ckpt_every=1"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    n_train = open_split(s3.url("shards/train")).num_samples
    assert "finished at step 2" in res.stdout and f"train: {n_train} samples" in res.stdout
    assert json.loads((run / "config.json").read_text())["shards"] == s3.url("shards")
    assert (run / "final.pt").is_file() and (run / "checkpoints" / "step_00000002.pt").is_file()
    cache = tmp_path / "cache"
    res2 = subprocess.run([python(), "-m", "eval", "--checkpoint", str(run / "final.pt"), "--shards", s3.url("shards"),
                           "--split", "val", "--out", str(ev), "--device", "cpu", "--batch-size", "8",
                           "--pictures", "1", "--cache-dir", str(cache)], cwd=REPO, capture_output=True, text=True,
                          timeout=180)
    assert res2.returncode == 0, res2.stderr[-3000:]
    assert f"caching {s3.url('shards/val')}" in res2.stderr
    metrics = json.loads((ev / "metrics.json").read_text())
    n_val = open_split(s3.url("shards/val")).num_samples
    assert n_val > 10 and metrics["num_samples"] == n_val
    assert len(np.load(ev / "predictions.npz")["annot_id"]) == n_val
    assert digest(cache / "s3" / s3.bucket / "shards" / "val") == digest(shards / "val")
    assert_no_credentials([res.stdout, res.stderr, res2.stdout, res2.stderr], [run, ev, cache])


def test_loader_reads_the_bucket_as_the_local_folder(s3, local, monkeypatch):
    """build_loader on s3:// (DALI reading the objects) and through the cache give the local folder's batches.
    With verify, the local folder and the cached copy are hashed against the manifest; the bucket DALI
    reads directly is not (that would fetch every object twice)."""
    from model import build_model
    from pipeline import build_loader
    from pipeline import loader as loader_module

    s3.fs.put(str(local) + "/", s3.url("shards/val"), recursive=True)
    config = build_model("tiny").config
    verified = []
    real = loader_module.verify_shards
    monkeypatch.setattr(loader_module, "verify_shards", lambda split, *a, **k: (verified.append(split.url),
                                                                                 real(split, *a, **k)))

    def batches(url, **kw):
        loader = build_loader(url, config, batch_size=5, train=False, device="cpu", num_threads=1, progress=False,
                              verify=True, **kw)
        return [(b["annot_id"].tolist(), b["images"].numpy().copy()) for b in loader]
    want = batches(str(local))
    for got in (batches(s3.url("shards/val")), batches(s3.url("shards/val"), cache_dir=str(local.parent / "cache"))):
        assert [ids for ids, _ in got] == [ids for ids, _ in want] and sum(len(ids) for ids, _ in got) == 12
        for (_, a), (_, b) in zip(got, want):
            np.testing.assert_array_equal(a, b)
    assert len(verified) == 2 and verified[0] == str(local) and "://" not in verified[1], verified


def test_training_loader_on_the_bucket_resumes_mid_epoch(s3, local):
    """The DALI reader state of a loader reading s3:// restores exactly (the trainer's --resume)."""
    from model import build_model
    from pipeline import build_loader

    s3.fs.put(str(local) + "/", s3.url("shards/val"), recursive=True)

    def make():
        return build_loader(s3.url("shards/val"), build_model("tiny").config, batch_size=2, train=True, device="cpu",
                            num_threads=1, seed=3, progress=False)
    a = make()
    it = iter(a)
    for _ in range(2):
        next(it)
    state = a.state_dict()
    want = [next(it)["annot_id"].tolist() for _ in range(3)]
    b = make()
    b.load_state_dict(state)
    assert [batch["annot_id"].tolist() for batch, _ in zip(b, range(3))] == want
    assert SECRET not in repr(state) and ACCESS_KEY not in repr(state)


def test_cache_downloads_once_checks_sha256_and_refetches_what_changed(s3, local, tmp_path, monkeypatch):
    from shards import cache

    url = s3.url("shards/val")
    s3.fs.put(str(local) + "/", url, recursive=True)
    dest = cache.cache_split(url, str(tmp_path / "c"), progress=False)
    assert dest == str(tmp_path / "c" / "s3" / s3.bucket / "shards" / "val")
    assert digest(dest) == digest(local) and open_split(dest).manifest == open_split(str(local)).manifest
    real, fetched = cache._download, []

    def counting(fs, remote, *a):
        fetched.append(remote.rsplit("/", 1)[1])
        return real(fs, remote, *a)
    monkeypatch.setattr(cache, "_download", counting)
    assert cache.cache_split(url, str(tmp_path / "c"), progress=False) == dest and fetched == []  # kept
    with open(os.path.join(dest, "val-000002.tar"), "r+b") as f:  # damaged on the local disk
        f.seek(700)
        f.write(b"XX")
    cache.cache_split(url, str(tmp_path / "c"), progress=False)
    assert fetched == ["val-000002.tar"] and digest(dest) == digest(local)
    tar = bytearray(s3.fs.cat(f"{url}/val-000003.tar"))
    tar[700:702] = b"XX"
    s3.fs.pipe(f"{url}/val-000003.tar", bytes(tar))  # changed in the bucket after the conversion
    with pytest.raises(ValueError, match=r"val-000003.tar: \d+ bytes with sha256 [0-9a-f]{64}, its manifest says"):
        cache.cache_split(url, str(tmp_path / "fresh"), progress=False)
    fresh = tmp_path / "fresh" / "s3" / s3.bucket / "shards" / "val"
    assert not (fresh / "val-000003.tar").exists() and not (fresh / "manifest.json").exists()
    assert not [p for p in os.listdir(fresh) if p.endswith(".tmp")]
    with pytest.raises(FileNotFoundError, match="has no manifest.json"):
        open_split(str(fresh))


def test_other_urls_are_read_through_the_default_cache(tmp_path, monkeypatch):
    """A URL DALI cannot open (here memory://) is copied to ~/.cache/interhand-fast/shards first."""
    from model import build_model
    from pipeline import build_loader

    write_interhand(tmp_path / "data", split="val")
    convert(tmp_path / "data", "memory://s3test/out")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    loader = build_loader("memory://s3test/out/val", build_model("tiny").config, batch_size=4, train=False,
                          device="cpu", num_threads=1, progress=False)
    assert loader.split_dir == str(tmp_path / "xdg" / "interhand-fast" / "shards" / "memory" / "s3test" / "out" / "val")
    assert sum(len(b["annot_id"]) for b in loader) == 12
