"""Shards written by Ray tasks (python -m shards --cluster; shards/cluster.py) on a local Ray cluster
this module starts and stops (2 CPUs): the same bytes and manifest as the local converter, a worker
killed mid-shard (retried), a shard that keeps failing (reported, then resumed), the split put in the
object store once, an fsspec root read by the workers, and the CLI joining a running cluster.

Faults are injected on the workers by a Ray worker setup hook (install_faults below): a file named
`exit-<annot_id>` in the faults folder makes the first worker that writes that sample die (os._exit,
after the shard's earlier samples are written); `fail-<annot_id>` makes every attempt raise OSError.
"""
import json
import os
import pickle
import subprocess
import sys

import pytest
import ray

import shards.cluster
from shards import writer
from shards.index import iter_shard_samples
from shards.reader import load_split
from tests.test_reader import write_interhand
from tests.test_shards import convert, digest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAULTS_ENV = "SHARDS_TEST_FAULTS"


def install_faults():
    """Ray worker setup hook: wrap writer._json_bytes (called for every sample, outside the image
    check) with the faults the test folder names."""
    folder = os.environ.get(FAULTS_ENV)
    if not folder:
        return
    real = writer._json_bytes

    def faulty(rec):
        aid = rec["annot_id"]
        marker = os.path.join(folder, f"exit-{aid}")
        if os.path.exists(marker):
            os.remove(marker)  # only the first attempt dies
            os._exit(1)
        if os.path.exists(os.path.join(folder, f"fail-{aid}")):
            raise OSError(5, f"injected I/O error at annotation {aid}")
        return real(rec)
    writer._json_bytes = faulty


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    faults = tmp_path_factory.mktemp("faults")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": REPO, FAULTS_ENV: str(faults)},
                          "worker_process_setup_hook": "tests.test_shards_cluster.install_faults"})
    yield faults
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The test split (12 annotations) and its local conversion, 2 samples per shard."""
    base = tmp_path_factory.mktemp("clusterdata")
    write_interhand(base / "data", split="val")
    convert(base / "data", base / "local", shard_count=2, seed=5)
    return base / "data", base / "local" / "val"


def keys_by_shard(split_dir):
    keys = [int(s[0]) for s in iter_shard_samples(str(split_dir))]
    return [keys[i:i + 2] for i in range(0, len(keys), 2)]


def ray_convert(root, out, **kw):
    return convert(root, out, shard_count=2, seed=5, cluster="ray", **kw)


def test_same_bytes_as_local_with_a_worker_killed_mid_shard(cluster, data, tmp_path, monkeypatch):
    root, local = data
    victim = keys_by_shard(local)[1][1]  # the second sample of shard 1: the first one is already written
    (cluster / f"exit-{victim}").write_text("")
    monkeypatch.setattr(shards.cluster, "BULK_BYTES", 0)  # every array goes on its own, as large ones do
    puts, real_put = [], ray.put
    monkeypatch.setattr(ray, "put", lambda obj, **kw: puts.append(type(obj).__name__) or real_put(obj, **kw))
    man = ray_convert(root, tmp_path / "out")
    assert not (cluster / f"exit-{victim}").exists()  # a worker did die on it, and the retry wrote the shard
    d = tmp_path / "out" / "val"
    assert digest(d) == digest(local)
    assert (d / "manifest.json").read_bytes() == (local / "manifest.json").read_bytes()
    assert man["_run"]["cluster"] == "ray" and man["_run"]["shards_written"] == 6
    assert not [p for p in os.listdir(d) if p.endswith(".tmp")]  # the dead attempt's temporary file is gone
    arrays = shards.cluster._bulk(load_split("interhand", str(root), "val"))
    assert len(arrays) > 20 and sorted(puts) == ["SplitData"] + ["ndarray"] * len(arrays)  # once, not once per task


def test_the_tasks_carry_a_reference_not_the_split(cluster, data, monkeypatch):
    monkeypatch.setattr(shards.cluster, "BULK_BYTES", 0)
    state = {"data": load_split("interhand", str(data[0]), "val"), "split": "val", "fs": None}
    pool = shards.cluster.RayPool("ray", state, 2)
    size = len(pickle.dumps(pool.ctx))  # what every task is sent besides its job
    assert size < 2000 and isinstance(pool.ctx["data"][0], ray.ObjectRef)
    assert not state["data"].annot_id.flags.writeable  # the driver, too, reads the object store's copy


def test_a_shard_that_keeps_failing_is_reported_and_a_rerun_resumes(cluster, data, tmp_path):
    root, local = data
    victim = keys_by_shard(local)[2][0]
    (cluster / f"fail-{victim}").write_text("")
    with pytest.raises(RuntimeError, match=r"1 of 6 shards failed .* shard val-000002: OSError: .*injected I/O error "
                                           rf"at annotation {victim} \(after 4 attempts\)"):
        ray_convert(root, tmp_path / "out")
    man = json.loads((tmp_path / "out" / "val" / "manifest.json").read_text())
    assert not man["complete"] and [e is None for e in man["shards"]] == [False, False, True, False, False, False]
    (cluster / f"fail-{victim}").unlink()
    man = ray_convert(root, tmp_path / "out")
    assert man["_run"] == {**man["_run"], "shards_kept": 5, "shards_written": 1}
    assert digest(tmp_path / "out" / "val") == digest(local)
    assert (tmp_path / "out" / "val" / "manifest.json").read_bytes() == (local / "manifest.json").read_bytes()


def test_an_fsspec_root_read_by_the_workers(cluster, data, tmp_path):
    """local:// is fsspec's local file system under a URL: the reader and the workers take the
    fsspec path (shards.fsio), as for s3:// or gs://; the shards are the same bytes."""
    root, local = data
    man = ray_convert(f"local://{root}", tmp_path / "out")
    assert man["options"]["root"] == f"local://{root}" and man["counts"]["total"] == 12
    assert digest(tmp_path / "out" / "val") == digest(local)


def test_cli_joins_a_running_cluster(cluster, data, tmp_path):
    """python -m shards --cluster ray in its own process, RAY_ADDRESS naming this module's cluster."""
    root, local = data
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "PYTHONPATH": REPO}
    r = subprocess.run([sys.executable, "-m", "shards", "--source", "interhand", "--root", str(root), "--out",
                        str(tmp_path / "out"), "--splits", "val", "--shard-count", "2", "--seed", "5", "--quiet",
                        "--cluster", "ray"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "6 shards written, 0 kept from an earlier run (ray)" in r.stdout
    assert digest(tmp_path / "out" / "val") == digest(local)
    r = subprocess.run([sys.executable, "-m", "shards", "--source", "interhand", "--root", str(root), "--out",
                        str(tmp_path / "o2"), "--splits", "val", "--cluster", "spark"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "--cluster must be ray, auto or ray://HOST:PORT, got 'spark'" in r.stderr
