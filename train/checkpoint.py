"""Training checkpoints: everything needed to continue exactly where a run stopped.

`RUN_DIR/checkpoints/step_<N>.pt` written atomically (temp + rename); `latest` is the highest step
whose file loads. Holds model, optimizer, step/epoch position, the data loader's reader state,
RNG states and the config.
"""
from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import numpy as np
import torch

from shards.atomic import atomic_write

_STEP = re.compile(r"^step_(\d+)\.pt$")


def weights_digest(model) -> str:
    """sha256 of a model's state dict (or of a state dict: names, dtypes, shapes, bytes): equal iff
    the weights are."""
    sd = model.state_dict() if isinstance(model, torch.nn.Module) else model
    h = hashlib.sha256()
    for name, t in sorted(sd.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def rng_state() -> dict:
    """Every random generator's state in types torch.load(weights_only=True) reads back (tensors,
    numbers, strings, tuples): a checkpoint must not need the unpickler that can run code."""
    key, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (key, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    key, keys, pos, has_gauss, gauss = s["numpy"]
    np.random.set_state((key, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(s["torch"])
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def check_finite(state: dict) -> None:
    """A model or optimiser state with NaN/inf is never saved: it would be resumed from."""
    for part in ("model", "optimizer"):
        if not isinstance(state.get(part), dict):
            continue
        tensors = list(state[part].values()) if part == "model" else [
            t for s in state[part].get("state", {}).values() for t in s.values() if isinstance(t, torch.Tensor)]
        for i, t in enumerate(tensors):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
                name = list(state[part])[i] if part == "model" else f"optimizer state tensor {i}"
                raise FloatingPointError(f"not saving the checkpoint of step {state['step']}: {part} holds non-finite "
                                         f"values ({name}); the last good checkpoint stays the newest")


def save(run_dir, state: dict, keep: int = 2) -> Path:
    """Write state as checkpoints/step_<step>.pt; keep the newest `keep` files. Refuses non-finite weights."""
    check_finite(state)
    ckdir = Path(run_dir) / "checkpoints"
    path = ckdir / f"step_{state['step']:08d}.pt"
    for tmp in ckdir.glob(".step_*.tmp") if ckdir.is_dir() else ():  # left by a kill during a write
        tmp.unlink(missing_ok=True)
    atomic_write(path, lambda f: torch.save(state, f))
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir) -> list[Path]:
    ckdir = Path(run_dir) / "checkpoints"
    if not ckdir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckdir.iterdir() if (m := _STEP.match(p.name))]
    return [p for _, p in sorted(found)]


def load_latest(run_dir, warn=print) -> dict | None:
    """The newest checkpoint that loads, or None when there is none.

    An interrupted write leaves only a temp file (`.step_*.tmp`, ignored), never a half-written step
    file; still, an unreadable newest file (disk trouble) is reported through `warn` and the previous
    one is used. Raises when checkpoints exist but none loads."""
    errors = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            # weights_only: a checkpoint file can hold tensors and plain values, never code to run.
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or "step" not in state:
                raise ValueError("not a training checkpoint (no 'step')")
            if errors and warn is not None:
                warn("skipped unreadable checkpoint(s):\n  " + "\n  ".join(errors) + f"\nusing {path}")
            state["path"] = str(path)
            return state
        except Exception as e:  # noqa: BLE001 - report and try the previous one
            errors.append(f"{path}: {type(e).__name__}: {e}")
    if errors:
        raise RuntimeError("no readable checkpoint in " + str(run_dir) + ":\n" + "\n".join(errors))
    return None
