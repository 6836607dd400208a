"""Handedness end to end (issue 17): a flip keeps every label with its hand, and the hand-type path learns.

The tiny synthetic set is drawn here with the right hand red and the left hand blue (a test-only marker,
so that a pixel says which hand it shows), converted to shards and read through the loader.
- With the flip forced on and off, the joints of each target hand land on that hand's pixels (a flip
  mirrors a red right hand into a red *left* hand: the left targets must sit on red) and the
  hand-type target swaps with them.
- A tiny network trained briefly (no flip, so the colour alone tells the sides) through train.main,
  then run through eval's checkpoint path on the train and val splits, tells right from left on the
  single-hand samples far above chance: labels, loss, head, checkpoint, prediction and scoring agree
  on which side is which.

Run: .venv/bin/python -m pytest -q tests/test_handedness.py
"""
import numpy as np
import pytest
import torch

from eval.gt import load_gt, split_url
from eval.metrics import handedness_correct, handedness_parts
from model import get_config
from pipeline import build_loader, graph
from pipeline.graph import aug_vector
from shards.sources import get_source
from shards.synth import generate, render
from shards.writer import convert_split

RED, BLUE = np.array([0.85, 0.12, 0.1]), np.array([0.1, 0.2, 0.85])
CONFIG = get_config("tiny")


def _marked(original):
    def surface(ras, focal, princpt, skins):
        (vs, us), p, normal, albedo = original(ras, focal, princpt, skins)
        albedo[:] = np.where((ras.hand[vs, us] == 0)[:, None], RED, BLUE)
        return (vs, us), p, normal, albedo
    return surface


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("marked")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render, "surface", _marked(render.surface))
        generate(str(root / "synth"), size="tiny", seed=0, workers=1)  # in this process: the patch holds
    source = get_source("interhand")
    for split in ("train", "val"):
        convert_split(source, str(root / "synth"), str(root / "shards"), split, progress=False)
    return root / "shards"


def _batches(shards, flip):
    loader = build_loader(split_url(shards, "train"), CONFIG, batch_size=8, train=False, device=torch.device("cpu"),
                          num_threads=1, progress=False, force_aug=aug_vector(flip=flip))
    for b in loader:
        yield b


@pytest.mark.parametrize("flip", [False, True])
def test_flip_keeps_each_label_with_its_hand(shards, flip):
    on_colour = {0: [], 1: []}  # target hand -> per joint: does its pixel show the expected colour?
    hand_types, ids = [], []
    for b in _batches(shards, flip):
        img = b["images"].permute(0, 2, 3, 1).numpy()  # (B, S, S, 3)
        coord, valid = b["joint_coord"].numpy(), b["joint_valid"].numpy() > 0
        x = np.round(coord[..., 0] / CONFIG.heatmap_size[2] * CONFIG.input_size).astype(int)
        y = np.round(coord[..., 1] / CONFIG.heatmap_size[1] * CONFIG.input_size).astype(int)
        for i in range(len(img)):
            for hand in (0, 1):
                # unflipped, the right targets show the red hand; flipped, they show the mirrored blue one
                expect = RED if (hand == 0) != flip else BLUE
                for j in range(21 * hand, 21 * hand + 21):
                    if valid[i, j] and 0 <= x[i, j] < CONFIG.input_size and 0 <= y[i, j] < CONFIG.input_size:
                        px = img[i, y[i, j], x[i, j]]
                        if px.sum() > 0.15:  # lit enough to tell the colours apart
                            other = BLUE if expect is RED else RED
                            on_colour[hand].append(np.abs(px / px.sum() - expect / expect.sum()).sum()
                                                   < np.abs(px / px.sum() - other / other.sum()).sum())
        hand_types.append(b["hand_type"].numpy())
        ids.append(b["annot_id"].numpy())
    for hand in (0, 1):
        # occlusion by the other hand and joints at a silhouette's edge miss a few
        assert len(on_colour[hand]) > 100 and np.mean(on_colour[hand]) > 0.8, (hand, np.mean(on_colour[hand]))
    # the hand-type target follows: right-only samples read [1, 0] unflipped and [0, 1] flipped
    gt = load_gt(split_url(shards, "train"), progress=False)
    ids = np.concatenate(ids)
    assert (np.sort(ids) == gt["annot_id"]).all()
    ht = np.concatenate(hand_types)[np.argsort(ids)]
    assert set(gt["hand_code"].tolist()) == {0, 1, 2}
    expected = gt["hand_type"][:, ::-1] if flip else gt["hand_type"]
    np.testing.assert_array_equal(ht, expected)


def test_hand_type_head_learns_right_from_left(shards, tmp_path, monkeypatch):
    from eval.run_checkpoint import predict_checkpoint
    from train.config import build_config
    from train.main import run

    monkeypatch.setattr(graph, "FLIP_PROB", 0.0)  # a flip would turn a red right hand into a red left one
    out = tmp_path / "run"
    cfg = build_config(["--preset=demo", f"--shards={shards}", f"--out={out}", "--epochs=16", "--lr_decay_epochs=",
                        "--val_every=0", "--batch_size=8", "--log_every=1000"])
    run(cfg, device="cpu")
    codes, probs = [], []
    for split in ("train", "val"):  # the path, not generalisation: the training pictures count too
        pred = predict_checkpoint(str(out / "final.pt"), str(shards), split, device="cpu", progress=False)
        gt = load_gt(split_url(shards, split), progress=False)
        order = np.argsort(pred["annot_id"])
        assert (pred["annot_id"][order] == gt["annot_id"]).all()
        valid = gt["hand_type_valid"].reshape(-1) > 0
        codes.append(gt["hand_code"][valid])
        probs.append(pred["hand_type"][order][valid])
    code, p = np.concatenate(codes), np.concatenate(probs)
    single = code < 2
    parts = handedness_parts(code, p)
    print(f"single-hand samples {single.sum()}, thresholded accuracy "
          f"{handedness_correct(code, p)[single].mean():.3f}, {parts}")
    # Right from left, ranked (chance 0.5; measured 1.0). The thresholded accuracy also needs "one hand,
    # not two" learnt and its threshold placed, which 16 short epochs do not always give (~0.6).
    assert single.sum() >= 40 and parts["chirality_auc"] >= 0.9, (int(single.sum()), parts)
