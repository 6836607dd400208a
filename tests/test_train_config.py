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
