"""The iterator the trainer and the evaluation use: DALI graph -> batch dicts of torch tensors.

    loader = build_loader("data/shards/interhand/train", model.config, batch_size=16, train=True,
                          device=device, rank=rank, world_size=world_size, seed=0)
    for batch in loader:  # len(loader) batches, then the next epoch
        images = batch["images"]  # (B, 3, 256, 256) float in [0, 1], channels_last

Training: an endless shuffled stream cut into epochs of len(loader) full batches, the same count on
every rank (floor(N / world_size / batch_size)), so DDP never waits on a rank with a ragged batch.
Evaluation: each rank reads its contiguous part in stored order; DALI pads the last batch by
repeating the part's last sample, and those repeats are dropped by annot_id, so every sample comes
out exactly once across ranks (ranks may differ by one batch: gather predictions at the end).
"""
from __future__ import annotations

import ctypes
import os
import threading
import weakref
from contextlib import contextmanager

import numpy as np
import torch

from shards.datacheck import DataError, describe_data_error, is_dali_error, verify_shards
from shards.cache import cache_split
from shards.index import open_split
from shards.labels import LABEL_SIZE, OFFSETS

from .graph import WARPS, build_pipeline
from .targets import finish_images, invert_affine, make_targets

_NONE = np.iinfo(np.int64).min  # no annot_id
# DALI's webdataset reader opens local files and s3:// objects itself (the AWS SDK: endpoint, region and
# credentials from the standard AWS variables or ~/.aws, as s3fs, which reads the manifest, does). Other
# URLs, or any URL with cache_dir, are read from a verified local copy (shards.cache.cache_split).
DALI_URLS = ("file://", "s3://")
SPARE_BUFFERS = 3  # CPU output buffers kept for reuse: the batch in use, the one before, one more


_cv_lock = threading.Lock()
_cv_state = {"users": 0, "saved": None}  # loaders warping right now; the caller's OpenCV thread count


@contextmanager
def _one_opencv_thread(cv2):
    """OpenCV's worker threads off while loaders warp (any number of them, in any threads), the
    process's setting back when the last one is done. One warping thread per loader: the other
    cores decode, and OpenCV splitting each warp across them cost 7 % of the images/s on 2 cores."""
    with _cv_lock:
        if _cv_state["users"] == 0:
            _cv_state["saved"] = cv2.getNumThreads()
            cv2.setNumThreads(1)
        _cv_state["users"] += 1
    try:
        yield
    finally:
        with _cv_lock:
            _cv_state["users"] -= 1
            if _cv_state["users"] == 0:
                cv2.setNumThreads(_cv_state["saved"])


def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """The samples [start, end) DALI's reader gives shard `rank` of `world_size`."""
    return n * rank // world_size, n * (rank + 1) // world_size


class Loader:
    """See the module docstring. Build it with build_loader()."""

    def __init__(self, split_dir, config, *, batch_size: int, train: bool, device, rank: int = 0, world_size: int = 1,
                 seed: int = 0, num_threads: int | None = None, use_rootnet: bool = False,
                 hw_decoder_load: float = 0.65, prefetch: int = 2, force_aug=None, initial_fill: int = 4096,
                 half_pixel: bool = True, warp: str | None = None, progress: bool = True, cache_dir: str | None = None,
                 verify: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        if use_rootnet and train:
            raise ValueError("use_rootnet takes the RootNet bbox, which is for evaluation only (train=False)")
        url = str(split_dir)
        if "://" in url and not url.startswith("file://") and (cache_dir or not url.startswith(DALI_URLS)):
            url = cache_split(url, cache_dir or None, progress=progress and rank == 0)  # verified local copy
        self.split = open_split(url.removeprefix("file://"))
        self.split_dir = self.split.url
        if "://" in self.split_dir:  # an object store pays one request per member read: a shuffle buffer
            # larger than this rank's part would read all of it several times before the first batch
            initial_fill = max(1, min(initial_fill, self.split.num_samples // world_size))
        self.device = torch.device(device)
        self.batch_size, self.train, self.rank, self.world_size = batch_size, train, rank, world_size
        self.progress = progress  # a progress bar while scanning the shards after a DALI failure
        self.config = config  # the model's geometry: input_size, heatmap_size, root_bins, depth ranges
        self.input_size = int(config.input_size)
        self.use_rootnet = use_rootnet
        self.tars, self.idxs = self.split.tars, self.split.idxs
        self.num_samples = self.split.num_samples  # in the whole split, all ranks together
        start, end = shard_range(self.num_samples, rank, world_size)
        self.rank_samples = end - start  # this rank's part in evaluation
        # The shards holding this rank's samples, against the manifest's sha256 (shards.datacheck). Local
        # (or cached) splits only: for a bucket DALI reads itself it would fetch every object twice.
        if verify and "://" not in self.split_dir:
            bounds = np.cumsum([0, *self.split.counts])
            mine = [i for i in range(len(self.split.shards)) if bounds[i] < end and bounds[i + 1] > start]
            verify_shards(self.split, mine, progress=progress and rank == 0)
        if train:
            self._len = self.num_samples // world_size // batch_size
            if self._len < 1:
                raise ValueError(f"{split_dir}: {self.num_samples} samples are too few for {world_size} rank(s) "
                                 f"x batch {batch_size}")
            self._cycle = self._len
        else:
            self._len = -(-self.rank_samples // batch_size)
            # DALI pads every rank's part to ceil(N / world) samples, so all ranks run the same count.
            self._cycle = -(-(-(-self.num_samples // world_size)) // batch_size)
        # The CPU warps with OpenCV in the loader (pipeline/graph.py says why), the GPU in the graph.
        warp = warp or ("host" if self.device.type == "cpu" else "dali")
        if warp not in WARPS or (warp == "host" and self.device.type != "cpu"):
            raise ValueError(f"warp must be one of {WARPS} ('host' on the CPU only), got {warp!r} on {self.device}")
        if warp == "host":
            try:
                import cv2
            except ImportError as e:
                raise ImportError("the CPU loader warps with OpenCV: pip install opencv-python-headless") from e
            self._cv2 = cv2
        self.warp = warp
        if num_threads is None:  # this process's share of the cores; on the CPU the calling thread
            # warps, so DALI takes one core fewer (2 cores: 1 DALI thread measured 15-20 % faster than 2)
            share = max(1, len(os.sched_getaffinity(0)) // world_size)
            num_threads = max(1, share - 1) if warp == "host" else share
        self._pipe_args = dict(
            batch_size=batch_size, train=train, num_threads=num_threads,
            device_id=None if self.device.type == "cpu" else (self.device.index if self.device.index is not None
                                                              else torch.cuda.current_device()),
            seed=(seed * 100_003 + rank) % 2**31, shuffle_seed=seed % 2**31, shard_id=rank, num_shards=world_size,
            input_size=self.input_size, use_rootnet=use_rootnet, hw_decoder_load=hw_decoder_load,
            prefetch=prefetch, initial_fill=initial_fill, force_aug=force_aug, half_pixel=half_pixel, warp=warp)
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {self.device}")
        self.epoch, self._step, self._run = 0, 0, 0  # _run: DALI batches run in the current epoch
        self._prev_id = _NONE  # evaluation: annot_id of the last sample of the previous batch
        self._spare: list[tuple] = []  # CPU warp output buffers (see _output_buffer)
        self._pipe = self._build(None)

    def _build(self, checkpoint):
        pipe = build_pipeline(self.tars, self.idxs, checkpoint=checkpoint, **self._pipe_args)
        pipe.build()
        return pipe

    def __len__(self) -> int:
        return self._len

    def state_dict(self) -> dict:
        """The reader and random generator states after the last batch handed out."""
        return {"dali": self._pipe.checkpoint(), "epoch": self.epoch, "step": self._step, "run": self._run,
                "prev_id": int(self._prev_id),
                "train": self.train, "rank": self.rank, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if (state["train"], state["rank"], state["world_size"]) != (self.train, self.rank, self.world_size):
            raise ValueError(f"loader state is for train={state['train']} rank {state['rank']}/{state['world_size']}, "
                             f"this loader is train={self.train} rank {self.rank}/{self.world_size}")
        self._pipe = self._build(state["dali"])
        self.epoch, self._step, self._run = state["epoch"], state["step"], state["run"]
        self._prev_id = state.get("prev_id", _NONE)

    def __iter__(self):
        """The rest of the current epoch (all of it unless resumed or left mid-epoch)."""
        for _ in range(self._len - self._step):
            batch = None
            while batch is None:  # in evaluation a batch of padding only yields nothing
                batch = self._next()
            self._step += 1
            if self._step == self._len:
                self._finish_epoch()
            yield batch

    def _finish_epoch(self):
        for _ in range(self._run, self._cycle):  # evaluation: run off this rank's padding-only batches
            self._run_pipe(self._stream())
        self.epoch, self._step, self._run, self._prev_id = self.epoch + 1, 0, 0, _NONE

    def _stream(self):
        """The stream the caller consumes batches on: torch's current stream (CUDA), None on the CPU."""
        return torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None

    def _run_pipe(self, stream):
        """One DALI batch; a DALI failure becomes an error naming the corrupt shard and sample.

        On CUDA the outputs are bound to `stream` (DALI's dynamic executor, the default): DALI makes
        the stream wait for its work instead of the host, so the host goes on to launch the step on
        this batch while DALI decodes the next ones, and DALI frees (reuses) an output buffer in that
        stream's order, i.e. only after the copies _to_torch enqueues on it. Without a stream,
        run() would block the host until the batch is finished on the GPU."""
        try:
            return self._pipe.run(stream)
        except RuntimeError as e:
            if not is_dali_error(e):
                raise
            self._pipe._shutdown()  # stop DALI's threads now: a failed pipeline torn down at exit can crash
            where = f"at batch {self._step + 1} of {self._len} (epoch {self.epoch + 1}, rank {self.rank})"
            raise DataError(describe_data_error(self.split, e, where, progress=self.progress and self.rank == 0)) from e

    def _next(self):
        stream = self._stream()
        images, lbl, inv, aug, ids, ids_host, has_rootnet, roi_origin = self._run_pipe(stream)
        self._run += 1
        ids_np = ids_host.as_array()  # (B, 2) int64 [annot_id, image_id], on the host
        keep = None
        if not self.train:
            first = ids_np[:, 0]
            prev = np.concatenate([[self._prev_id], first[:-1]])
            self._prev_id = first[-1]
            keep_np = first != prev  # the reader's padding repeats the last sample
            if not keep_np.any():
                return None
            if not keep_np.all():
                keep = torch.as_tensor(np.nonzero(keep_np)[0], device=self.device)
        if self.use_rootnet:
            missing = has_rootnet.as_array() < 0.5
            if missing.any():
                raise ValueError(f"{self.split_dir}: use_rootnet, but annot_id {int(ids_np[missing.argmax(), 0])} "
                                 "has no RootNet output in its shard labels")
        lbl_t, inv_t, aug_t = (self._to_torch(t, stream) for t in (lbl, inv, aug))
        if lbl_t.shape[1] != LABEL_SIZE:
            raise ValueError(f"{self.split_dir}: `lbl` has {lbl_t.shape[1]} floats per sample, expected {LABEL_SIZE}")
        affine_t = invert_affine(inv_t)  # image -> patch, for the labels
        if self.warp == "host":
            patch = self._warp_host(images, inv_t, roi_origin.as_array(), aug_t[:, 5:8])
        else:
            img_size = lbl_t[:, OFFSETS["img_size"][0]:OFFSETS["img_size"][1]]
            patch = finish_images(self._to_torch(images, stream), inv_t, img_size, aug_t[:, 5:8])  # (B, H, W, 3)
        out = {"images": patch.permute(0, 3, 1, 2)}  # (B, 3, H, W), channels_last memory
        out.update(make_targets(lbl_t, affine_t, aug_t, self.config))
        if not self.train:
            out["inv_trans"] = inv_t  # patch -> image, to bring predictions back to the frame
        out["aug"] = aug_t  # (B, 8) the augmentation drawn for each sample (graph.AUG_FIELDS)
        out["annot_id"] = self._to_torch(ids, stream)[:, 0]
        if keep is not None:
            out = {k: v.index_select(0, keep) for k, v in out.items()}
        return out

    def _warp_host(self, rois, inv: torch.Tensor, origin: np.ndarray, color: torch.Tensor) -> torch.Tensor:
        """The decoded ROIs -> (B, S, S, 3) float32 network input in [0, 1]: per sample one
        cv2.warpAffine as the original (bilinear, zero border, OpenCV's pixel centres) of the uint8
        ROI, given the patch -> ROI map, then the colour step through a lookup table (cv2.LUT, one
        table per channel): clip(v * color, 0, 255) / 255 for every uint8 value v, exactly."""
        cv2, size = self._cv2, self.input_size
        m = inv.numpy().astype(np.float64)
        m[:, :, 2] -= origin  # image pixels -> ROI pixels
        tables = np.minimum(np.arange(256, dtype=np.float32)[None, :, None] * (color.numpy() / 255.0)[:, None, :],
                            1.0).astype(np.float32)  # (B, 256, 3)
        dst = self._output_buffer((len(m), size, size, 3))
        out = torch.from_numpy(dst)
        patch = np.empty((size, size, 3), np.uint8)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        with _one_opencv_thread(cv2):
            for i in range(len(m)):
                cv2.warpAffine(np.asarray(rois[i]), m[i], (size, size), dst=patch, flags=flags,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                cv2.LUT(patch, tables[i].reshape(256, 1, 3), dst=dst[i])
        return out

    def _output_buffer(self, shape) -> np.ndarray:
        """A float32 array for the CPU warp's output, in the memory of one of the last few batches if
        no tensor refers to that batch any more (the caller has dropped it and its views), else new.
        New memory costs: a batch of 64 at 256x256 is 50 MB, above glibc's mmap threshold, so every
        new buffer is page-faulted and zeroed again. Each batch gets a fresh numpy view of its
        buffer; torch.from_numpy keeps that view alive as long as any tensor shares the storage,
        so a dead weak reference to the view means the memory is free."""
        for buf, alive in self._spare:
            if buf.shape == shape and alive() is None:
                break
        else:
            buf = np.empty(shape, np.float32)  # numpy asks for transparent huge pages on large arrays
        view = buf.view()
        self._spare = [(buf, weakref.ref(view)), *[e for e in self._spare if e[0] is not buf]][:SPARE_BUFFERS]
        return view

    def _to_torch(self, tl, stream) -> torch.Tensor:
        """One DALI output batch -> a dense torch tensor on self.device. On CUDA: a fresh tensor, filled
        by an asynchronous copy enqueued on `stream` (the one the outputs are bound to, see _run_pipe),
        so the tensor never shares memory with DALI's buffer and the host does not wait."""
        if self.device.type == "cpu":
            return torch.from_numpy(tl.as_array())
        from nvidia.dali.plugin.pytorch import to_torch_type

        shapes = tl.shape()  # per sample; every output of the graph has one shape per batch
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"DALI output of ragged shape {shapes[:3]}...: the loader expects one shape per batch")
        dst = torch.empty((len(shapes), *shapes[0]), dtype=to_torch_type[tl.dtype], device=self.device)
        dense = tl.is_dense_tensor()
        src = tl.as_tensor() if dense else tl  # a view (one copy) or the samples (one batched copy kernel)
        src.copy_to_external(ctypes.c_void_p(dst.data_ptr()), ctypes.c_void_p(stream.cuda_stream),
                             non_blocking=True, use_copy_kernel=not dense)
        return dst


def build_loader(split_dir, config, *, batch_size: int, train: bool, device, rank: int = 0, world_size: int = 1,
                 seed: int = 0, num_threads: int | None = None, use_rootnet: bool = False,
                 hw_decoder_load: float = 0.65, prefetch: int = 2, progress: bool = True, cache_dir: str | None = None,
                 verify: bool = False, **testing) -> Loader:
    """The data loader of one split folder (OUT/<split>/: its manifest.json, read by shards.index.open_split),
    local or a URL. s3:// is read by DALI itself (one request per member: latency-bound), unless cache_dir
    is given: then, as for any other URL (gs://, ...; default ~/.cache/interhand-fast/shards), the split is
    downloaded once into cache_dir, checked against its manifest's sha256, and read locally
    (shards.cache). tests/test_s3.py runs both against a local S3 server.

    config: the model's geometry, a model.ModelConfig (any object with input_size, heatmap_size
    (D, H, W), root_bins, depth_range_mm and root_depth_range_mm will do): the patch size and the
    training targets follow it. device: torch.device('cpu') decodes and warps on the CPU (DALI
    device_id=None); a CUDA device uses nvJPEG (`mixed`, hw_decoder_load of the images on the hardware
    decoder) and warps on the GPU. `testing` passes force_aug / initial_fill / half_pixel / warp
    ('dali' runs the GPU path's in-graph warp on the CPU) to Loader (tests and previews only).
    A DALI failure while iterating raises DataError naming the corrupt shard, member and offset.
    verify: first hash the shards this rank reads against the manifest's sha256 and name the sample of
    a changed one (shards.datacheck.verify_shards: damage that decodes with warnings, not errors); a
    local or cached split only (a bucket read by DALI directly is not downloaded twice for it)."""
    return Loader(split_dir, config, batch_size=batch_size, train=train, device=device, rank=rank,
                  world_size=world_size, seed=seed, num_threads=num_threads, use_rootnet=use_rootnet,
                  hw_decoder_load=hw_decoder_load, prefetch=prefetch, progress=progress, cache_dir=cache_dir, verify=verify,
                  **testing)
