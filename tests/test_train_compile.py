"""torch.compile (the trainer's default) on the CPU: one training step of the tiny model through the
compiled graph gives the eager step's loss and weights (to float tolerance)."""
import pytest
import torch

from tests.test_train_fixtures import FAST, subset, train_shards
from train.config import build_config
from train.main import run


@pytest.mark.slow
def test_compiled_step_matches_eager(tmp_path_factory, tmp_path):
    root = subset(train_shards(tmp_path_factory), tmp_path / "shards", 1)
    res = {}
    for flag in ("false", "true"):
        cfg = build_config([f"--shards={root}", f"--out={tmp_path / flag}", *FAST, f"--compile={flag}",
                            "--max_steps=1", "--val_every=0"])
        res[flag] = run(cfg, device="cpu")
        torch._dynamo.reset()
    assert res["true"]["step"] == 1
    eager, compiled = res["false"]["losses"], res["true"]["losses"]
    assert compiled.keys() == eager.keys()
    for k in eager:
        assert compiled[k] == pytest.approx(eager[k], rel=1e-3, abs=1e-4), k
    a = torch.load(tmp_path / "false" / "final.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "true" / "final.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()  # no `_orig_mod.` prefixes in the saved weights
    # Adam's first step moves every weight by about lr * sign(gradient), so where a gradient is at
    # rounding-noise level the two runs may step in opposite directions (2 lr apart); with wrong
    # compiled gradients most weights would.
    lr = 1e-4
    diff = torch.cat([(b[k].float() - a[k].float()).abs().flatten() for k in a if a[k].is_floating_point()])
    assert diff.max() <= 2.5 * lr and diff.mean() < 0.05 * lr, (diff.max(), diff.mean())
