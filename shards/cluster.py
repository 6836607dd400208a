"""Shard writes as Ray tasks across a cluster's nodes (`python -m shards ... --cluster ...`; the
converter is shards.writer.convert_split, the same plan and bytes as without a cluster).

    --cluster ray              the cluster RAY_ADDRESS names, else a Ray instance started here with
                               --workers CPUs (and stopped at the end)
    --cluster auto             the cluster this node has joined (`ray start --head` / `--address`)
    --cluster ray://HOST:PORT  Ray Client: a cluster's head, from any machine

The driver parses the split and plans the shards as it does without a cluster; the parsed split goes
to Ray's object store once (ray.put: every worker on a node reads its numpy arrays zero-copy from
shared memory) and each task gets a reference to it, never a copy. A task that fails is retried
(MAX_RETRIES: a worker or node that died, an OSError such as a dropped connection). A shard whose task
keeps failing is reported with its cause after the others are written and recorded in the manifest,
so re-running the same command writes only what is missing; a ValueError (an unusable image under
--strict) stops the run at once, as it does without a cluster. Every node needs this package and its
dependencies (the same environment) and must reach the inputs (a shared file system or a bucket:
--root may be an fsspec URL) and the output.
"""
from __future__ import annotations

import copy
import os
import secrets

import numpy as np

MAX_RETRIES = 3
RETRY_ON = (OSError,)  # transient I/O; a worker or node that died is always retried
BULK_BYTES = 1 << 16  # arrays of the parsed split at least this large go to the object store one by one


def _task(ctx, fn_name, job):
    """On a Ray worker: one of the writer's worker functions on one job; the split and options are
    set up once per worker process and run (the split from the object store)."""
    from . import writer

    if writer._STATE.get("run") != ctx["run"]:
        import ray

        skeleton, arrays = ctx["data"]
        data = ray.get(skeleton)
        for key, arr in zip(arrays, ray.get(list(arrays.values()))):
            _assign(data, key, arr)
        writer._STATE.clear()
        writer._STATE.update(ctx["state"], run=ctx["run"], data=data)
    return getattr(writer, fn_name)(job)


def _bulk(data):
    """The large numpy arrays of a parsed split: (attribute,) or (dict attribute, key) -> array."""
    out = {}
    for name, v in vars(data).items():
        items = v.items() if isinstance(v, dict) else [(None, v)]
        for k, a in items:
            if isinstance(a, np.ndarray) and a.nbytes >= BULK_BYTES:
                out[(name,) if k is None else (name, k)] = a
    return out


def _assign(data, key, value):
    if len(key) == 1:
        setattr(data, key[0], value)
    else:
        getattr(data, key[0])[key[1]] = value


def put_split(ray, data):
    """Put a parsed split in the object store, array by array (each one's heap copy goes as soon as it
    is in: the driver never holds the split twice); returns (the references, the split reading the
    store's copies: read-only arrays, zero-copy)."""
    arrays = {}
    skeleton = copy.copy(data)  # the split without its arrays (dict attributes copied, not shared)
    for name, v in vars(data).items():
        if isinstance(v, dict):
            setattr(skeleton, name, dict(v))
    for key, arr in _bulk(data).items():
        arrays[key] = ray.put(arr)
        _assign(skeleton, key, None)
        _assign(data, key, ray.get(arrays[key]))
    return (ray.put(skeleton), arrays), data


def address(cluster: str) -> str:
    """ray.init's address for a --cluster value ("local": start a Ray instance here); ValueError if bad."""
    if cluster == "ray":
        return os.environ.get("RAY_ADDRESS") or "local"
    if cluster == "auto" or (cluster.startswith("ray://") and len(cluster) > len("ray://")):
        return cluster
    raise ValueError(f"--cluster must be ray, auto or ray://HOST:PORT, got {cluster!r}")


def connect(cluster: str, workers: int):
    """ray.init for a --cluster value; -> (the ray module, whether this call connected)."""
    where = address(cluster)  # "local": start a Ray instance here
    try:
        import ray
    except ImportError:
        raise RuntimeError("--cluster needs Ray: pip install -e '.[cluster]' (make setup installs it)") from None
    if ray.is_initialized():  # the caller's own connection (e.g. a test's local cluster)
        return ray, False
    local = {"num_cpus": workers, "include_dashboard": False} if where == "local" else {}
    ray.init(address=where, logging_level="WARNING", **local)
    return ray, True


def _failure(err, ray) -> tuple[str, bool]:
    """(what went wrong, whether it is final at once: a ValueError is the data's, not the machine's)."""
    if isinstance(err, ray.exceptions.RayTaskError) and err.cause is not None:
        cause = err.cause
        tries = f" (after {1 + MAX_RETRIES} attempts)" if isinstance(cause, RETRY_ON) else ""
        return f"{type(cause).__name__}: {cause}{tries}", isinstance(cause, ValueError)
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first[:300]} (after {1 + MAX_RETRIES} attempts)", False


class RayPool:
    """The writer's pool interface (map, results, close, workers) on a Ray cluster."""

    def __init__(self, cluster: str, state: dict, workers: int):
        self.ray, self.owned = connect(cluster, workers)
        ray = self.ray
        try:
            refs, state["data"] = put_split(ray, state["data"])  # the driver, too, reads the store's copy
            from .writer import trim_heap
            trim_heap()  # the arrays' heap copies
            self.ctx = {"run": secrets.token_hex(8), "data": refs,  # references nested in the argument: not resolved
                        "state": {k: v for k, v in state.items() if k not in ("data", "counter")}}
            self.split = state["split"]
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
            self.remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=list(RETRY_ON))(_task)
        except BaseException:
            self.close()
            raise

    def _wait(self, refs, n):
        """ray.wait for n of refs, returning to Python every second so that ^C (KeyboardInterrupt) works."""
        while True:
            done, rest = self.ray.wait(refs, num_returns=n, timeout=1.0)
            if len(done) >= n:
                return done, rest

    def map(self, fn, jobs):
        """[fn(job) for job in jobs] as Ray tasks (the writer's _stat_images, _verify_shard)."""
        refs = [self.remote.remote(self.ctx, fn.__name__, j) for j in jobs]
        try:
            self._wait(refs, len(refs))
            return self.ray.get(refs)
        except self.ray.exceptions.RayError as e:
            what, _ = _failure(e, self.ray)
            raise RuntimeError(f"a Ray task of {fn.__name__} failed: {what}") from None
        except BaseException:  # ^C
            for ref in refs:
                self.ray.cancel(ref, force=True)
            raise

    def results(self, todo, bar):
        """Yield _write_shard's results as tasks finish; failures are reported at the end (see the
        module docstring), a ValueError at once."""
        ray = self.ray
        pending = {self.remote.remote(self.ctx, "_write_shard", job): job for job in todo}
        failed = []
        try:
            while pending:
                done, _ = self._wait(list(pending), 1)
                job = pending.pop(done[0])
                try:
                    res = ray.get(done[0])
                except ray.exceptions.RayError as e:
                    what, final = _failure(e, ray)
                    if final:
                        raise e.cause from None
                    failed.append(f"shard {self.split}-{job[0]:06d}: {what}")
                    continue
                bar.update(len(job[1]))
                yield res
        finally:
            for ref in pending:  # stopped early (an error, ^C): nothing of this run goes on writing
                ray.cancel(ref, force=True)
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(todo)} shards failed on the cluster (the others are written and "
                               "recorded: re-running the same command writes only these): " + "; ".join(failed))

    def close(self):
        if self.owned:
            self.ray.shutdown()
            self.owned = False
