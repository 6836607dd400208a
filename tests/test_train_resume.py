"""Exact resume: a run interrupted mid-epoch (kill during a checkpoint write) and resumed with
`--resume` ends with the same losses and weights as an uninterrupted one (--deterministic, CPU)."""
import json

import pytest
import torch

from tests.test_train_fixtures import FAST, subset, train_shards
from train import checkpoint as ckpt
from train.config import build_config
from train.main import run


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    # 4 samples, batch 2: 2 steps per epoch.
    return subset(train_shards(tmp_path_factory), tmp_path_factory.mktemp("resume") / "shards", 1)


@pytest.fixture(autouse=True)
def _restore_determinism():
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def _cfg(root, out, *extra):
    # 2 epochs of 2 steps; lr / 10 from the second epoch on.
    return build_config([f"--shards={root}", f"--out={out}", *FAST, "--deterministic", "--val_every=0",
                         "--epochs=2", "--lr_decay_epochs=1", "--lr=1e-3", *extra])


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_interrupted_and_resumed_equals_uninterrupted(small_root, tmp_path, capsys):
    full = run(_cfg(small_root, tmp_path / "full"), device="cpu")
    assert (full["step"], full["epoch"]) == (4, 2)

    # Interrupted: stops mid-epoch after step 1 (its checkpoint written), then "killed" while writing
    # the step-2 checkpoint: only a temp file of it is left. The resumed run crosses the epoch end.
    part_dir = tmp_path / "part"
    part = run(_cfg(small_root, part_dir, "--max_steps=1"), device="cpu")
    assert (part["step"], part["epoch"], part["step_in_epoch"]) == (1, 0, 1)
    assert [p.name for p in ckpt.list_checkpoints(part_dir)] == ["step_00000001.pt"]
    leftover = part_dir / "checkpoints" / ".step_00000002.pt.x1y2.tmp"
    leftover.write_bytes(b"half a checkpoint")
    with open(part_dir / "metrics.jsonl", "a") as f:  # a row the killed run logged after its checkpoint
        f.write(json.dumps({"step": 2, "epoch": 1.0, "loss/total": -1.0}) + "\n")
    capsys.readouterr()

    resumed = run(_cfg(small_root, part_dir, "--resume"), device="cpu")
    out = capsys.readouterr().out
    assert "resumed from" in out and "step 1 (epoch 0, batch 1)" in out
    assert (resumed["step"], resumed["epoch"]) == (4, 2)
    assert not leftover.exists()  # cleaned up by the next checkpoint write

    # Same losses (log_every=1: every step's loss is logged), learning rates and weights.
    assert resumed["losses"] == full["losses"]
    assert resumed["weights_sha256"] == full["weights_sha256"]
    a = torch.load(tmp_path / "full" / "final.pt", weights_only=False)["model"]
    b = torch.load(part_dir / "final.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    keys = ("step", "epoch", "lr", "loss/total", "loss/joint_heatmap", "loss/hand_type", "loss/rel_root_depth")
    rows_full = [{k: r[k] for k in keys} for r in _rows(tmp_path / "full")]
    rows_part = [{k: r[k] for k in keys} for r in _rows(part_dir)]
    assert rows_part == rows_full  # the killed run's extra row was dropped, the rest written again
    assert [r["lr"] for r in rows_full] == pytest.approx([1e-3] * 2 + [1e-4] * 2)


def test_lr_scales_follow_the_schedule_and_must_match_on_resume(small_root, tmp_path):
    out = tmp_path / "scaled"
    scales = "--lr_scales=backbone_net.=0.1,pose_net.hand_fc.=0"
    part = run(_cfg(small_root, out, scales, "--max_steps=3"), device="cpu")  # into the decayed epoch
    assert part["step"] == 3
    state = torch.load(ckpt.list_checkpoints(out)[-1], weights_only=False)
    lrs = sorted((g["lr_scale"], g["lr"]) for g in state["optimizer"]["param_groups"])
    assert [s for s, _ in lrs] == [0.0, 0.1, 1.0] and [r for _, r in lrs] == pytest.approx([0.0, 1e-5, 1e-4])
    with pytest.raises(ValueError, match="lr_scales"):
        run(_cfg(small_root, out, "--resume", "--allow_schedule_change"), device="cpu")
    resumed = run(_cfg(small_root, out, scales, "--resume"), device="cpu")
    assert (resumed["step"], resumed["epoch"]) == (4, 2)
    final = torch.load(ckpt.list_checkpoints(out)[-1], weights_only=False)
    assert sorted(g["lr"] for g in final["optimizer"]["param_groups"]) == pytest.approx([0.0, 1e-5, 1e-4])
    # a scale of 0 freezes its group: from step 3 to 4 the hand-type MLP stays, the backbone moves
    a, b = state["model"], final["model"]
    hand = [k for k in a if k.startswith("pose_net.hand_fc.")]
    assert hand and all(torch.equal(a[k], b[k]) for k in hand)
    assert not torch.equal(a["backbone_net.resnet.conv1.weight"], b["backbone_net.resnet.conv1.weight"])
