"""benchmarks/handedness.py's `htlr` variant: only the hand-type MLP steps at a tenth of the rate."""
from types import SimpleNamespace

import torch

from benchmarks.handedness import _slow_hand_type_head
from model import build_model
from train import loop


def test_htlr_slows_only_the_hand_type_mlp(monkeypatch):
    monkeypatch.setattr(loop, "build_optimizer", loop.build_optimizer)  # restored after the test
    _slow_hand_type_head()
    torch.manual_seed(0)
    model = build_model("demo")
    opt = loop.build_optimizer(model, SimpleNamespace(lr=1e-3), torch.device("cpu"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model(torch.randn(2, 3, 64, 64))
    sum(v.float().sum() for v in out.values()).backward()
    opt.step()
    # Adam's first step moves every weight with a gradient by ~lr (sign of the gradient)
    head = (model.pose_net.hand_fc[0].weight - before["pose_net.hand_fc.0.weight"]).abs().max().item()
    conv = (model.backbone_net.resnet.conv1.weight - before["backbone_net.resnet.conv1.weight"]).abs().max().item()
    assert abs(head - 1e-4) < 2e-6 and abs(conv - 1e-3) < 2e-5, (head, conv)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-3]  # the schedule's value is left as set


def test_bblr_slows_the_backbone_and_the_hand_type_mlp_only(monkeypatch):
    from benchmarks.handedness import _slow_backbone

    monkeypatch.setattr(loop, "build_optimizer", loop.build_optimizer)  # restored after the test
    _slow_backbone()
    torch.manual_seed(0)
    model = build_model("demo")
    opt = loop.build_optimizer(model, SimpleNamespace(lr=1e-3), torch.device("cpu"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model(torch.randn(2, 3, 64, 64))
    sum(v.float().sum() for v in out.values()).backward()
    opt.step()

    def moved(name):
        return (dict(model.named_parameters())[name] - before[name]).abs().max().item()

    assert abs(moved("pose_net.hand_fc.0.weight") - 1e-4) < 2e-6
    assert abs(moved("backbone_net.resnet.conv1.weight") - 1e-4) < 2e-6
    assert abs(moved("pose_net.joint_conv_1.0.weight") - 1e-3) < 2e-5
    assert abs(moved("pose_net.root_fc.0.weight") - 1e-3) < 2e-5


def test_scale_option_rejects_a_malformed_value(capsys):
    import pytest

    from benchmarks.handedness import main

    with pytest.raises(SystemExit) as e:
        main(["base", "--work", "/nonexistent-never-written", "--scale", "backbone_net.0.1"])
    assert e.value.code == 2
    assert "expected PREFIX=X" in capsys.readouterr().err
