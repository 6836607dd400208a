"""benchmarks/handedness_detector.py: the crop it hands the detector, and a short run on the tiny set."""
import numpy as np
import pytest

from benchmarks.handedness_detector import crop, measure


def test_crop_is_the_bbox_resampled():
    yy, xx = np.mgrid[0:100, 0:120]
    img = np.stack([xx, yy, (xx + yy) % 256], axis=-1).astype(np.uint8)
    # same size: the bbox's pixels themselves
    np.testing.assert_array_equal(crop(img, [10, 20, 40, 40], 40), img[20:60, 10:50])
    # half size: each output pixel the mean of a 2 x 2 block (area averaging), computed here by reshaping
    blocks = img[20:60, 10:50].astype(np.float64).reshape(20, 2, 20, 2, 3).mean(axis=(1, 3))
    assert np.abs(crop(img, [10, 20, 40, 40], 20).astype(np.float64) - blocks).max() <= 1.0


def test_short_run_on_the_tiny_set(tmp_path):
    pytest.importorskip("mediapipe")
    from shards.synth import generate

    generate(tmp_path / "synth", size="tiny", seed=0)
    rows = measure(str(tmp_path / "synth"), [256, 64], limit=3)
    assert [r["resolution"] for r in rows] == [256, 64]
    for r in rows:
        assert r["single_hands"] == 3 and 0 <= r["side_right"] <= r["detected"] <= 3
        assert r["right_of_detected"] == round(r["side_right"] / max(r["detected"], 1), 3)
