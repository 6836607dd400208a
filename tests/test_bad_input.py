"""Bad input and hostile files (issue 13): each case fails with one line naming the file, field or
row, or is handled right; nothing wrong is reported as a result; no file we read runs code.

Run: .venv/bin/python -m pytest -q tests/test_bad_input.py
"""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from eval.__main__ import cli as eval_cli
from eval.__main__ import main as eval_main
from eval.metrics import joint_errors
from shards.__main__ import cli as shards_cli
from train import checkpoint as ckpt
from train.config import build_config, check_resume, save_config

from .test_eval_data import make_records, write_shards
from .test_eval_metrics import _perfect_bins


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    recs = make_records(12, seed=3)
    root = write_shards(str(tmp_path_factory.mktemp("shards")), "test", recs, per_shard=5)
    return root, sorted(recs, key=lambda r: r["annot_id"])


def _eval(tmp_path, root, arrays, name="p.npz"):
    path = str(tmp_path / name)
    np.savez(path, **arrays)
    return eval_main(["--predictions", path, "--shards", root, "--split", "test", "--out", str(tmp_path / "out"),
                      "--quiet", "--pictures", "0"]), path


# ---- evaluation: far-off predictions get the large error they deserve, or are refused ---------------
def test_far_off_camera_predictions_get_the_same_large_error(tmp_path, data):
    """Every joint at one far point: root-relative, that is all zeros, so the error is the GT's own
    root-relative pose at any distance; float32 arithmetic once gave 0.00 mm at 1e18."""
    root, recs = data
    ids = np.array([r["annot_id"] for r in recs])
    base = None
    for far in (1e3, 1e6, 1e10, 1e18):
        m, _ = _eval(tmp_path, root, {"annot_id": ids, "joint_cam": np.full((len(ids), 42, 3), far),
                                      "hand_type": np.full((len(ids), 2), 0.5)})
        base = m["mpjpe_all"] if base is None else base
        assert m["mpjpe_all"] == pytest.approx(base, rel=1e-9) and base > 10, far
    gt = np.stack([r["joint_cam"] for r in recs]).astype(np.float64)
    rel = gt.reshape(-1, 2, 21, 3) - gt.reshape(-1, 2, 21, 3)[:, :, 20:21]  # the independent answer
    np.testing.assert_allclose(joint_errors(np.full_like(gt, 1e18), gt), np.linalg.norm(rel, axis=-1).reshape(-1, 42))


@pytest.mark.parametrize("change, match", [
    (lambda a: a["joint_coord"].__setitem__((3, 5, 0), 1e18), r"'joint_coord' must hold x bins .* rows \[3\]"),
    (lambda a: a["joint_coord"].__setitem__((7, 1, 2), -700.0), r"'joint_coord' must hold z bins .* rows \[7\]"),
    (lambda a: a["rel_root_depth"].__setitem__(2, 1e6), r"'rel_root_depth' must hold bins .* rows \[2\]"),
    (lambda a: a["hand_type"].__setitem__((4, 1), 1.5), r"'hand_type' must hold probabilities in \[0, 1\].* rows \[4\]"),
    (lambda a: a["hand_type"].__setitem__((0, 0), -0.1), r"'hand_type' must hold probabilities"),
    (lambda a: a["joint_coord"].__setitem__((1, 1, 1), np.nan), r"'joint_coord' has non-finite values at rows \[1\]"),
])
def test_out_of_range_form_a_predictions_are_refused_naming_rows(tmp_path, data, change, match):
    root, recs = data
    jc, rel = _perfect_bins(recs)
    arrays = {"annot_id": np.array([r["annot_id"] for r in recs]), "joint_coord": jc.copy(), "rel_root_depth": rel.copy(),
              "hand_type": np.full((len(recs), 2), 0.5)}
    change(arrays)
    with pytest.raises(ValueError, match=match):
        _eval(tmp_path, root, arrays)


# ---- command lines: one line naming the file, exit 2, no traceback ------------------------------------
def _npz_cases(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, annot_id=np.arange(3), joint_cam=np.zeros((3, 42, 3)), hand_type=np.zeros((3, 2)))
    trunc = tmp_path / "truncated.npz"
    trunc.write_bytes(good.read_bytes()[:200])
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros((3, 42, 3)))
    pkl = tmp_path / "pickled.npz"
    np.savez(pkl, annot_id=np.array([{"a": 1}], dtype=object))
    return [(trunc, "not a readable predictions .npz"), (empty, "not a readable predictions .npz"),
            (npy, "a single array"), (pkl, "does not read")]


def test_eval_cli_bad_files_are_one_line(tmp_path, data, capsys):
    root, _ = data
    for path, msg in _npz_cases(tmp_path):
        assert eval_cli(["--predictions", str(path), "--shards", root, "--split", "test", "--out",
                         str(tmp_path / "o"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and msg in err, err
    man = os.path.join(root, "test", "manifest.json")
    good = str(tmp_path / "good.npz")
    saved = open(man).read()
    try:
        open(man, "w").write('{"complete": true, "shards": [')
        assert eval_cli(["--predictions", good, "--shards", root, "--split", "test", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{man}: not valid JSON" in err
    finally:
        open(man, "w").write(saved)


def test_shards_cli_errors_are_one_line(tmp_path, capsys):
    assert shards_cli(["--source", "interhand", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                       "--splits", "test", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "nope") in err and "Traceback" not in err


# ---- training: checkpoints run no code, hold no NaN; resume checks the config --------------------------
class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    ckdir = tmp_path / "run" / "checkpoints"
    ckdir.mkdir(parents=True)
    with open(ckdir / "step_00000001.pt", "wb") as f:
        pickle.dump({"step": 1, "x": _Exploit(marker)}, f)
    torch.save({"step": 1, "x": _Exploit(marker)}, ckdir / "step_00000002.pt")
    with pytest.raises(RuntimeError, match="no readable checkpoint"):
        ckpt.load_latest(tmp_path / "run", warn=None)
    assert not marker.exists()


def test_checkpoint_state_round_trips_with_weights_only(tmp_path):
    import random

    random.seed(3), np.random.seed(4), torch.manual_seed(5)
    state = {"step": 7, "rng": ckpt.rng_state(), "model": {"w": torch.ones(2)},
             "optimizer": {"state": {0: {"exp_avg": torch.zeros(2)}}, "param_groups": []}}
    ckpt.save(tmp_path, state)
    back = ckpt.load_latest(tmp_path)
    expect = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    ckpt.set_rng_state(back["rng"])
    assert (random.random(), np.random.rand()) == expect[:2] and torch.equal(torch.rand(1), expect[2])


@pytest.mark.parametrize("part", ["model", "optimizer"])
def test_non_finite_state_is_never_checkpointed(tmp_path, part):
    state = {"step": 3, "model": {"w": torch.ones(2)}, "optimizer": {"state": {0: {"exp_avg": torch.zeros(2)}}}}
    bad = {"w": torch.tensor([1.0, float("nan")])} if part == "model" else \
        {"state": {0: {"exp_avg": torch.tensor([float("inf"), 0.0])}}}
    ckpt.save(tmp_path, state)
    with pytest.raises(FloatingPointError, match=f"step 4: {part} holds non-finite"):
        ckpt.save(tmp_path, {**state, "step": 4, part: bad})
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000003.pt"]


@pytest.mark.parametrize("argv, match", [
    (["--lr=nan"], "lr must be a finite number"),
    (["--lr=inf"], "lr must be a finite number"),
    (["--model.sigma=inf"], "sigma must be a finite number"),
    (["--preset=demo", "--preset=nosuch"], "--preset given 2 times"),
    (["--model.nosuch=1"], "unknown option --model.nosuch"),
])
def test_config_rejects(argv, match):
    with pytest.raises(ValueError, match=match):
        build_config(argv)


def test_model_fields_override_from_the_command_line():
    cfg = build_config(["--preset=demo", "--model.input_size=128", "--model.backbone=resnet34"])
    assert (cfg.model.input_size, cfg.model.backbone, cfg.model.depth_bins) == (128, "resnet34", 16)
    assert cfg.model.heatmap_size == (16, 32, 32)


def test_resume_compares_the_saved_config(tmp_path):
    base = ["--preset=demo", "--shards=/s", f"--out={tmp_path}"]
    save_config(build_config(base), tmp_path / "config.json")
    check_resume(build_config(base + ["--resume", "--compile=true"]), tmp_path / "config.json")  # free to change
    with pytest.raises(ValueError, match=r"batch_size: 16 -> 8\n  lr: 0.01 -> 0.5"):
        check_resume(build_config(base + ["--resume", "--batch_size=8", "--lr=0.5"]), tmp_path / "config.json")
    with pytest.raises(ValueError, match=r"model.backbone: 'resnet18' -> 'resnet50'"):
        check_resume(build_config(["--preset=paper", "--shards=/s", f"--out={tmp_path}", "--resume"]),
                     tmp_path / "config.json")
    with pytest.raises(ValueError, match="--allow_schedule_change"):
        check_resume(build_config(base + ["--resume", "--epochs=30"]), tmp_path / "config.json")
    check_resume(build_config(base + ["--resume", "--epochs=30", "--allow_schedule_change"]), tmp_path / "config.json")
    # a run from before --lr_scales (no such key) trained at one rate: today's demo preset cannot continue it
    old = json.loads((tmp_path / "config.json").read_text())
    del old["lr_scales"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"lr_scales: '' -> 'backbone_net.=0.1"):
        check_resume(build_config(base + ["--resume"]), tmp_path / "config.json")
    check_resume(build_config(base + ["--resume", "--lr_scales="]), tmp_path / "config.json")


def test_resume_with_another_model_writes_nothing(tmp_path):
    """The trainer's command line: a clear error, exit 2, and the run folder unchanged."""
    run = tmp_path / "run"
    run.mkdir()
    save_config(build_config(["--preset=demo", "--shards=/s", f"--out={run}"]), run / "config.json")
    before = (run / "config.json").read_bytes()
    r = subprocess.run([sys.executable, "train/main.py", "--preset=paper", "--shards=/s", f"--out={run}", "--resume"],
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), capture_output=True, text=True)
    assert r.returncode == 2 and "model.backbone: 'resnet18' -> 'resnet50'" in r.stderr and "Traceback" not in r.stderr
    assert (run / "config.json").read_bytes() == before and sorted(os.listdir(run)) == ["config.json"]
    assert json.loads(before)["model"]["backbone"] == "resnet18"


# ---- sharding: files outside the root, changed images, wrong sizes, foreign files ----------------------
def _sharded(tmp_path, **kw):
    from shards import writer
    from tests.test_reader import write_interhand

    root = tmp_path / "data"
    if not root.exists():
        write_interhand(root, split="val")
    man = writer.convert_split("interhand", str(root), str(tmp_path / "out"), "val", shard_count=4, workers=1,
                               progress=False, **kw)
    return root, man


def _image(root, annot_id):
    data = json.loads((root / "annotations" / "val" / "InterHand2.6M_val_data.json").read_text())
    img_id = next(a["image_id"] for a in data["annotations"] if a["id"] == annot_id)
    img = next(i for i in data["images"] if i["id"] == img_id)
    return root / "images" / "val" / img["file_name"], img


def test_a_file_name_leading_out_of_the_root_is_never_read(tmp_path):
    from shards.index import iter_shard_samples
    from tests.test_reader import write_interhand

    root = tmp_path / "data"
    write_interhand(root, split="val")
    secret = tmp_path / "secret.jpg"  # a readable, valid JPEG outside the data root
    secret.write_bytes(_image(root, 104)[0].read_bytes())
    path = root / "annotations" / "val" / "InterHand2.6M_val_data.json"
    data = json.loads(path.read_text())
    img_id = next(a["image_id"] for a in data["annotations"] if a["id"] == 104)
    next(i for i in data["images"] if i["id"] == img_id)["file_name"] = "../../../secret.jpg"
    path.write_text(json.dumps(data))
    _, man = _sharded(tmp_path)
    skipped = {s["annot_id"]: s["reason"] for s in man["skipped"]}
    assert "file_name '../../../secret.jpg' leads outside" in skipped[104]
    assert 104 not in {int(k) for k, *_ in iter_shard_samples(str(tmp_path / "out" / "val"))}


def test_a_fixed_image_comes_back_on_a_re_run(tmp_path):
    root, man = _sharded(tmp_path)
    n = man["counts"]["total"]
    img, _ = _image(root, 105)
    good = img.read_bytes()
    img.write_bytes(good[:300])  # broken: skipped
    _, man = _sharded(tmp_path)
    assert man["counts"]["total"] == n - 1 and [s["annot_id"] for s in man["skipped"]] == [105]
    img.write_bytes(good)  # fixed: its shard is rewritten, the others kept
    _, man = _sharded(tmp_path)
    assert man["counts"]["total"] == n and not man["skipped"]
    assert man["_run"]["shards_written"] == 1 and man["_run"]["shards_kept"] == len(man["shards"]) - 1


@pytest.mark.parametrize("damage, reason", [
    (lambda img, meta: img.write_bytes(_jpeg(meta["height"] // 2, meta["width"])), "the annotation says"),
    (lambda img, meta: img.write_bytes(_jpeg(meta["width"], meta["height"])), "the annotation says"),
    (lambda img, meta: img.write_bytes(img.read_bytes()[:-2] + bytes(range(1, 60)) + b"\xff\xd9"), "extraneous bytes"),
])
def test_images_that_do_not_match_or_warn_are_skipped_with_the_reason(tmp_path, damage, reason):
    from tests.test_reader import write_interhand

    root = tmp_path / "data"
    write_interhand(root, split="val")
    img, meta = _image(root, 101 if meta_portrait(root, 101) else 100)
    damage(img, meta)
    _, man = _sharded(tmp_path)
    assert len(man["skipped"]) == 1 and reason in man["skipped"][0]["reason"] and str(img) in man["skipped"][0]["reason"]


def meta_portrait(root, annot_id):
    return _image(root, annot_id)[1]["width"] != _image(root, annot_id)[1]["height"]


def _jpeg(h, w):
    from tests.test_reader import tiny_jpeg

    return tiny_jpeg(1, (h, w))


def test_the_converter_removes_only_what_it_wrote(tmp_path):
    out = tmp_path / "out" / "val"
    out.mkdir(parents=True)
    foreign = {"val-my-notes.tar": b"mine", "val-backup.idx": b"mine too", ".val-000000.tar.tmp": b"not ours"}
    for name, data in foreign.items():
        (out / name).write_bytes(data)
    ours = out / ".val-000003.tar.123-abcdef01.tmp"  # a temporary file a killed run of ours left
    ours.write_bytes(b"partial")
    _sharded(tmp_path)
    from shards import writer

    writer.convert_split("interhand", str(tmp_path / "data"), str(tmp_path / "out"), "val", shard_count=3, workers=1,
                         progress=False)  # another plan: the first run's shards go, foreign files stay
    assert all((out / name).read_bytes() == data for name, data in foreign.items()) and not ours.exists()
    man = json.loads((out / "manifest.json").read_text())
    listed = {e[k] for e in man["shards"] for k in ("tar", "idx")}
    assert {p.name for p in out.iterdir()} == listed | set(foreign) | {"manifest.json", "filestat.json"}
