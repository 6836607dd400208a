"""Checkpoints: the original snapshot layout loads unchanged and gives the original's outputs; our
files round-trip whatever torch.compile / DDP did to the keys; clear errors on mismatches."""
import random
from pathlib import PurePosixPath

import numpy as np
import pytest
import torch

from model import InterNet, build_model, clean_state_dict, config_from_state_dict, get_config, load_checkpoint, save_checkpoint
from model.resnet import ResNet, depth_from_state_dict
from tests.test_model import assert_outputs_close, random_state, reference_forward, reference_layout


def test_original_snapshot_loads_and_gives_original_outputs(tmp_path):
    layout = reference_layout()  # the original's keys, "module." prefixed, ResNet-50, 64 bins
    network = random_state(layout, seed=3)
    path = tmp_path / "snapshot_19.pth.tar"
    torch.save({"epoch": 19, "network": network, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-6}]}}, path)
    loaded = load_checkpoint(path)
    assert loaded.layout == "original" and loaded.epoch == 19
    assert loaded.config == get_config("paper")
    assert loaded.raw["optimizer"]["param_groups"][0]["lr"] == 1e-6
    sd = loaded.model.state_dict()
    for k, v in network.items():  # every tensor arrived unchanged
        assert torch.equal(sd[k.removeprefix("module.")], v), k
    assert not loaded.model.training
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # small input: 16x16 heatmaps
    with torch.no_grad():
        out = loaded.model(x)
        ref = reference_forward({k.removeprefix("module."): v for k, v in network.items()}, x, 50, 64)
    assert out["heatmaps"].shape == (1, 42, 64, 16, 16)
    assert_outputs_close(out, ref)


def _model_and_input(seed=0):
    torch.manual_seed(seed)
    model = build_model("tiny")
    with torch.no_grad():  # non-trivial BN statistics so that the buffers matter
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval(), torch.rand(1, 3, 64, 64)


def test_our_checkpoint_round_trip_with_wrapper_prefixes(tmp_path):
    model, x = _model_and_input()
    with torch.no_grad():
        expect = model(x)
    sd = model.state_dict()
    # plain, torch.compile, DDP, compile(DDP(model)), DDP(compile(model))
    for prefix in ("", "_orig_mod.", "module.", "_orig_mod.module.", "module._orig_mod."):
        payload = {"model": {prefix + k: v for k, v in sd.items()}, "model_config": model.config.to_dict(), "epoch": 4}
        path = tmp_path / f"ckpt_{prefix or 'plain'}.pt"
        torch.save(payload, path)
        loaded = load_checkpoint(path)
        assert loaded.layout == "ours" and loaded.epoch == 4 and loaded.config == model.config
        got_sd = loaded.model.state_dict()
        assert got_sd.keys() == sd.keys() and all(torch.equal(got_sd[k], v) for k, v in sd.items()), prefix
        if prefix in ("", "module._orig_mod."):  # equal tensors give equal outputs; check twice anyway
            with torch.no_grad():
                got = loaded.model(x)
            for k in expect:
                assert torch.equal(got[k], expect[k]), (prefix, k)


def test_save_checkpoint_unwraps_ddp_style_wrappers(tmp_path):
    model, x = _model_and_input(1)
    with torch.no_grad():
        expect = model(x)
    wrapped = torch.nn.DataParallel(model)  # on CPU: a plain wrapper adding "module."
    assert all(k.startswith("module.") for k in wrapped.state_dict())
    path = save_checkpoint(tmp_path / "sub" / "model.pt", wrapped, epoch=7, optimizer={"lr": torch.tensor(1e-4)})
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    raw = torch.load(path, weights_only=True)
    assert not any(k.startswith("module.") for k in raw["model"]) and raw["model_config"] == model.config.to_dict()
    loaded = load_checkpoint(path)
    assert loaded.epoch == 7 and loaded.config == model.config
    with torch.no_grad():
        assert all(torch.equal(loaded.model(x)[k], expect[k]) for k in expect)


def test_training_checkpoint_with_config_object_and_rng_state(tmp_path):
    # the trainer stores the ModelConfig object itself and numpy/python RNG states
    model, x = _model_and_input(2)
    path = tmp_path / "step_00000010.pt"
    torch.save({"model": model.state_dict(), "model_config": model.config, "step": 10,
                "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}},
               path)
    loaded = load_checkpoint(path)
    assert loaded.config == model.config and loaded.raw["step"] == 10
    with torch.no_grad():
        assert torch.equal(loaded.model(x)["heatmaps"], model(x)["heatmaps"])


def test_mismatch_errors_name_file_and_keys(tmp_path):
    model, _ = _model_and_input()
    sd = {"module." + k: v for k, v in model.state_dict().items()}
    del sd["module.pose_net.hand_fc.2.bias"]
    sd["module.pose_net.extra.weight"] = torch.zeros(1)
    path = tmp_path / "snapshot_3.pth.tar"
    torch.save({"epoch": 3, "network": sd}, path)
    with pytest.raises(ValueError, match=r"snapshot_3\.pth\.tar.*missing keys \['pose_net\.hand_fc\.2\.bias'\]"
                                         r".*unexpected keys \['pose_net\.extra\.weight'\]"):
        load_checkpoint(path)
    # a stored config that disagrees with the weights: shape mismatches are listed
    good = model.state_dict()
    torch.save({"model": good, "model_config": get_config("tiny", root_bins=8).to_dict()}, path)
    with pytest.raises(ValueError, match=r"snapshot_3\.pth\.tar.*shape mismatches.*root_fc\.2\.weight"):
        load_checkpoint(path)
    torch.save({"something": 1}, path)
    with pytest.raises(ValueError, match="neither an original snapshot"):
        load_checkpoint(path)
    torch.save({"model": good, "run": PurePosixPath("runs/a")}, path)
    with pytest.raises(ValueError, match="weights_only"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_config_and_depth_inferred_from_weights():
    for depth in (18, 34, 50, 101, 152):
        with torch.device("meta"):
            sd = ResNet(depth, init=False).state_dict()
        assert depth_from_state_dict(sd) == depth
    with torch.device("meta"):
        sd = InterNet(get_config("paper", backbone="resnet101", depth_bins=48, root_bins=40, head_channels=96),
                      init=False).state_dict()
    cfg = config_from_state_dict(sd, input_size=192)
    assert (cfg.backbone, cfg.depth_bins, cfg.root_bins, cfg.input_size, cfg.head_channels) == (
        "resnet101", 48, 40, 192, 96)
    assert clean_state_dict({"module._orig_mod.a.b": 1, "x._orig_mod.y": 2}) == {"a.b": 1, "x.y": 2}
    with pytest.raises(ValueError, match="not an InterNet"):
        config_from_state_dict({"a": torch.zeros(1)})
