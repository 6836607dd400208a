"""Training configuration: one frozen, validated dataclass; presets; `--key=value` overrides.

The paper's defaults (docs/conventions.md §6): Adam, lr 1e-4 divided by 10 at epochs 15 and 17, 20 epochs,
16 images per GPU. RHD and STB: 50 epochs, decay at 45 and 47.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields

from model.config import PRESETS as MODEL_PRESETS
from model.config import ModelConfig, get_config


@dataclass(frozen=True)
class TrainConfig:
    shards: str = ""  # folder (or fsspec URL) holding <split>/ shard folders
    # "": s3:// read by DALI itself, other URLs copied once to ~/.cache/interhand-fast/shards;
    # a folder: every URL's splits copied there (sha256-checked, shards.cache), then read locally
    cache_dir: str = ""
    # hash the shards against their manifest's sha256 before reading (names a sample damaged since the
    # conversion, e.g. a JPEG that decodes with warnings only; shards.datacheck.verify_shards). Each rank
    # hashes the shards it reads: ~1 min per 40 GB and core at start; --verify_shards=false skips it
    verify_shards: bool = True
    out: str = ""  # run folder
    preset: str = "paper"
    model: ModelConfig = field(default_factory=lambda: MODEL_PRESETS["paper"])  # `--model=PRESET`, `--model.FIELD=V`
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    epochs: int = 20
    lr: float = 1e-4
    lr_decay_epochs: tuple = (15, 17)
    lr_decay_factor: float = 0.1
    # "PREFIX=X,PREFIX=X": parameters whose names start with PREFIX (the longest matching one) step at
    # X x the scheduled rate, the rest at the scheduled rate. "" (the paper): one rate for the whole network.
    # Names as in model.named_parameters(): backbone_net., pose_net.hand_fc., pose_net.root_fc., ...
    lr_scales: str = ""
    batch_size: int = 16  # per GPU / process
    max_steps: int = 0  # stop after this many optimiser steps in total (0: no limit)
    compile: bool = True
    bf16: bool = True  # autocast to bf16 (CUDA only; ignored on the CPU)
    channels_last: bool = True
    seed: int = 0
    deterministic: bool = False
    ckpt_every: int = 0  # also checkpoint every N steps (0: only at epoch ends)
    val_every: int = 1  # validate every N epochs (0: never)
    log_every: int = 20  # steps between logged (synchronised) loss values
    num_threads: int = 0  # DALI threads (0: cores / processes)
    backbone_weights: str = ""  # local torchvision ResNet state dict for ImageNet init
    resume: bool = False
    allow_schedule_change: bool = False  # --resume with other epochs / lr / decay / max_steps than the run's

    def __post_init__(self):
        if not isinstance(self.model, ModelConfig):  # a preset name or a dict (config.json)
            object.__setattr__(self, "model", get_config(self.model))
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{f.name} must be a finite number, got {v}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if list(self.lr_decay_epochs) != sorted(self.lr_decay_epochs):
            raise ValueError(f"lr_decay_epochs must be increasing, got {self.lr_decay_epochs}")
        parse_lr_scales(self.lr_scales)  # raises on a malformed value
        for name in ("max_steps", "ckpt_every", "val_every", "num_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lr_decay_epochs"] = list(self.lr_decay_epochs)
        d["model"] = self.model.to_dict()
        return d


def parse_lr_scales(text: str) -> dict[str, float]:
    """`lr_scales` ("PREFIX=X,PREFIX=X") -> {PREFIX: X}; ValueError naming the bad item."""
    scales: dict[str, float] = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        prefix, sep, raw = item.rpartition("=")
        if not sep or not prefix:
            raise ValueError(f"lr_scales: {item!r} is not PREFIX=X (e.g. backbone_net.=0.1)")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"lr_scales: {item!r}: cannot read {raw!r} as a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"lr_scales: {item!r}: the scale must be a finite number >= 0")
        if prefix in scales:
            raise ValueError(f"lr_scales: {prefix!r} is given twice")
        scales[prefix] = value
    return scales


PRESETS: dict[str, dict] = {
    # The paper's InterHand2.6M schedule.
    "paper": {},
    # RHD / STB schedule of the original.
    "rhd": {"epochs": 50, "lr_decay_epochs": (45, 47)},
    "stb": {"epochs": 50, "lr_decay_epochs": (45, 47)},
    # Minutes on 2 CPU cores: a small backbone, small input and heatmaps (model preset "demo"). The joint
    # and root-depth heads at 1e-2, the backbone and the hand-type MLP at 1e-3 (README, "Why handedness is
    # not learnt in the demo": better on every figure than one rate of 3e-3 in the same 20 epochs).
    "demo": {
        "model": "demo", "epochs": 20, "lr": 1e-2, "lr_scales": "backbone_net.=0.1,pose_net.hand_fc.=0.1",
        "lr_decay_epochs": (18,), "batch_size": 16,
        "compile": False, "log_every": 25, "val_every": 5,
    },
}


def _coerce(name: str, raw: str, current):
    if isinstance(current, bool):
        low = raw.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--{name}: expected a boolean, got {raw!r}")
    if isinstance(current, tuple):
        return tuple(int(x) for x in raw.split(",") if x.strip()) if raw.strip() else ()
    try:
        return type(current)(raw)
    except ValueError as e:
        raise ValueError(f"--{name}: cannot read {raw!r} as {type(current).__name__}") from e


def build_config(argv: list[str]) -> TrainConfig:
    """Parse `--key=value` / `--key value` / `--flag` arguments into a TrainConfig.

    The preset (``--preset``) is applied first, then the explicit overrides. ``--model=PRESET``
    picks the model preset (model.config.PRESETS), ``--model.FIELD=VALUE`` overrides one of its
    fields (``--model.input_size=128``). Unknown keys raise.
    """
    model_fields = {f.name for f in fields(ModelConfig)}
    known = {f.name: f for f in fields(TrainConfig)} | {f"model.{k}": None for k in model_fields}
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ValueError(f"unexpected argument {arg!r} (use --key=value)")
        key, eq, val = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key not in known:
            raise ValueError(f"unknown option --{key}; known: {', '.join(sorted(known))}")
        if not eq:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and not nxt.startswith("--"):
                val, i = nxt, i + 1
            else:
                val = None  # a bare flag
        pairs.append((key, val))
        i += 1
    presets = [v for k, v in pairs if k == "preset"]
    if len(presets) > 1:
        raise ValueError(f"--preset given {len(presets)} times ({', '.join(map(str, presets))}); give one")
    preset = presets[0] if presets else "paper"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    values = {**PRESETS[preset], "preset": preset}
    base = TrainConfig()
    model_name = next((v for k, v in reversed(pairs) if k == "model"), values.get("model", "paper"))
    if model_name is None:
        raise ValueError("--model needs a preset name")
    model = get_config(model_name).to_dict()
    for key, val in pairs:
        if key.startswith("model."):
            name = key.split(".", 1)[1]
            if val is None and not isinstance(model[name], bool):
                raise ValueError(f"--{key} needs a value")
            model[name] = True if val is None else _coerce(key, val, model[name])
    values["model"] = ModelConfig.from_dict(model)
    for key, val in pairs:
        if key in ("model", "preset") or key.startswith("model."):
            continue
        current = values.get(key, getattr(base, key))
        if val is None:
            if not isinstance(current, bool):
                raise ValueError(f"--{key} needs a value")
            values[key] = True
        else:
            values[key] = _coerce(key, val, current)
    return TrainConfig(**values)


# What --resume compares with the run's config.json: these must match (another model or other data
# cannot continue the run's weights and reader state) ...
# (lr_scales: the optimiser's parameter groups follow it, so its saved state fits no other split)
RESUME_MUST_MATCH = ("model", "shards", "train_split", "val_split", "batch_size", "seed", "lr_scales")
# ... and these may change only with --allow_schedule_change.
RESUME_SCHEDULE = ("epochs", "lr", "lr_decay_epochs", "lr_decay_factor")  # max_steps may change (stop early)


def check_resume(cfg: TrainConfig, saved_path) -> None:
    """--resume: compare cfg with the run's saved config.json; ValueError listing every difference
    that is not allowed (nothing is written before this passes)."""
    from pathlib import Path

    path = Path(saved_path)
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"--resume: cannot read the run's config {path}: {e}") from None
    if isinstance(saved, dict):
        saved.setdefault("lr_scales", "")  # runs from before --lr_scales trained at one rate
    now = cfg.to_dict()
    diffs = []
    keys = RESUME_MUST_MATCH + (() if cfg.allow_schedule_change else RESUME_SCHEDULE)
    for k in keys:
        if k in saved and saved[k] != now[k]:
            if isinstance(saved[k], dict) and isinstance(now[k], dict):
                diffs += [f"{k}.{f}: {saved[k].get(f)!r} -> {now[k].get(f)!r}" for f in sorted(set(saved[k]) | set(now[k]))
                          if saved[k].get(f) != now[k].get(f)]
            else:
                diffs.append(f"{k}: {saved[k]!r} -> {now[k]!r}")
    if diffs:
        sched = [d for d in diffs if d.split(":")[0] in RESUME_SCHEDULE]
        hint = " (schedule fields: pass --allow_schedule_change to change them)" if sched else ""
        raise ValueError(f"--resume: this run ({path}) was started with other settings{hint}:\n  " + "\n  ".join(diffs))


def save_config(cfg: TrainConfig, path, extra: dict | None = None) -> None:
    from shards.atomic import atomic_write_text

    atomic_write_text(path, json.dumps({**cfg.to_dict(), **(extra or {})}, indent=2) + "\n")
