import json

import pytest

from model.config import get_config
from train.config import PRESETS, TrainConfig, build_config, save_config
from train.loop import lr_at


def test_paper_defaults_match_spec():
    cfg = build_config([])
    assert (cfg.lr, cfg.epochs, tuple(cfg.lr_decay_epochs), cfg.batch_size) == (1e-4, 20, (15, 17), 16)
    rhd = build_config(["--preset=rhd"])
    assert (rhd.epochs, tuple(rhd.lr_decay_epochs)) == (50, (45, 47))


def test_overrides_and_types():
    cfg = build_config(["--preset", "demo", "--lr=3e-4", "--compile=false", "--lr_decay_epochs=2,4", "--deterministic",
                        "--batch-size", "8"])
    assert cfg.preset == "demo" and cfg.model == get_config(PRESETS["demo"]["model"])
    assert cfg.lr == 3e-4 and cfg.compile is False and cfg.lr_decay_epochs == (2, 4)
    assert cfg.deterministic is True and cfg.batch_size == 8


@pytest.mark.parametrize("argv, msg", [
    (["--nope=1"], "unknown option --nope"),
    (["--preset=huge"], "unknown preset"),
    (["--epochs=0"], "epochs must be"),
    (["--lr_decay_epochs=5,3"], "increasing"),
    (["--compile=maybe"], "boolean"),
    (["--epochs=two"], "cannot read"),
    (["positional"], "unexpected argument"),
])
def test_bad_options_are_rejected(argv, msg):
    with pytest.raises(ValueError, match=msg):
        build_config(argv)


def test_config_is_frozen_and_saved(tmp_path):
    cfg = TrainConfig(shards="s", out="o")
    with pytest.raises(Exception):
        cfg.lr = 1.0
    save_config(cfg, tmp_path / "config.json", {"git_revision": "abc"})
    d = json.loads((tmp_path / "config.json").read_text())
    assert d["lr"] == 1e-4 and d["git_revision"] == "abc" and d["lr_decay_epochs"] == [15, 17]


def test_lr_schedule_is_the_originals():
    cfg = TrainConfig()
    # Original set_lr: epochs 0-14 lr, 15-16 lr/10, 17+ lr/100.
    assert [lr_at(cfg, e) for e in (0, 14, 15, 16, 17, 19)] == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-6])


@pytest.mark.parametrize("text, msg", [
    ("backbone_net.0.1", "not PREFIX=X"),
    ("=0.1", "not PREFIX=X"),
    ("backbone_net.=fast", "cannot read 'fast'"),
    ("backbone_net.=-1", ">= 0"),
    ("backbone_net.=nan", ">= 0"),
    ("backbone_net.=0.1,backbone_net.=0.2", "given twice"),
])
def test_malformed_lr_scales_are_rejected(text, msg):
    with pytest.raises(ValueError, match=msg):
        build_config([f"--lr_scales={text}"])


def test_lr_scales_parse():
    from train.config import parse_lr_scales

    assert parse_lr_scales("") == {}
    assert parse_lr_scales(" backbone_net.=0.1, pose_net.hand_fc.=0 ,") == {"backbone_net.": 0.1, "pose_net.hand_fc.": 0.0}
    assert build_config(["--lr_scales=backbone_net.=0.1"]).lr_scales == "backbone_net.=0.1"


def _first_adam_step(cfg):
    """How far the first Adam step moves each parameter (Adam's first step moves every weight that has a
    gradient by ~lr: the sign of the gradient)."""
    import torch

    from model import build_model
    from train.loop import build_optimizer

    torch.manual_seed(0)
    model = build_model(cfg.model)
    opt = build_optimizer(model, cfg, torch.device("cpu"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model(torch.randn(2, 3, cfg.model.input_size, cfg.model.input_size))
    sum(v.float().sum() for v in out.values()).backward()
    opt.step()
    return {n: (p - before[n]).abs().max().item() for n, p in model.named_parameters()}


def test_lr_scales_set_each_groups_step():
    moved = _first_adam_step(TrainConfig(model="demo", lr=1e-3, lr_scales="backbone_net.=0.1,pose_net.hand_fc.=0.1"))
    assert moved["pose_net.hand_fc.0.weight"] == pytest.approx(1e-4, rel=2e-2)
    assert moved["backbone_net.resnet.conv1.weight"] == pytest.approx(1e-4, rel=2e-2)
    assert moved["pose_net.joint_conv_1.0.weight"] == pytest.approx(1e-3, rel=2e-2)
    assert moved["pose_net.root_fc.0.weight"] == pytest.approx(1e-3, rel=2e-2)
    # the longest matching prefix wins; without lr_scales one rate
    moved = _first_adam_step(TrainConfig(model="demo", lr=1e-3, lr_scales="pose_net.hand_fc.=0.1,pose_net.=0.5"))
    assert moved["pose_net.hand_fc.0.weight"] == pytest.approx(1e-4, rel=2e-2)
    assert moved["pose_net.root_fc.0.weight"] == pytest.approx(5e-4, rel=2e-2)
    assert moved["backbone_net.resnet.conv1.weight"] == pytest.approx(1e-3, rel=2e-2)
    moved = _first_adam_step(TrainConfig(model="demo", lr=1e-3))
    assert moved["pose_net.hand_fc.0.weight"] == pytest.approx(1e-3, rel=2e-2)
    assert moved["backbone_net.resnet.conv1.weight"] == pytest.approx(1e-3, rel=2e-2)


def test_an_lr_scales_prefix_that_names_no_parameter_is_an_error():
    import torch

    from model import build_model
    from train.loop import build_optimizer

    with pytest.raises(ValueError, match=r"no parameter name starts with 'backbone\.'.*backbone_net\."):
        build_optimizer(build_model("demo"), TrainConfig(model="demo", lr_scales="backbone.=0.1"), torch.device("cpu"))
