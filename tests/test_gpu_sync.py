"""No host sync in the training hot loop (issue 14.1-14.2).

On the CPU: the loader's per-batch torch code (invert_affine, finish_images, make_targets) builds
nothing on the host, checked on 'meta' tensors where any host-made constant shows up (a guard that
fails on the per-batch FLIP_PERM copy this code once had); and the DALI -> torch hand-over passes
torch's stream to DALI and copies asynchronously on it.
On a GPU (`pytest -m gpu`): loader + trainer steps under torch.cuda.set_sync_debug_mode("error")
between two logging points, eager and compiled.

Run: .venv/bin/python -m pytest -q tests/test_gpu_sync.py
"""
from __future__ import annotations

import importlib.util
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from model.config import get_config
from pipeline.targets import finish_images, invert_affine, make_targets
from shards.labels import LABEL_SIZE, OFFSETS
from shards.skeleton import FLIP_PERM



def _has_dali() -> bool:
    try:
        return importlib.util.find_spec("nvidia.dali") is not None
    except ImportError:  # no `nvidia` package at all
        return False


HAS_DALI = _has_dali()
CONFIG = get_config("tiny")
HOST_FACTORIES = {"tensor", "as_tensor", "asarray", "from_numpy", "new_tensor", "frombuffer"}


class HostTensorError(AssertionError):
    pass


class _NoHostFactories(TorchFunctionMode):
    """Tensors made from host data (torch.tensor(list), as_tensor(ndarray), ...): on CUDA each is a
    blocking host-to-device copy. (On 'meta' some of them never reach the dispatcher.)"""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in HOST_FACTORIES:
            raise HostTensorError(f"torch.{func.__name__} in the per-batch code: a host-to-device copy per batch")
        return func(*args, **(kwargs or {}))


class _NoHostTensors(TorchDispatchMode):
    """Any operator that reads or makes a CPU tensor while the batch lives on 'meta': a host
    constant moved to the device (`_to_copy` cpu -> meta) or used from the host (a CPU index)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
        if any(t.device.type == "cpu" for t in tensors):
            raise HostTensorError(f"{func} touches a host tensor in the per-batch code")
        return out


@contextmanager
def no_host_tensors():
    with _NoHostFactories(), _NoHostTensors():
        yield


def meta_batch(b: int = 4, size: int = CONFIG.input_size):
    """The loader's per-batch inputs as DALI hands them over, on the 'meta' device."""
    dev = torch.device("meta")
    return {"lbl": torch.empty(b, LABEL_SIZE, device=dev), "inv": torch.empty(b, 2, 3, device=dev),
            "aug": torch.empty(b, 8, device=dev), "patch": torch.empty(b, size, size, 3, device=dev)}


def loader_batch_code(x):
    """What pipeline.loader.Loader._next runs in torch for one GPU batch."""
    affine = invert_affine(x["inv"])
    img_size = x["lbl"][:, OFFSETS["img_size"][0]:OFFSETS["img_size"][1]]
    images = finish_images(x["patch"], x["inv"], img_size, x["aug"][:, 5:8])
    return {"images": images.permute(0, 3, 1, 2), **make_targets(x["lbl"], affine, x["aug"], CONFIG)}


def test_per_batch_targets_build_nothing_on_the_host():
    x = meta_batch()
    with no_host_tensors():
        out = loader_batch_code(x)
    assert all(v.device.type == "meta" for v in out.values())
    assert out["joint_coord"].shape == (4, 42, 3) and out["images"].shape == (4, 3, 64, 64)


def _old_flip(coord, flip):  # the per-batch index copy make_targets once had
    perm = torch.as_tensor(FLIP_PERM, device=coord.device)
    return torch.where(flip[:, None, None], coord[:, perm], coord)


def _numpy_then_to(coord, flip):
    perm = torch.from_numpy(np.asarray(FLIP_PERM)).to(coord.device)
    return torch.where(flip[:, None, None], coord.index_select(1, perm), coord)


def _host_index(coord, flip):
    return torch.where(flip[:, None, None], coord[:, torch.arange(42).roll(21)], coord)


def _list_constant(coord, flip):
    return coord * torch.tensor([1.0, 1.0, 2.0], device=coord.device)


@pytest.mark.parametrize("bad", [_old_flip, _numpy_then_to, _host_index, _list_constant])
def test_the_guard_catches_a_per_batch_host_constant(bad):
    """The guard above is not vacuous: each way of building a constant on the host per batch fails it."""
    coord, flip = torch.empty(4, 42, 3, device="meta"), torch.empty(4, dtype=torch.bool, device="meta")
    bad(coord, flip)  # fine outside the guard
    with pytest.raises(HostTensorError):
        with no_host_tensors():
            bad(coord, flip)


# --- the DALI -> torch hand-over ----------------------------------------------------------------------

class _FakeGPUList:
    """A real DALI TensorListCPU (shape, dtype, density) whose copy_to_external records its call, as a
    TensorListGPU's would be made."""

    def __init__(self, tl, calls):
        self.tl, self.calls = tl, calls

    def shape(self):
        return self.tl.shape()

    @property
    def dtype(self):
        return self.tl.dtype

    def is_dense_tensor(self):
        return self.tl.is_dense_tensor()

    def as_tensor(self):
        return self

    def copy_to_external(self, ptr, cuda_stream=None, non_blocking=False, use_copy_kernel=False):
        self.calls.append({"ptr": ptr.value, "stream": cuda_stream.value, "non_blocking": non_blocking})


@pytest.mark.skipif(not HAS_DALI, reason="needs NVIDIA DALI")
def test_dali_outputs_are_bound_to_the_consumers_stream_and_copied_on_it(monkeypatch):
    """Loader._run_pipe hands DALI the stream batches are consumed on, and _to_torch fills a fresh
    tensor by an asynchronous copy on that stream (shapes and dtypes from DALI's own TensorLists).
    The GPU half of this runs in test_loader_and_train_steps_do_not_sync_the_host."""
    from nvidia.dali import fn, types
    from nvidia.dali.pipeline import Pipeline

    from pipeline.loader import Loader

    pipe = Pipeline(batch_size=3, num_threads=1, device_id=None)
    with pipe:
        pipe.set_outputs(fn.constant(fdata=[1.0] * 6, shape=[2, 3], dtype=types.FLOAT),
                         fn.constant(idata=[7, 8], shape=[2], dtype=types.INT64))
    pipe.build()
    stream = type("Stream", (), {"cuda_stream": 1234})()
    seen, calls = [], []
    loader = Loader.__new__(Loader)  # only the two methods under test, on a device that is not the CPU
    loader.device, loader._pipe = torch.device("meta"), pipe
    monkeypatch.setattr(pipe, "run", lambda s=None: seen.append(s) or Pipeline.run(pipe))
    inv, ids = loader._run_pipe(stream)
    assert seen == [stream]
    t = loader._to_torch(_FakeGPUList(inv, calls), stream)
    i = loader._to_torch(_FakeGPUList(ids, calls), stream)
    assert (t.shape, t.dtype, i.shape, i.dtype) == ((3, 2, 3), torch.float32, (3, 2), torch.int64)
    assert [(c["stream"], c["non_blocking"]) for c in calls] == [(1234, True)] * 2


# --- on a GPU --------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.skipif(not HAS_DALI, reason="needs NVIDIA DALI")
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_loader_and_train_steps_do_not_sync_the_host(tmp_path, compile):
    """The trainer's hot loop (loader batch -> train.loop's step -> losses summed on the device) runs
    N steps, across an epoch boundary, under sync_debug_mode 'error': any host sync raises. The
    losses are read once, at the logging point after it, as train.loop does. DALI got torch's stream."""
    from benchmarks.gpu_parts import guarded_steps
    from model import Criterion, build_model
    from pipeline import build_loader
    from tests.test_pipeline_fixtures import write_split
    from train.config import TrainConfig
    from train.loop import build_optimizer, make_train_step

    device = torch.device("cuda", torch.cuda.current_device())
    split, _, _ = write_split(tmp_path, "train", 12, per_shard=4, seed=3)
    cfg = TrainConfig(model=CONFIG, batch_size=4, compile=compile)
    torch.manual_seed(0)
    model = build_model(CONFIG).to(device).to(memory_format=torch.channels_last)
    fwd = torch.compile(model) if compile else model
    optimizer = build_optimizer(model, cfg, device)
    step = make_train_step(cfg, device, fwd, Criterion(CONFIG), optimizer)
    loader = build_loader(split, CONFIG, batch_size=4, train=True, device=device, num_threads=2, initial_fill=8)
    streams = []
    run = loader._pipe.run
    loader._pipe.run = lambda s=None: streams.append(s) or run(s)

    def batches():
        while True:
            yield from loader

    it = batches()
    for _ in range(3):  # compilation, cuDNN autotuning, allocator growth: before the guard
        step(next(it))
    torch.cuda.synchronize(device)
    sums = guarded_steps(it, step, 2 * len(loader) + 1, device)  # (benchmarks.gpu's sync check runs the same)
    logged = sums.tolist()  # the logging point: one sync
    assert all(np.isfinite(logged))
    assert streams and all(s is not None and s.cuda_stream == torch.cuda.current_stream(device).cuda_stream
                           for s in streams)
