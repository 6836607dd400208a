"""Checkpoints survive kill -9: atomic writes, leftover temp files and unreadable files are skipped."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from pipeline.distributed import Dist
from shards.atomic import atomic_write, atomic_write_text
from train import checkpoint as ckpt
from train.loop import _per_rank

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _state(step, fill=0.0):
    return {"step": step, "model": {"w": torch.full((4,), fill)}, "rng": ckpt.rng_state()}


def test_interrupted_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "config.json"
    atomic_write_text(path, "old\n")

    class Boom:
        def __reduce__(self):
            raise KeyboardInterrupt  # as if interrupted halfway through torch.save

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, lambda f: torch.save({"a": torch.zeros(3), "b": Boom()}, f))
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["config.json"]
    assert (path.stat().st_mode & 0o777) == 0o666 & ~_umask()  # not mkstemp's 0600


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_load_latest_skips_temp_and_unreadable_files(tmp_path, capsys):
    assert ckpt.load_latest(tmp_path) is None  # no checkpoints: start fresh
    for step in (1, 2, 3):
        ckpt.save(tmp_path, _state(step, float(step)))
    ckdir = tmp_path / "checkpoints"
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000002.pt", "step_00000003.pt"]  # keep 2
    (ckdir / ".step_00000004.pt.abc.tmp").write_bytes(b"\x80half")  # kill -9 during a write
    assert ckpt.load_latest(tmp_path)["step"] == 3
    (ckdir / "step_00000003.pt").write_bytes(b"garbage")  # newest unreadable (disk trouble)
    warnings = []
    state = ckpt.load_latest(tmp_path, warn=warnings.append)
    assert state["step"] == 2 and torch.equal(state["model"]["w"], torch.full((4,), 2.0))
    assert state["path"].endswith("step_00000002.pt")
    assert len(warnings) == 1 and "step_00000003.pt" in warnings[0] and "using" in warnings[0]
    ckpt.save(tmp_path, _state(5))
    assert not (ckdir / ".step_00000004.pt.abc.tmp").exists()  # the next save clears leftovers
    (ckdir / "step_00000002.pt").write_bytes(b"")
    (ckdir / "step_00000005.pt").write_bytes(b"x")
    (ckdir / "step_00000003.pt").unlink()
    with pytest.raises(RuntimeError, match=r"(?s)no readable checkpoint in .*step_00000005\.pt.*step_00000002\.pt"):
        ckpt.load_latest(tmp_path)


def test_kill_minus_9_during_checkpoint_writes(tmp_path):
    """A process writing large checkpoints in a loop is killed at an arbitrary moment; the newest
    complete checkpoint always loads."""
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {REPO!r})
        from train import checkpoint as ckpt
        big = torch.arange(4_000_000, dtype=torch.float64)
        for step in range(1, 10_000):
            ckpt.save({str(tmp_path)!r}, {{"step": step, "model": {{"w": big + step}}}})
            print(step, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "1"
        time.sleep(0.37)  # somewhere inside a later write
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    state = ckpt.load_latest(tmp_path, warn=pytest.fail)
    step = state["step"]
    assert step >= 1 and ckpt.list_checkpoints(tmp_path)[-1].name == f"step_{step:08d}.pt"
    assert torch.equal(state["model"]["w"], torch.arange(4_000_000, dtype=torch.float64) + step)  # whole


def test_weights_digest():
    sd = {"a": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}
    same = {k: v.clone() for k, v in sd.items()}
    assert ckpt.weights_digest(sd) == ckpt.weights_digest(same)
    same["a"][1, 2] += 1e-6
    assert ckpt.weights_digest(sd) != ckpt.weights_digest(same)
    model = torch.nn.Linear(2, 2)
    assert ckpt.weights_digest(model) == ckpt.weights_digest(model.state_dict())


def test_resume_with_another_world_size_is_refused():
    d = Dist(rank=1, world_size=2, local_rank=1, device=torch.device("cpu"))
    assert _per_rank(["r0", "r1"], d, "loader states") == "r1"
    with pytest.raises(ValueError, match="holds loader states for 1 process.*this run has 2"):
        _per_rank({"single": "state"}, d, "loader states")
