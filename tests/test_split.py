"""shards.index.open_split: the one reader of a split folder (loader, evaluation, data checks).

Run: .venv/bin/python -m pytest -q tests/test_split.py
"""
import json
import shutil

import pytest

from shards.index import iter_shard_samples, open_split
from tests.test_pipeline_fixtures import write_split

N = 7


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("shards"), "test", N, per_shard=3, seed=2)[0]


@pytest.fixture()
def copy(split_dir, tmp_path):
    d = tmp_path / "test"
    shutil.copytree(split_dir, d)
    return d


def _edit_manifest(d, change):
    man = json.loads((d / "manifest.json").read_text())
    change(man)
    (d / "manifest.json").write_text(json.dumps(man))


def test_open_split_lists_the_manifest_shards(split_dir):
    split = open_split(str(split_dir))
    man = json.loads((split_dir / "manifest.json").read_text())
    assert [t.rsplit("/", 1)[1] for t in split.tars] == [e["tar"] for e in man["shards"]]
    assert split.idxs == [t[:-4] + ".idx" for t in split.tars]
    assert split.counts == [3, 3, 1] and split.num_samples == N and split.manifest == man
    assert open_split(f"file://{split_dir}/").num_samples == N  # fsspec URLs and a trailing slash


@pytest.mark.parametrize("change, error, match", [
    (lambda m: m.update(complete=False), ValueError, "did not finish"),
    (lambda m: m["shards"].pop(), ValueError, "counts.total is 7 but its shard list holds 6"),
    (lambda m: m["shards"][0].update(count=4), ValueError, "counts.total is 7 but its shard list holds 8"),
    (lambda m: m["shards"][0].update(count=4) or m["counts"].update(total=8), ValueError,
     "3 samples, but .*manifest.json says 4"),
    (lambda m: m["shards"][1].update(tar="nope.tar"), FileNotFoundError, "lists .*nope.tar, which is missing"),
    (lambda m: m["shards"][1].pop("idx"), ValueError, "shard entry 1 lacks"),
    (lambda m: m.pop("shards"), ValueError, "no 'shards' list"),
])
def test_a_manifest_that_disagrees_is_an_error_naming_it(copy, change, error, match):
    _edit_manifest(copy, change)
    with pytest.raises(error, match=match):
        open_split(str(copy))


def test_missing_or_garbled_files(copy, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_split(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        open_split(str(tmp_path / "empty"))
    first_idx = sorted(copy.glob("*.idx"))[0]
    first_idx.write_text("garbage\n")
    with pytest.raises(ValueError, match=f"{first_idx.name}: first line 'garbage' is not a wds2idx header"):
        open_split(str(copy))
    (copy / "manifest.json").write_text('{"complete": tr')
    with pytest.raises(ValueError, match="manifest.json: not valid JSON"):
        open_split(str(copy))


@pytest.mark.parametrize("cut, match", [(True, "read 2 samples, the manifest lists 3"),  # an early end
                                        (False, "not a readable tar")])
def test_a_shard_that_stops_early_is_named(copy, cut, match):
    """A tar that ends early (end-of-archive blocks after sample 2) ends Python's tar read quietly:
    the sample count against the manifest catches it; a garbled header raises. Both name the
    shard, in evaluation's reader and in the sample iterator."""
    from eval.gt import load_gt

    tar = sorted(copy.glob("*.tar"))[1]
    data = bytearray(tar.read_bytes())
    lines = tar.with_suffix(".idx").read_text().splitlines()
    third = int(lines[3].split()[1]) - 512  # the 3rd sample's first member header
    if cut:  # end-of-archive blocks right after the 2nd sample's last member
        end = int(lines[2].split()[-3]) + int(lines[2].split()[-2])
        data = data[:-(-end // 512) * 512] + b"\0" * 10240
    else:
        data[third:third + 512] = b"\x01" * 512
    tar.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{tar.name}: {match}"):
        load_gt(str(copy), progress=False)
    with pytest.raises(ValueError, match=f"{tar.name}: "):
        list(iter_shard_samples(str(copy)))
