"""The bar `make demo` prints (issue 17): handedness >= 0.90 and each error <= 0.75 x the mean-pose baseline's.

Run: .venv/bin/python -m pytest -q tests/test_demo_bar.py
"""
from train.demo import bar_checks

MEAN = {"handedness_accuracy": 0.33, "mpjpe_single": 90.0, "mpjpe_interacting": 100.0, "mpjpe_all": 96.0,
        "mrrpe": 220.0}


def test_bar_passes_only_when_every_head_beats_the_baseline():
    good = {"handedness_accuracy": 0.95, "mpjpe_single": 60.0, "mpjpe_interacting": 75.0, "mpjpe_all": 72.0,
            "mrrpe": 165.0}
    checks = bar_checks(good, MEAN)
    assert [k for k, _, _ in checks] == ["handedness", "mpjpe_single", "mpjpe_interacting", "mpjpe_all", "mrrpe"]
    assert all(ok for _, _, ok in checks)
    for key, worse in (("handedness_accuracy", 0.89), ("mpjpe_single", 67.6), ("mpjpe_interacting", 75.1),
                       ("mpjpe_all", 72.1), ("mrrpe", 165.1)):
        failed = [k for k, _, ok in bar_checks({**good, key: worse}, MEAN) if not ok]
        assert failed == [{"handedness_accuracy": "handedness"}.get(key, key)], (key, failed)
    text = dict((k, t) for k, t, _ in checks)
    assert "0.67 x the mean pose's 90.0 mm" in text["mpjpe_single"]
