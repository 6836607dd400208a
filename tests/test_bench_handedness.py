"""benchmarks/handedness.py's rate variants: `htlr` (only the hand-type MLP at a tenth of the rate) and
`bblr` (the backbone and the hand-type MLP at a tenth), through the trainer's --lr_scales."""
import pytest
import torch

from benchmarks.handedness import VARIANTS
from model import build_model
from train.config import build_config
from train.loop import build_optimizer


def _moved_after_one_step(variant):
    data, patch, overrides = VARIANTS[variant]
    assert data is None and patch is None  # an option of the trainer, no patch
    cfg = build_config(["--preset=demo", "--lr=1e-3", *overrides])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    opt = build_optimizer(model, cfg, torch.device("cpu"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model(torch.randn(2, 3, 64, 64))
    sum(v.float().sum() for v in out.values()).backward()
    opt.step()
    # Adam's first step moves every weight with a gradient by ~lr (sign of the gradient)
    return {n: (p - before[n]).abs().max().item() for n, p in model.named_parameters()}


def test_htlr_slows_only_the_hand_type_mlp():
    moved = _moved_after_one_step("htlr")
    assert moved["pose_net.hand_fc.0.weight"] == pytest.approx(1e-4, rel=2e-2)
    assert moved["backbone_net.resnet.conv1.weight"] == pytest.approx(1e-3, rel=2e-2)
    assert moved["pose_net.root_fc.0.weight"] == pytest.approx(1e-3, rel=2e-2)


def test_bblr_slows_the_backbone_and_the_hand_type_mlp_only():
    moved = _moved_after_one_step("bblr")
    assert moved["pose_net.hand_fc.0.weight"] == pytest.approx(1e-4, rel=2e-2)
    assert moved["backbone_net.resnet.conv1.weight"] == pytest.approx(1e-4, rel=2e-2)
    assert moved["pose_net.joint_conv_1.0.weight"] == pytest.approx(1e-3, rel=2e-2)
    assert moved["pose_net.root_fc.0.weight"] == pytest.approx(1e-3, rel=2e-2)


def test_scale_option_rejects_a_malformed_value(capsys):
    from benchmarks.handedness import main

    with pytest.raises(SystemExit) as e:
        main(["base", "--work", "/nonexistent-never-written", "--scale", "backbone_net.0.1"])
    assert e.value.code == 2
    assert "is not PREFIX=X" in capsys.readouterr().err
