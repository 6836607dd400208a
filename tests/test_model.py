"""InterNet: key layout vs the original checkpoint, forward vs a plain functional reference, init,
ImageNet backbone loading, decoding vs a plain reference. CPU, tiny sizes."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model import ModelConfig, build_model, decode, get_config, load_backbone_weights

# A copy of ../shared/reference/internet_resnet50_state_dict.txt (the original checkpoint's key layout).
REFERENCE = Path(__file__).resolve().parent / "data" / "internet_resnet50_state_dict.txt"
BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}


def reference_layout() -> dict:
    """key -> (shape, dtype) as listed in the reference file (DataParallel keys)."""
    if not REFERENCE.exists():
        raise FileNotFoundError(f"reference file not found: {REFERENCE}")
    out = {}
    for line in REFERENCE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, rest = line.split(" ", 1)
        shape_txt, dtype = rest.rsplit(" ", 1)
        shape = tuple(int(s) for s in shape_txt.strip("()").split(",") if s.strip())
        out[key] = (shape, dtype)
    return out


# ---- plain functional reference of the original network, reading weights by the original's key names
def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                        training=False, eps=1e-5)


def reference_forward(sd: dict, x: torch.Tensor, depth: int, D: int) -> dict:
    """What the original InterNet (eval mode) computes, written out with torch.nn.functional."""
    r = "backbone_net.resnet."
    h = F.max_pool2d(F.relu(_bn(F.conv2d(x, sd[r + "conv1.weight"], stride=2, padding=3), sd, r + "bn1")), 3, 2, 1)
    bottleneck = depth >= 50
    for stage, n in enumerate(BLOCKS[depth]):
        for i in range(n):
            p = f"{r}layer{stage + 1}.{i}."
            stride = 2 if (stage > 0 and i == 0) else 1
            idn = h
            if p + "downsample.0.weight" in sd:
                idn = _bn(F.conv2d(h, sd[p + "downsample.0.weight"], stride=stride), sd, p + "downsample.1")
            if bottleneck:  # stride in the 3x3 conv (torchvision v1.5)
                o = F.relu(_bn(F.conv2d(h, sd[p + "conv1.weight"]), sd, p + "bn1"))
                o = F.relu(_bn(F.conv2d(o, sd[p + "conv2.weight"], stride=stride, padding=1), sd, p + "bn2"))
                o = _bn(F.conv2d(o, sd[p + "conv3.weight"]), sd, p + "bn3")
            else:
                o = F.relu(_bn(F.conv2d(h, sd[p + "conv1.weight"], stride=stride, padding=1), sd, p + "bn1"))
                o = _bn(F.conv2d(o, sd[p + "conv2.weight"], padding=1), sd, p + "bn2")
            h = F.relu(o + idn)
    heat = []
    for b in (1, 2):
        f = h
        for k in (0, 3, 6):
            f = F.conv_transpose2d(f, sd[f"pose_net.joint_deconv_{b}.{k}.weight"], stride=2, padding=1)
            f = F.relu(_bn(f, sd, f"pose_net.joint_deconv_{b}.{k + 1}"))
        f = F.conv2d(f, sd[f"pose_net.joint_conv_{b}.0.weight"], sd[f"pose_net.joint_conv_{b}.0.bias"])
        heat.append(f.view(f.shape[0], 21, D, f.shape[2], f.shape[3]))
    gap = F.avg_pool2d(h, (h.shape[2], h.shape[3])).flatten(1)

    def mlp(name):
        return F.linear(F.relu(F.linear(gap, sd[name + ".0.weight"], sd[name + ".0.bias"])),
                        sd[name + ".2.weight"], sd[name + ".2.bias"])
    root = F.softmax(mlp("pose_net.root_fc"), 1)
    root = (root * torch.arange(root.shape[1], dtype=root.dtype)).sum(1)
    return {"heatmaps": torch.cat(heat, 1), "rel_root_depth": root, "hand_type": torch.sigmoid(mlp("pose_net.hand_fc"))}


def random_state(layout: dict, seed: int = 0) -> dict:
    """Random tensors for every key (shape, dtype): fan-in scaled weights, so deep nets stay finite."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, (shape, dtype) in layout.items():
        if dtype == "int64":
            sd[k] = torch.randint(0, 1000, shape, generator=g)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 1:  # BN weight/bias, running_mean, biases
            sd[k] = torch.rand(shape, generator=g) * 0.5 + (0.5 if k.endswith(".weight") else -0.25)
        else:
            fan_in = shape[0] if "deconv" in k else int(np.prod(shape[1:]))
            sd[k] = torch.randn(shape, generator=g) / fan_in ** 0.5
    return sd


def assert_outputs_close(out: dict, ref: dict, rtol=1e-4, atol=1e-5):
    assert set(out) == {"heatmaps", "rel_root_depth", "hand_type"}
    for k in ref:
        assert out[k].shape == ref[k].shape, k
        torch.testing.assert_close(out[k], ref[k], rtol=rtol, atol=atol * max(1.0, ref[k].abs().max().item()))


# ---- tests
def test_state_dict_matches_original_checkpoint_layout():
    layout = reference_layout()
    assert len(layout) == 366
    sd = build_model("paper").state_dict()
    ours = {"module." + k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()}
    assert sorted(ours) == sorted(layout)
    assert ours == layout
    assert sum(v.numel() for k, v in sd.items() if "num_batches" not in k and "running" not in k) == 47_305_474


@pytest.mark.parametrize("preset", ["tiny", "demo"])
def test_forward_equals_functional_reference(preset):
    torch.manual_seed(0)
    cfg = get_config(preset)
    model = build_model(cfg)
    sd = random_state({k: (tuple(v.shape), str(v.dtype)[6:]) for k, v in model.state_dict().items()})
    model.load_state_dict(sd)
    model.eval()
    x = torch.rand(2, 3, cfg.input_size, cfg.input_size)
    with torch.no_grad():
        out = model(x)
        ref = reference_forward(sd, x, 18, cfg.depth_bins)
        assert out["heatmaps"].shape == (2, 42, *cfg.heatmap_size)
        assert out["heatmaps"].is_contiguous()
        assert_outputs_close(out, ref)
        # channels_last model + input: same outputs, heatmaps still a contiguous (B, 42, D, H, W)
        cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
        assert cl["heatmaps"].is_contiguous()
        assert_outputs_close(cl, ref)


def test_config_validation_and_presets():
    assert get_config("paper").heatmap_size == (64, 64, 64) and get_config("paper").backbone == "resnet50"
    assert get_config("small").heatmap_size == (32, 32, 32) and get_config("demo").heatmap_size == (16, 16, 16)
    assert get_config("paper", depth_bins=32).depth_bins == 32
    for bad, msg in [({"backbone": "resnet20"}, "backbone"), ({"input_size": 100}, "multiple of 32"),
                     ({"depth_bins": 1}, "depth_bins"), ({"sigma": 0.0}, "sigma")]:
        with pytest.raises(ValueError, match=msg):
            ModelConfig(**bad)
    with pytest.raises(ValueError, match="unknown model preset"):
        get_config("huge")
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        get_config({"backbone": "resnet18", "nope": 1})
    with pytest.raises(Exception):
        get_config("paper").sigma = 3.0  # frozen


def test_head_sizes_follow_backbone():
    sd = build_model("tiny").state_dict()  # resnet18: 512 channels
    assert sd["pose_net.joint_deconv_1.0.weight"].shape == (512, 256, 4, 4)
    assert sd["pose_net.root_fc.0.weight"].shape == (512, 512)
    assert sd["pose_net.joint_conv_2.0.weight"].shape == (21 * 16, 256, 1, 1)
    assert sd["pose_net.root_fc.2.weight"].shape == (16, 512)
    narrow = build_model("tiny", head_channels=64).state_dict()  # the demo's narrower heads
    assert narrow["pose_net.joint_deconv_1.0.weight"].shape == (512, 64, 4, 4)
    assert narrow["pose_net.joint_deconv_2.3.weight"].shape == (64, 64, 4, 4)
    assert narrow["pose_net.joint_conv_1.0.weight"].shape == (21 * 16, 64, 1, 1)
    assert sorted(narrow) == sorted(sd)  # same keys: only widths change
    with pytest.raises(ValueError, match="head_channels"):
        ModelConfig(head_channels=0)


def test_head_initialisation_statistics():
    torch.manual_seed(0)
    pn = build_model("small").pose_net
    for name, std in [("joint_deconv_1.0", 1e-3), ("joint_deconv_2.6", 1e-3), ("joint_conv_1.0", 1e-3),
                      ("root_fc.0", 1e-2), ("hand_fc.2", 1e-2), ("root_fc.2", 1e-2)]:
        w = pn.get_submodule(name).weight
        assert abs(w.std().item() - std) < 0.1 * std, name
        assert abs(w.mean().item()) < 0.1 * std, name
    for name in ("joint_conv_1.0", "joint_conv_2.0", "root_fc.0", "root_fc.2", "hand_fc.0", "hand_fc.2"):
        assert torch.all(pn.get_submodule(name).bias == 0), name
    for name in ("joint_deconv_1.1", "joint_deconv_2.7"):
        bn = pn.get_submodule(name)
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert pn.joint_deconv_1[0].bias is None


def test_load_backbone_weights(tmp_path):
    model = build_model("tiny")
    resnet = model.backbone_net.resnet
    tv = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in resnet.state_dict().items()}
    tv["fc.weight"], tv["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)  # torchvision has a classifier
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(tv, path)
    heads_before = {k: v.clone() for k, v in model.pose_net.state_dict().items()}
    load_backbone_weights(model, path)
    for k, v in resnet.state_dict().items():
        assert torch.equal(v, tv[k]), k
    for k, v in model.pose_net.state_dict().items():
        assert torch.equal(v, heads_before[k]), k
    # a ResNet-50 file for a ResNet-18 model: a clear error naming the file
    del tv["layer4.1.bn2.bias"]
    tv["layer1.0.conv3.weight"] = torch.zeros(256, 64, 1, 1)
    torch.save(tv, path)
    with pytest.raises(ValueError, match=r"resnet18-f37072fd\.pth.*missing keys.*layer4\.1\.bn2\.bias.*unexpected"):
        load_backbone_weights(model, path)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_backbone_weights(model, tmp_path / "nope.pth")


# ---- decoding
def reference_decode(h: np.ndarray) -> np.ndarray:
    """Per joint: among the voxels holding the maximum, the smallest x, then y, then z (the original's
    nested torch.max order)."""
    B, J = h.shape[:2]
    out = np.zeros((B, J, 3), np.float32)
    for b in range(B):
        for j in range(J):
            zs, ys, xs = np.nonzero(h[b, j] == h[b, j].max())
            best = min(zip(xs, ys, zs))
            out[b, j] = best
    return out


@pytest.mark.parametrize("ties", [False, True])
def test_decode_matches_reference(ties):
    g = torch.Generator().manual_seed(1)
    h = torch.randint(0, 3, (2, 42, 5, 6, 7), generator=g).float() if ties else torch.randn(2, 42, 5, 6, 7, generator=g)
    got = decode(h)
    assert got.dtype == torch.float32 and got.shape == (2, 42, 3)
    np.testing.assert_array_equal(got.numpy(), reference_decode(h.numpy()))
    # a single peak lands exactly where it was put
    h = torch.zeros(1, 42, 8, 9, 10)
    pos = torch.stack([torch.randint(0, n, (42,), generator=g) for n in (10, 9, 8)], 1)  # x, y, z
    h[0, torch.arange(42), pos[:, 2], pos[:, 1], pos[:, 0]] = 1.0
    assert torch.equal(decode(h)[0], pos.float())
    assert torch.equal(decode(h.bfloat16())[0], pos.float())
    with pytest.raises(ValueError, match="heatmaps must be"):
        decode(torch.zeros(42, 8, 8, 8))
