"""`python -m eval.demo` with --bbox: the outputs (all four, mode 0644, all or nothing) and a table of bad
inputs, each ending in one line naming the option or file, exit status 1, no traceback, nothing written.

Run: .venv/bin/python -m pytest -q tests/test_eval_demo.py
"""
import io
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import torch

from eval import demo as demo_mod
from eval.demo import DemoError, crop
from eval.demo import main as demo_main


@pytest.fixture(scope="session")
def demo_ckpts(tmp_path_factory):
    """Checkpoints of the demo preset (random weights): 'both' with the hand-type output forced to say
    both hands are present, 'near' also with the left root predicted 200 mm nearer, 'nan' with a NaN weight."""
    from model import build_model, save_checkpoint

    root = tmp_path_factory.mktemp("demo_ckpt")
    torch.manual_seed(0)
    model = build_model("demo")
    paths = {"plain": str(save_checkpoint(root / "demo.pt", model))}
    with torch.no_grad():
        model.pose_net.hand_fc[2].bias.fill_(6.0)  # sigmoid(6 + small) > 0.99: both hands present
    paths["both"] = str(save_checkpoint(root / "both.pt", model))
    with torch.no_grad():
        model.pose_net.root_fc[2].bias[0] = 1e4  # all of the soft-argmax on bin 0: left root 200 mm nearer
    paths["near"] = str(save_checkpoint(root / "near.pt", model))
    with torch.no_grad():
        model.pose_net.hand_fc[2].weight[0, 0] = float("nan")
    paths["nan"] = str(save_checkpoint(root / "nan.pt", model))
    return paths


@pytest.fixture(scope="session")
def grey_jpg(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "grey.jpg"
    path.write_bytes(simplejpeg.encode_jpeg(np.full((60, 80, 3), 128, np.uint8)))
    return str(path)


def run_cli(capsys, argv):
    """main(argv) -> (exit code, stdout, stderr); 0 when it returns."""
    try:
        demo_main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_crop_matches_plain_indexing():
    # A bbox of the patch's size at integer offset: the unscaled crop is a plain sub-array
    # (OpenCV pixel centres at integers).
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    patch, inv = crop(img, [7.0, 5.0, 16.0, 16.0], 16)
    np.testing.assert_allclose(patch[0].permute(1, 2, 0).numpy() * 255, img[5:21, 7:23], atol=1e-3)
    np.testing.assert_allclose(inv, [[1, 0, 7], [0, 1, 5]], atol=1e-12)


def test_demo_with_bbox_writes_every_output(tmp_path, capsys, demo_ckpts, grey_jpg):
    out = tmp_path / "out"
    res = demo_main(["--checkpoint", demo_ckpts["plain"], "--image", grey_jpg, "--out", str(out),
                     "--bbox", "10", "5", "30", "40"])
    stdout, err = capsys.readouterr()
    assert sorted(os.listdir(out)) == sorted(demo_mod.OUTPUTS)  # and no temporary folder left behind
    for name in demo_mod.OUTPUTS:
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
        assert (out / name).stat().st_size > 500, name
    doc = json.loads((out / "result.json").read_text())
    assert doc["bbox_source"] == "--bbox" and doc["detection"] is None and doc["bbox"] == [10, 5, 30, 40]
    # docs/conventions.md §3.1 once: the shorter side grown to square (40 x 40 about the centre), then x1.25.
    np.testing.assert_allclose(doc["bbox_processed"], [0, 0, 50, 50], atol=1e-4)  # centre (25, 25)
    assert len(doc["joints"]) == 42 and doc["joints"][20]["name"] == "r_wrist"
    assert doc["hand_presence"]["right"] == bool(res["hand_prob"][0] > 0.5)
    assert [j["present"] for j in doc["joints"]][:21] == [doc["hand_presence"]["right"]] * 21
    assert doc["rel_root_depth_mm"] == pytest.approx(res["rel_root_depth_mm"])
    np.testing.assert_allclose([j["xyz_rel_right_root_mm"] for j in doc["joints"]], res["joint_cam_rel"])
    np.testing.assert_allclose(doc["joints"][20]["xyz_rel_right_root_mm"], 0, atol=1e-9)
    # The default root depth: a 300 mm square spans the processed bbox at focal 1500.
    assert doc["assumed"]["right_root_depth_mm"] == pytest.approx(1500 * 300 / 50)
    from PIL import Image

    with Image.open(out / "result_2d.png") as im:
        assert im.size == (80, 60)  # the overlay has the image's size
    assert "wrote" in stdout and err == ""


def _bad_cases(tmp):
    """(id, argv changes, file to create, the text the one-line error must hold)."""
    jpg = simplejpeg.encode_jpeg(np.full((60, 80, 3), 100, np.uint8))
    return [
        ("bbox outside", {"--bbox": ["5000", "5000", "100", "100"]}, None,
         "--bbox [5000.0, 5000.0, 100.0, 100.0] does not overlap the 80x60 image"),
        ("bbox left of image", {"--bbox": ["-200", "0", "150", "50"]}, None, "does not overlap"),
        ("bbox nan", {"--bbox": ["nan", "0", "10", "10"]}, None, "--bbox must be 4 finite numbers"),
        ("bbox inf", {"--bbox": ["0", "0", "inf", "10"]}, None, "--bbox must be 4 finite numbers"),
        ("bbox zero width", {"--bbox": ["0", "0", "0", "10"]}, None, "W, H > 0"),
        ("bbox negative height", {"--bbox": ["0", "0", "10", "-5"]}, None, "W, H > 0"),
        ("focal zero", {"--focal": ["0", "0"]}, None, "--focal must be 2 finite numbers > 0"),
        ("focal nan", {"--focal": ["nan", "1000"]}, None, "--focal must be"),
        ("focal negative", {"--focal": ["-1000", "1000"]}, None, "--focal must be"),
        ("princpt inf", {"--princpt": ["inf", "10"]}, None, "--princpt must be 2 finite numbers"),
        ("root depth nan", {"--root-depth": ["nan"]}, None, "--root-depth must be a finite number > 0"),
        ("root depth zero", {"--root-depth": ["0"]}, None, "--root-depth must be"),
        ("root depth inf", {"--root-depth": ["inf"]}, None, "--root-depth must be"),
        ("confidence above 1", {"--detect-confidence": ["1.5"], "--bbox": None}, None, "--detect-confidence must be"),
        ("confidence with bbox", {"--detect-confidence": ["0.3"]}, None, "--bbox replaces"),
        ("image missing", {"--image": [str(tmp / "nope.jpg")]}, None, f"{tmp / 'nope.jpg'}: no such image file"),
        ("image empty", {"--image": [str(tmp / "empty.jpg")]}, ("empty.jpg", b""), f"{tmp / 'empty.jpg'}: the image file is empty"),
        ("image truncated", {"--image": [str(tmp / "cut.jpg")]}, ("cut.jpg", jpg[: len(jpg) // 2]),
         f"{tmp / 'cut.jpg'}: cannot read the image"),
        ("image is text", {"--image": [str(tmp / "notes.jpg")]}, ("notes.jpg", b"not a picture\n"),
         f"{tmp / 'notes.jpg'}: cannot read"),
        ("image is a folder", {"--image": [str(tmp)]}, None, f"{tmp}: a folder, not an image file"),
        ("checkpoint missing", {"--checkpoint": [str(tmp / "none.pt")]}, None, f"{tmp / 'none.pt'}: no such checkpoint"),
        ("checkpoint empty", {"--checkpoint": [str(tmp / "empty.pt")]}, ("empty.pt", b""),
         f"{tmp / 'empty.pt'}: the checkpoint file is empty"),
        ("checkpoint truncated", {"--checkpoint": [str(tmp / "cut.pt")]}, ("cut.pt", "TRUNCATED"),
         f"{tmp / 'cut.pt'}: cannot load the checkpoint"),
        ("checkpoint garbage", {"--checkpoint": [str(tmp / "junk.pt")]}, ("junk.pt", os.urandom(4096)),
         f"{tmp / 'junk.pt'}"),
        ("checkpoint not InterNet", {"--checkpoint": [str(tmp / "other.pt")]}, ("other.pt", "OTHER"),
         f"{tmp / 'other.pt'}"),
        ("checkpoint NaN weights", {"--checkpoint": ["NAN"]}, None, "outputs are not finite"),
        ("left root behind camera", {"--checkpoint": ["NEAR"], "--root-depth": ["150"]}, None,
         "--root-depth 150 mm puts the left root at -50 mm"),
        ("out is a file", {"--out": [str(tmp / "afile")]}, ("afile", b"x"), f"--out {tmp / 'afile'} exists and is not"),
        ("device unknown", {"--device": ["tpu9"]}, None, "--device tpu9"),
    ]


CASE_IDS = [c[0] for c in _bad_cases(Path("/x"))]


@pytest.mark.parametrize("case", CASE_IDS)
def test_bad_input_one_line_no_output(tmp_path, capsys, demo_ckpts, grey_jpg, case):
    _, changes, make, needle = next(c for c in _bad_cases(tmp_path) if c[0] == case)
    if make is not None:
        name, data = make
        if data == "TRUNCATED":
            data = Path(demo_ckpts["plain"]).read_bytes()[:100_000]
        elif data == "OTHER":
            buf = io.BytesIO()
            torch.save({"weight": torch.zeros(3)}, buf)
            data = buf.getvalue()
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text("an earlier run's result\n")  # must survive a failed run untouched
    args = {"--checkpoint": [demo_ckpts["plain"]], "--image": [grey_jpg], "--out": [str(out)],
            "--bbox": ["10", "5", "30", "40"]}
    args.update(changes)
    if args["--checkpoint"] in (["NAN"], ["NEAR"]):
        args["--checkpoint"] = [demo_ckpts[args["--checkpoint"][0].lower()]]
    argv = [x for k, v in args.items() if v is not None for x in [k, *v]]
    code, stdout, err = run_cli(capsys, argv)
    assert code == 1, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eval.demo: error: "), err
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err and "wrote" not in stdout
    if case != "out is a file":
        assert sorted(os.listdir(out)) == ["result.json"]  # nothing written, no temporary left
        assert (out / "result.json").read_text() == "an earlier run's result\n"


def test_debug_raises_with_the_traceback(tmp_path, demo_ckpts, grey_jpg):
    with pytest.raises(DemoError, match="--focal must be"):
        demo_main(["--checkpoint", demo_ckpts["plain"], "--image", grey_jpg, "--out", str(tmp_path / "o"),
                   "--bbox", "1", "1", "5", "5", "--focal", "0", "0", "--debug"])


@pytest.mark.parametrize("fail_at", ["result_3d.png", "result_3d.html", "result.json"])
def test_all_or_nothing_when_a_write_fails(tmp_path, capsys, monkeypatch, demo_ckpts, grey_jpg, fail_at):
    # One output cannot be written (a full disk, say) after others were: no output reaches the folder,
    # a folder the run created is removed, an existing one keeps what it had.
    real = demo_mod.commit_files

    def failing(out, writers):
        def boom(path):
            raise OSError(28, "No space left on device", path)

        return real(out, {**writers, fail_at: boom})

    monkeypatch.setattr(demo_mod, "commit_files", failing)
    base = ["--checkpoint", demo_ckpts["plain"], "--image", grey_jpg, "--bbox", "10", "5", "30", "40"]
    code, _, err = run_cli(capsys, [*base, "--out", str(tmp_path / "new")])
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert f"{tmp_path / 'new' / fail_at}: cannot write (No space left on device)" in err
    assert not (tmp_path / "new").exists()
    old = tmp_path / "old"
    old.mkdir()
    (old / "result_2d.png").write_bytes(b"earlier")
    code, _, err = run_cli(capsys, [*base, "--out", str(old)])
    assert code == 1
    assert os.listdir(old) == ["result_2d.png"] and (old / "result_2d.png").read_bytes() == b"earlier"


def test_commit_files_moves_only_when_every_file_is_made(tmp_path):
    out = tmp_path / "o"
    paths = demo_mod.commit_files(str(out), {"a.txt": lambda p: Path(p).write_text("a"),
                                             "b.txt": lambda p: Path(p).write_text("b")})
    assert [os.path.basename(p) for p in paths] == ["a.txt", "b.txt"]
    assert sorted(os.listdir(out)) == ["a.txt", "b.txt"] and (out / "b.txt").read_text() == "b"
    assert stat.S_IMODE((out / "a.txt").stat().st_mode) == 0o666 & ~_umask()


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m
