"""benchmarks/chirality_probe.py: its augmentation keeps each label with its hand, and the probe learns
right from left when the pictures state it (the tiny set drawn with the right hand red, the left blue)."""
import numpy as np
import pytest
import torch

from benchmarks import chirality_probe as probe
from pipeline import graph
from shards.synth import generate, render

RED, BLUE = np.array([0.85, 0.12, 0.1]), np.array([0.1, 0.2, 0.85])


@pytest.fixture
def still(monkeypatch):
    """The pipeline's augmentation ranges set to zero: only the flip remains."""
    for name in ("ROT_PROB", "SCALE_FACTOR", "TRANS_FACTOR", "COLOR_FACTOR"):
        monkeypatch.setattr(graph, name, 0.0)
    return monkeypatch


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_augment_mirrors_the_picture_and_swaps_the_label(still, flip):
    still.setattr(graph, "FLIP_PROB", flip)
    x = torch.rand(4, 3, 8, 8)
    right = torch.tensor([True, False, True, False])
    out, target = probe.augment(x, right, torch.Generator().manual_seed(0))
    expected = x.flip(-1) if flip else x
    assert torch.allclose(out, expected, atol=1e-5)
    is_right = ~right if flip else right
    np.testing.assert_array_equal(target.numpy(), np.stack([is_right, ~is_right], 1).astype(np.float32))


def test_augment_without_flip_never_mirrors(still):
    still.setattr(graph, "FLIP_PROB", 1.0)
    x = torch.rand(4, 3, 8, 8)
    out, target = probe.augment(x, torch.tensor([True, False, True, False]), torch.Generator(), flip=False)
    assert torch.allclose(out, x, atol=1e-5)
    np.testing.assert_array_equal(target[:, 0].numpy(), [1, 0, 1, 0])


@pytest.mark.parametrize("opt, lr, warmup", [("adam", 3e-3, 0), ("sgd", 0.05, 5)])
def test_probe_learns_a_stated_side(tmp_path, monkeypatch, opt, lr, warmup):
    original = render.surface

    def marked(ras, focal, princpt, skins):
        (vs, us), p, normal, albedo = original(ras, focal, princpt, skins)
        albedo[:] = np.where((ras.hand[vs, us] == 0)[:, None], RED, BLUE)
        return (vs, us), p, normal, albedo

    monkeypatch.setattr(render, "surface", marked)
    generate(str(tmp_path / "synth"), size="tiny", seed=0, workers=1)  # in this process: the patch holds
    # no flip: a mirrored red right hand would be a red left one
    result = probe.run(str(tmp_path / "synth"), steps=30, evals=2, flip=False, lr=lr, opt=opt, warmup=warmup,
                       progress=lambda s: None)
    assert (result["opt"], result["lr"], result["warmup"]) == (opt, lr, warmup)
    assert result["train_single_hands"] >= 30 and [c["step"] for c in result["curve"]] == [15, 30]
    assert result["curve"][-1]["train_auc"] >= 0.9, result  # measured 1.0; chance 0.5


def test_optimiser_and_warmup_options():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(probe.make_optimizer(params, "adam", 1e-3), torch.optim.Adam)
    sgd = probe.make_optimizer(params, "sgd", 0.05)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9 and sgd.defaults["nesterov"]
    with pytest.raises(ValueError, match="unknown optimiser 'lamb'"):
        probe.make_optimizer(params, "lamb", 1e-3)
    assert [probe.lr_at(s, 3e-3, 4) for s in (1, 2, 4, 5, 100)] == pytest.approx([7.5e-4, 1.5e-3, 3e-3, 3e-3, 3e-3])
    assert probe.lr_at(1, 3e-3, 0) == 3e-3
