"""Criterion (docs/conventions.md §6): the heatmap loss without target volumes equals the original's
materialised formula (value and gradient); root-depth L1 and hand-type BCE as the original."""
import pytest
import torch
import torch.nn.functional as F

from model import Criterion, build_model, heatmap_loss
from model.loss import hand_type_loss, root_depth_loss


def materialised_heatmap_loss(p, coord, valid, sigma=2.5, peak=255.0):
    """The original: render the full Gaussian target volume, squared error * validity, mean over all."""
    B, J, D, H, W = p.shape
    zz, yy, xx = torch.meshgrid(torch.arange(D), torch.arange(H), torch.arange(W), indexing="ij")
    xx, yy, zz = (t[None, None].to(p.dtype) for t in (xx, yy, zz))
    x, y, z = (coord[:, :, i, None, None, None].to(p.dtype) for i in range(3))
    t = torch.exp(-(((xx - x) / sigma) ** 2) / 2 - (((yy - y) / sigma) ** 2) / 2 - (((zz - z) / sigma) ** 2) / 2) * peak
    return ((p - t) ** 2 * valid[:, :, None, None, None].to(p.dtype)).mean()


def random_case(seed, B=2, J=6, D=9, H=11, W=13, scale=100.0, near_target=False):
    g = torch.Generator().manual_seed(seed)
    # centres inside, near and beyond the borders (a Gaussian cut by the grid, or only its tail inside)
    lo, hi = -4.0, 4.0
    coord = torch.stack([torch.rand(B, J, generator=g) * (n - 1 + hi - lo) + lo for n in (W, H, D)], -1)
    coord[0, 0] = torch.tensor([0.0, 0.0, 0.0])
    coord[0, 1] = torch.tensor([W - 1.0, H - 0.5, D + 3.0])
    valid = (torch.rand(B, J, generator=g) > 0.3).float()
    valid[0, :2] = 1
    valid[-1, -1] = 0
    if near_target:
        zz, yy, xx = torch.meshgrid(torch.arange(D), torch.arange(H), torch.arange(W), indexing="ij")
        tgt = 255 * torch.exp(-((xx - coord[..., 0, None, None, None]) ** 2 + (yy - coord[..., 1, None, None, None]) ** 2
                                + (zz - coord[..., 2, None, None, None]) ** 2) / (2 * 2.5 ** 2))
        p = tgt + torch.randn(B, J, D, H, W, generator=g) * 2.0  # close to the target: terms nearly cancel
    else:
        p = torch.randn(B, J, D, H, W, generator=g) * scale
    return p, coord, valid


@pytest.mark.parametrize("seed, near", [(0, False), (1, False), (2, True)])
def test_heatmap_loss_value_and_gradient_equal_materialised(seed, near):
    p, coord, valid = random_case(seed, near_target=near)
    p32 = p.clone().requires_grad_()
    loss = heatmap_loss(p32, coord, valid)
    loss.backward()
    p64 = p.detach().double().requires_grad_()
    ref = materialised_heatmap_loss(p64, coord.double(), valid.double())
    ref.backward()
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert abs(loss.item() - ref.item()) <= 1e-4 * abs(ref.item())
    gerr = (p32.grad.double() - p64.grad).abs().max() / p64.grad.abs().max()
    assert gerr <= 1e-4
    # invalid joints get no gradient at all
    assert torch.all(p32.grad[valid == 0] == 0)


def test_heatmap_loss_float32_reference_and_bf16_input():
    p, coord, valid = random_case(3, B=1, J=4)
    ref = materialised_heatmap_loss(p.float(), coord, valid)  # the original, float32 throughout
    assert heatmap_loss(p, coord, valid).item() == pytest.approx(ref.item(), rel=1e-5)
    pb = p.bfloat16().requires_grad_()
    lb = heatmap_loss(pb, coord, valid)
    lb.backward()
    assert lb.dtype == torch.float32 and pb.grad.dtype == torch.bfloat16
    assert lb.item() == pytest.approx(materialised_heatmap_loss(pb.detach().double(), coord.double(),
                                                                valid.double()).item(), rel=1e-4)


def test_heatmap_loss_ignores_autocast():
    # near the targets the loss is a small difference of large sums: bf16 matmuls would show
    p, coord, valid = random_case(2, near_target=True)
    plain = heatmap_loss(p, coord, valid)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = heatmap_loss(p, coord, valid)
    assert auto.dtype == torch.float32 and auto.item() == pytest.approx(plain.item(), rel=1e-6)


def test_heatmap_loss_rejects_bad_shapes():
    p, coord, valid = random_case(4, B=1, J=3)
    with pytest.raises(ValueError, match="heatmap loss"):
        heatmap_loss(p, coord[:, :2], valid)
    with pytest.raises(ValueError, match="heatmap loss"):
        heatmap_loss(p[0], coord, valid)


def test_root_depth_and_hand_type_losses_as_original():
    g = torch.Generator().manual_seed(5)
    B = 6
    pred_d, tgt_d = torch.rand(B, generator=g) * 64, torch.rand(B, generator=g) * 64
    root_valid = torch.tensor([1.0, 0, 1, 1, 0, 1])
    expect = sum(abs(pred_d[i] - tgt_d[i]) * root_valid[i] for i in range(B)) / B
    assert root_depth_loss(pred_d, tgt_d, root_valid).item() == pytest.approx(expect.item(), rel=1e-6)
    ht = torch.rand(B, 2, generator=g)
    ht[0, 0], ht[1, 1] = 1.0, 0.0  # saturated probabilities: log clamped at -100 as torch's BCE
    tgt = torch.tensor([[0.0, 1], [1, 1], [1, 0], [0, 1], [1, 1], [1, 0]])
    hv = torch.tensor([1.0, 1, 0, 1, 1, 1])
    expect = (F.binary_cross_entropy(ht, tgt, reduction="none").mean(1) * hv).mean()
    assert hand_type_loss(ht, tgt, hv).item() == pytest.approx(expect.item(), rel=1e-6)
    with pytest.raises(ValueError, match="rel_root_depth"):
        root_depth_loss(pred_d, tgt_d[:, None], root_valid)


def test_criterion_on_model_outputs_and_under_autocast():
    torch.manual_seed(0)
    model = build_model("tiny")
    crit = Criterion(model.config)
    B = 2
    D = model.config.depth_bins
    batch = {"images": torch.rand(B, 3, 64, 64), "joint_coord": torch.rand(B, 42, 3) * D,
             "joint_valid": torch.ones(B, 42), "rel_root_depth": torch.rand(B) * 16, "root_valid": torch.ones(B),
             "hand_type": torch.tensor([[1.0, 0], [1, 1]]), "hand_type_valid": torch.ones(B)}
    out = model(batch["images"])
    losses = crit(out, batch)
    assert list(losses) == ["joint_heatmap", "rel_root_depth", "hand_type"]
    assert all(v.dtype == torch.float32 and v.dim() == 0 for v in losses.values())
    expect = materialised_heatmap_loss(out["heatmaps"].double(), batch["joint_coord"].double(),
                                       batch["joint_valid"].double())
    assert losses["joint_heatmap"].item() == pytest.approx(expect.item(), rel=1e-4)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch["images"])
        losses = crit(out, batch)
    assert out["heatmaps"].dtype == torch.bfloat16 and out["rel_root_depth"].dtype == torch.float32
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_hand_type_gradient_is_finite_when_saturated():
    # A sigmoid output that rounds to exactly 1 or 0 (it happens within a few dozen steps when
    # training from scratch): the gradient must stay finite, as F.binary_cross_entropy's does.
    logits = torch.tensor([[40.0, -120.0], [40.0, 40.0], [0.3, -0.2]], requires_grad=True)
    prob = torch.sigmoid(logits)
    assert prob[0, 0].item() == 1.0 and prob[0, 1].item() == 0.0
    target = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])  # row 0: confidently wrong
    loss = hand_type_loss(prob, target, torch.ones(3))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    ref = torch.nn.functional.binary_cross_entropy(torch.sigmoid(logits.detach()), target, reduction="none").mean(1).mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
