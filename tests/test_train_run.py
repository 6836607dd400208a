"""`python train/main.py` end to end on the CPU: one epoch of the tiny model with validation (the
eval metrics), the run folder's files, `--resume` without a checkpoint, a corrupt shard, misuse."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from shards.datacheck import scan_shards
from shards.index import open_split
from tests.test_train_fixtures import FAST, REPO, python, subset, train_shards
from train.main import main


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return train_shards(tmp_path_factory)


def test_one_epoch_with_validation_writes_the_run_folder(shards, tmp_path, capsys):
    root = subset(shards, tmp_path / "shards", 1)  # 4 samples, batch 2: 2 steps
    out = tmp_path / "run"
    assert main([f"--shards={root}", f"--out={out}", *FAST, "--epochs=1", "--val_every=1", "--resume"]) == 0
    text = capsys.readouterr().out
    assert "--resume: no checkpoint in" in text and "starting from scratch" in text
    assert "val epoch 1: mpjpe_all" in text and "finished at step 2 (epoch 1)" in text

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss/total" in r]
    assert [r["step"] for r in train_rows] == [1, 2]
    for r in train_rows:
        assert r["images_per_s"] > 0 and 0 <= r["data_wait"] <= 1 and r["lr"] == 1e-4
        assert {"loss/joint_heatmap", "loss/rel_root_depth", "loss/hand_type"} <= r.keys()
    val = [r for r in rows if "val/mpjpe_all" in r]
    assert len(val) == 1 and val[0]["epoch"] == 1 and val[0]["step"] == 2
    assert 0 < val[0]["val/mpjpe_all"] < 1e4 and 0 <= val[0]["val/handedness_accuracy"] <= 1

    cfg = json.loads((out / "config.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert cfg["git_revision"] == (head or "unknown") and cfg["model"]["input_size"] == 64 and cfg["world_size"] == 1
    png = (out / "loss_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert any((out / "tb").glob("events.out.tfevents.*"))
    assert (out / "final.pt").is_file()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_00000002.pt"]  # the epoch end
    # The same --out again without --resume would mix two runs' checkpoints: refused.
    assert main([f"--shards={root}", f"--out={out}", *FAST]) == 2
    assert "already holds checkpoints (step_00000002.pt); pass --resume" in capsys.readouterr().err


def _garble_one_jpeg(tar, idx):
    """Zero the first half of the second sample's JPEG after its SOI marker (DALI's decoder fails
    without naming the file: `nvImageCodec failure`); returns the member name."""
    fields = idx.read_text().splitlines()[2].split()
    off, size, name = int(fields[1]), int(fields[2]), fields[3]
    data = bytearray(tar.read_bytes())
    data[off + 2: off + size // 2] = bytes(size // 2 - 2)
    tar.write_bytes(bytes(data))
    return name


def test_corrupt_shard_mid_epoch_is_named(shards, tmp_path):
    root = subset(shards, tmp_path / "shards", 2, copy=True)  # 8 samples: 4 steps
    bad = sorted((root / "train").glob("*.tar"))[1]
    member = _garble_one_jpeg(bad, bad.with_suffix(".idx"))
    with pytest.raises(RuntimeError) as err:
        # DALI's own failure and the loader's diagnosis (the hash check first would name it before reading)
        main([f"--shards={root}", f"--out={tmp_path / 'run'}", *FAST, "--epochs=1", "--val_every=0", "--debug",
              "--verify_shards=false"])
    msg = str(err.value)
    assert f"corrupt shard {bad}: member {member}" in msg and "does not decode" in msg
    assert "reading " + str(root / "train") in msg and "at batch 4 of 4 (epoch 1" in msg and "DALI said: nvidia.dali.fn." in msg


def test_eval_checkpoint_names_a_corrupt_shard(shards, tmp_path, capsys):
    """`python -m eval --checkpoint` shares the loader's diagnosis: one line naming shard and member."""
    from eval.__main__ import cli as eval_cli
    from model import build_model, save_checkpoint

    root = subset(shards, tmp_path / "shards", 2, copy=True)
    bad = sorted((root / "train").glob("*.tar"))[1]
    fields = bad.with_suffix(".idx").read_text().splitlines()[3].split()
    off, member = int(fields[1]), fields[3]  # the shard cut inside the third sample's image
    os.truncate(bad, off + 100)  # (a garbled JPEG can crash DALI's CPU decoder in evaluation: see README)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", build_model("tiny"))
    assert eval_cli(["--checkpoint", str(ckpt), "--shards", str(root), "--split", "train", "--out",
                     str(tmp_path / "eval"), "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"corrupt shard {bad}: member {member}" in err[0] and "outside the file" in err[0]


def test_shard_scan_finds_truncation_and_garbled_headers(shards, tmp_path):
    root = subset(shards, tmp_path / "shards", 2, copy=True)
    split = open_split(str(root / "train"))
    tars, idxs = [Path(t) for t in split.tars], [Path(i) for i in split.idxs]
    assert scan_shards(split, full_decode=True, progress=False) is None  # intact shards pass
    fields = idxs[1].read_text().splitlines()[3].split()  # third sample: jpg offset size name ...
    data = bytearray(tars[1].read_bytes())
    data[int(fields[5]) - 512: int(fields[5]) - 500] = b"X" * 12  # the json member's tar header name
    tars[1].write_bytes(bytes(data))
    found = scan_shards(split, full_decode=False, progress=False)
    assert found.startswith(f"{tars[1]}: member {fields[7]} at byte {fields[5]}: tar header checksum")
    os.truncate(tars[0], int(idxs[0].read_text().splitlines()[2].split()[1]) + 100)
    found = scan_shards(split, full_decode=False, progress=False)
    assert found.startswith(f"{tars[0]}: member ") and "outside the file" in found and "truncated?" in found


@pytest.mark.parametrize("argv, expected", [
    (["--help"], "Options (paper defaults)"),
    (["--shards=/x", "--out=/y", "--nope=1"], "error: unknown option --nope"),
    (["--shards=/x", "--out=/y", "--epochs=zero"], "error: --epochs: cannot read"),
    (["--shards=/x", "--out=/y", "--model=huge"], "error: unknown model preset 'huge'"),
    (["--out=/y"], "error: --shards and --out are required"),
])
def test_command_line_misuse_is_a_message(argv, expected, capsys):
    assert main(argv) == (0 if argv == ["--help"] else 2)
    out = capsys.readouterr()
    assert expected in out.out + out.err


def test_the_script_reports_misuse_without_a_traceback():
    res = subprocess.run([python(), str(REPO / "train" / "main.py"), "--shards=/x", "--out=/y", "--lr"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "error: --lr needs a value" in res.stderr and "Traceback" not in res.stderr


def _warn_only_jpeg(tar, idx, line=2):
    """Overwrite 40 bytes in the middle of a sample's entropy-coded data (0xFF bytes kept): libjpeg still
    decodes it, with a warning on stderr that names no file (a strict decode fails); returns the member."""
    import simplejpeg

    fields = idx.read_text().splitlines()[line].split()
    off, size, name = int(fields[1]), int(fields[2]), fields[3]
    data = bytearray(tar.read_bytes())
    for t in range(off + size // 2, off + size // 2 + 40):
        data[t] = data[t] if data[t] == 0xFF else 0x55
    jpg = bytes(data[off:off + size])
    simplejpeg.decode_jpeg(jpg, strict=False)  # decodes: no error for a reader to report
    with pytest.raises(ValueError):
        simplejpeg.decode_jpeg(jpg, strict=True)
    tar.write_bytes(bytes(data))
    return name


def test_verify_shards_names_a_jpeg_that_decodes_with_warnings(shards, tmp_path, capsys):
    """Damage after conversion that makes no DALI error: the manifest's sha256 catches the shard and a
    strict decode names the sample, in shards.datacheck, in `python -m eval --checkpoint` (on by
    default, before DALI reads anything) and in training (also by default)."""
    from eval.__main__ import cli as eval_cli
    from model import build_model, save_checkpoint
    from shards.datacheck import DataError, verify_shards

    root = subset(shards, tmp_path / "shards", 2, copy=True)
    split = open_split(str(root / "train"))
    verify_shards(split, progress=False)  # intact: nothing to say
    bad = sorted((root / "train").glob("*.tar"))[1]
    member = _warn_only_jpeg(bad, bad.with_suffix(".idx"))
    with pytest.raises(DataError) as err:
        verify_shards(split, progress=False)
    msg = str(err.value)
    assert msg.startswith(f"{bad}: sha256 differs from the one {root / 'train'}/manifest.json recorded")
    assert f"corrupt shard {bad}: member {member}" in msg and "does not decode" in msg
    verify_shards(split, [0], progress=False)  # the other shard alone is intact

    ckpt = save_checkpoint(tmp_path / "tiny.pt", build_model("tiny"))
    args = ["--checkpoint", str(ckpt), "--shards", str(root), "--split", "train", "--device", "cpu", "--quiet"]
    assert eval_cli([*args, "--out", str(tmp_path / "eval")]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and f"corrupt shard {bad}: member {member}" in err_lines[0]
    assert not (tmp_path / "eval" / "metrics.json").exists()

    with pytest.raises(DataError, match=f"corrupt shard {bad}: member {member}"):
        main([f"--shards={root}", f"--out={tmp_path / 'run'}", *FAST, "--epochs=1", "--val_every=0",
              "--debug"])  # verify_shards is on by default
