"""The training loop: read top to bottom.

No host syncs in the hot loop: losses are accumulated on the device and reduced / `.item()`-ed
only every `log_every` steps.
"""
from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from pipeline.distributed import Dist, all_reduce_mean, gather_to_main, print0
from shards.atomic import atomic_write_text

from . import checkpoint as ckpt
from .config import TrainConfig, parse_lr_scales


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """The original's step schedule: lr / 10 for each decay epoch already reached."""
    return cfg.lr * cfg.lr_decay_factor ** sum(epoch >= e for e in cfg.lr_decay_epochs)


class MetricsLog:
    """metrics.jsonl (+ TensorBoard events) in the run folder, written by rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None = None):
        """resume_step: drop rows (and TensorBoard events) after this step (0 for a fresh start),
        written by an interrupted run after its last checkpoint; the resumed run writes them again."""
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            purge = None
            if resume_step is not None and self.path.is_file():
                rows = [line for line in self.path.read_text().splitlines() if line.strip()]
                keep = [line for line in rows if json.loads(line)["step"] <= resume_step]
                if len(keep) != len(rows):
                    atomic_write_text(self.path, "".join(line + "\n" for line in keep))
                purge = resume_step + 1
            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=purge)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def autocast_for(cfg: TrainConfig, device: torch.device):
    if device.type == "cuda" and cfg.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """The optimiser's parameter groups: one per `cfg.lr_scales` prefix (the longest prefix that a
    parameter's name starts with), each with its "lr_scale", and the rest at scale 1. ValueError
    when a prefix names no parameter (a typo would otherwise leave the whole network at one rate)."""
    scales = parse_lr_scales(cfg.lr_scales)
    groups: dict = {None: []} | {k: [] for k in scales}
    for name, param in model.named_parameters():
        groups[max((k for k in scales if name.startswith(k)), key=len, default=None)].append(param)
    for k in scales:
        if not groups[k]:
            top = sorted({n.split(".")[0] + "." for n, _ in model.named_parameters()})
            raise ValueError(f"lr_scales: no parameter name starts with {k!r} (names start with {', '.join(top)})")
    return [{"params": ps, "lr_scale": scales.get(k, 1.0)} for k, ps in groups.items() if ps]


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    for g in groups:
        g["lr"] = cfg.lr * g["lr_scale"]
    # fused: one kernel for all parameters (CPU and CUDA), ~3x faster than the per-tensor loop.
    return torch.optim.Adam(groups, lr=cfg.lr, fused=device.type in ("cpu", "cuda"))


def make_train_step(cfg: TrainConfig, device: torch.device, fwd, criterion, optimizer):
    """-> step(batch) -> the named losses of that batch (on the device, not synchronised): one
    optimiser step as the trainer takes it (benchmarks/train.py times this same function)."""
    def step(batch: dict) -> dict:
        images = batch["images"]
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_for(cfg, device):
            out = fwd(images)
        losses = criterion(out, batch)  # float32 math inside the criterion
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        return losses

    return step


def _per_rank(value, d: Dist, what: str):
    """This rank's entry of a per-rank checkpoint list (a plain value: one-process checkpoints)."""
    if not isinstance(value, list):
        value = [value]
    if len(value) != d.world_size:
        raise ValueError(f"the checkpoint holds {what} for {len(value)} process(es), this run has {d.world_size}; "
                         "resume with the same number of processes")
    return value[d.rank]


def train(cfg: TrainConfig, d: Dist, model: torch.nn.Module, criterion, train_loader,
          run_dir: Path, validate=None) -> dict:
    """Train `model` (already on d.device). `validate(model, epoch) -> dict` is called at the end of
    every `val_every` epochs. Returns the final position, the last logged losses and a digest of the
    weights (`weights_sha256`, equal on every rank when the replicas are in sync)."""
    raw_model = model
    optimizer = build_optimizer(raw_model, cfg, d.device)
    step, epoch, step_in_epoch = 0, 0, 0
    state = ckpt.load_latest(run_dir, warn=lambda m: print0(d, "warning: " + m)) if cfg.resume else None
    if state is not None:
        raw_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, epoch, step_in_epoch = state["step"], state["epoch"], state["step_in_epoch"]
        if state.get("loader") is not None:
            train_loader.load_state_dict(_per_rank(state["loader"], d, "data loader states"))
        ckpt.set_rng_state(_per_rank(state["rng"], d, "RNG states"))
        print0(d, f"resumed from {state['path']}: step {step} (epoch {epoch}, batch {step_in_epoch})")
    elif cfg.resume:
        print0(d, f"--resume: no checkpoint in {run_dir / 'checkpoints'}; starting from scratch")
    del state

    fwd = torch.compile(raw_model) if cfg.compile else raw_model
    if d.world_size > 1:  # DDP after compile (as nanoGPT); buckets follow the compiled graph
        fwd = DDP(fwd, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    train_step = make_train_step(cfg, d.device, fwd, criterion, optimizer)
    log = MetricsLog(run_dir, d.is_main, resume_step=step)
    saved_at = -1

    def save_state():
        nonlocal saved_at
        if saved_at == step:
            return
        per_rank = gather_to_main({"loader": train_loader.state_dict(), "rng": ckpt.rng_state()})
        if d.is_main:
            ckpt.save(run_dir, {
                "model": raw_model.state_dict(), "model_config": raw_model.config.to_dict(),
                "optimizer": optimizer.state_dict(), "step": step, "epoch": epoch,
                "step_in_epoch": step_in_epoch, "loader": [r["loader"] for r in per_rank],
                "rng": [r["rng"] for r in per_rank], "config": cfg.to_dict(), "world_size": d.world_size,
            })
        saved_at = step

    steps_per_epoch = len(train_loader)
    last = {}
    while epoch < cfg.epochs and not (cfg.max_steps and step >= cfg.max_steps):
        for g in optimizer.param_groups:
            g["lr"] = lr_at(cfg, epoch) * g.get("lr_scale", 1.0)  # checkpoints before lr_scales: one group
        fwd.train()
        sums, n_acc = None, 0
        t_start = t_log = time.perf_counter()
        wait, imgs = 0.0, 0
        bar = tqdm(total=steps_per_epoch, initial=step_in_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not d.is_main, dynamic_ncols=True, leave=True)
        it = iter(train_loader)
        while step_in_epoch < steps_per_epoch:
            t0 = time.perf_counter()
            try:
                batch = next(it)  # a corrupt shard raises shards.datacheck.DataError naming it
            except StopIteration:
                raise RuntimeError(f"the training loader of {getattr(train_loader, 'split_dir', '?')} ended after "
                                   f"{step_in_epoch} of its {steps_per_epoch} batches (epoch {epoch + 1})") from None
            wait += time.perf_counter() - t0
            losses = train_step(batch)
            step += 1
            step_in_epoch += 1
            imgs += batch["images"].shape[0]
            vals = torch.stack([v.detach().float() for v in losses.values()])
            sums = vals if sums is None else sums + vals
            n_acc += 1
            bar.update(1)
            last_step = step_in_epoch == steps_per_epoch or (cfg.max_steps and step >= cfg.max_steps)
            if step % cfg.log_every == 0 or last_step:
                mean = all_reduce_mean(sums / n_acc, d).tolist()  # sync point, once per log_every
                now = time.perf_counter()
                last = dict(zip(losses.keys(), mean))
                last["total"] = float(sum(mean))
                ips = imgs * d.world_size / max(now - t_log, 1e-9)
                row = {"step": step, "epoch": epoch + step_in_epoch / steps_per_epoch, "lr": lr_at(cfg, epoch),
                       **{f"loss/{k}": v for k, v in last.items()}, "images_per_s": ips,
                       "data_wait": wait / max(now - t_log, 1e-9)}
                log.write(row)
                bar.set_postfix(loss=f"{last['total']:.4g}", ips=f"{ips:.0f}", wait=f"{100 * row['data_wait']:.0f}%")
                sums, n_acc, wait, imgs, t_log = None, 0, 0.0, 0, now
                if not math.isfinite(last["total"]):
                    raise FloatingPointError(f"loss is {last['total']} at step {step}: {last}")
            if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step_in_epoch < steps_per_epoch:
                save_state()  # (at an epoch's end the epoch checkpoint below follows)
            if cfg.max_steps and step >= cfg.max_steps:
                break
        bar.close()
        if step_in_epoch >= steps_per_epoch:
            epoch, step_in_epoch = epoch + 1, 0
            save_state()
            if validate is not None and cfg.val_every and epoch % cfg.val_every == 0:
                fwd.eval()
                res = validate(fwd, epoch)  # float32, no autocast: the same metrics as `python -m eval`
                if res:
                    log.write({"step": step, "epoch": epoch, **{f"val/{k}": v for k, v in res.items()
                                                                 if isinstance(v, (int, float))}})
                    print0(d, "val epoch %d: %s" % (epoch, ", ".join(f"{k} {v:.4g}" for k, v in res.items()
                                                                        if isinstance(v, (int, float)))))
            print0(d, f"epoch {epoch} done in {time.perf_counter() - t_start:.1f}s")
        elif cfg.max_steps and step >= cfg.max_steps:
            save_state()
    log.close()
    return {"step": step, "epoch": epoch, "step_in_epoch": step_in_epoch, "losses": last,
            "weights_sha256": ckpt.weights_digest(raw_model)}
