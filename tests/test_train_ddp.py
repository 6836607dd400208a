"""`torchrun --nproc_per_node=2 train/main.py` on the CPU (gloo): the replicas stay in sync, both
ranks run the same number of steps, a run interrupted and resumed under DDP continues with each
rank's own data loader state, validation gathers over ranks, and nothing hangs."""
import re
import subprocess

import pytest
import torch

from tests.test_train_fixtures import FAST, REPO, python, subset, train_shards
from train.checkpoint import weights_digest

FINISHED = re.compile(r"\[rank (\d)\] finished at step (\d+) \(epoch (\d+)\), weights sha256 ([0-9a-f]{64})")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    # 8 samples over 2 ranks, batch 2: 2 steps per epoch on each rank.
    return subset(train_shards(tmp_path_factory), tmp_path_factory.mktemp("ddp") / "shards", 2)


def torchrun(*args, timeout=240):
    cmd = [python(), "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "train" / "main.py"), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)  # a hang fails here
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def test_two_process_gloo_run_stays_in_sync_and_resumes(root, tmp_path):
    out = tmp_path / "run"
    common = [f"--shards={root}", f"--out={out}", *FAST, "--epochs=1", "--val_every=1"]
    first = torchrun(*common, "--max_steps=1")
    assert sorted(FINISHED.findall(first))[0][:3] == ("0", "1", "0")
    text = torchrun(*common, "--resume")
    assert "resumed from" in text and "step 1 (epoch 0, batch 1)" in text
    done = sorted(FINISHED.findall(text))
    assert [d[:3] for d in done] == [("0", "2", "1"), ("1", "2", "1")]  # same steps on both ranks
    assert done[0][3] == done[1][3]  # identical weights on both ranks
    final = torch.load(out / "final.pt", map_location="cpu", weights_only=False)["model"]
    assert weights_digest(final) == done[0][3]
    assert "val epoch 1: mpjpe_all" in text  # validation over both ranks' parts, gathered on rank 0
    ckpt = torch.load(out / "checkpoints" / "step_00000002.pt", map_location="cpu", weights_only=False)
    assert ckpt["world_size"] == 2 and [s["rank"] for s in ckpt["loader"]] == [0, 1]
