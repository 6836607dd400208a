"""The loader's contract: batch layout, DDP partitioning, epochs, checkpoint/resume, errors, GPU path.

Run: .venv/bin/python -m pytest -q tests/test_pipeline_loader.py
"""
import pytest
import torch

from model.config import ModelConfig
from pipeline import build_loader
from pipeline.loader import shard_range
from shards.skeleton import NUM_JOINTS
from tests.test_pipeline_fixtures import write_split

N = 11  # does not divide by 2 ranks nor by the batch size
B = 3
SIZE = 32
GEOMETRY = ModelConfig(backbone="resnet18", input_size=SIZE, depth_bins=8, root_bins=8)  # heatmaps (8, 8, 8)


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("shards"), "test", N, per_shard=4, seed=5)[0]


def make(split_dir, **kw):
    kw.setdefault("train", False)
    kw.setdefault("batch_size", B)
    return build_loader(split_dir, GEOMETRY, device=kw.pop("device", torch.device("cpu")), num_threads=1,
                        initial_fill=16, **kw)


def test_batch_layout(split_dir):
    loader = make(split_dir)
    batch = next(iter(loader))
    assert batch["images"].shape == (B, 3, SIZE, SIZE) and batch["images"].dtype == torch.float32
    assert batch["images"].is_contiguous(memory_format=torch.channels_last)
    assert 0.0 <= batch["images"].min() and batch["images"].max() <= 1.0 and batch["images"].std() > 0.05
    shapes = {"joint_coord": (B, NUM_JOINTS, 3), "joint_valid": (B, NUM_JOINTS), "rel_root_depth": (B,),
              "root_valid": (B,), "hand_type": (B, 2), "hand_type_valid": (B,), "inv_trans": (B, 2, 3),
              "annot_id": (B,)}
    for key, shape in shapes.items():
        assert tuple(batch[key].shape) == shape, key
    assert batch["annot_id"].dtype == torch.int64
    assert loader.num_samples == N and len(loader) == -(-N // B)



def test_cpu_warp_leaves_opencv_thread_count_as_it_was(split_dir):
    """The loader warps with OpenCV's worker threads off (they would fight DALI's decoding threads for
    the cores) and gives the process its setting back, also when loaders in two threads warp at
    the same time: here B starts warping while A warps, A finishes first, B last."""
    import threading

    cv2 = pytest.importorskip("cv2")
    before = cv2.getNumThreads()
    seen = []
    a_inside, b_inside, a_done = threading.Event(), threading.Event(), threading.Event()

    class Cv2Spy:
        def __init__(self, on_first_warp=None):
            self.on_first_warp = on_first_warp

        def warpAffine(self, *a, **k):
            seen.append(cv2.getNumThreads())
            if self.on_first_warp:
                self.on_first_warp()
                self.on_first_warp = None
            return cv2.warpAffine(*a, **k)

        def __getattr__(self, name):
            return getattr(cv2, name)

    def first_warp_a():
        a_inside.set()
        assert b_inside.wait(30)

    def first_warp_b():
        b_inside.set()
        assert a_done.wait(30)

    def run_a(loader):
        list(loader)
        a_done.set()

    try:
        cv2.setNumThreads(3)
        single, a, b = (make(split_dir, train=True, batch_size=2) for _ in range(3))
        single._cv2, a._cv2, b._cv2 = Cv2Spy(), Cv2Spy(first_warp_a), Cv2Spy(first_warp_b)
        list(single)
        assert seen and set(seen) == {1} and cv2.getNumThreads() == 3
        threads = [threading.Thread(target=run_a, args=(a,)), threading.Thread(target=lambda: list(b))]
        threads[0].start()
        assert a_inside.wait(30)
        threads[1].start()
        for t in threads:
            t.join(60)
        assert a_done.is_set() and not any(t.is_alive() for t in threads)
        assert set(seen) == {1} and cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)


def test_cpu_output_buffers_are_reused_only_once_released(split_dir):
    """The CPU loader recycles the memory of batches the caller has dropped, and never that of a
    batch (or a view of one) still held."""
    loader = make(split_dir, train=True)
    it = (batch for _ in range(4) for batch in loader)  # across epochs
    first = next(it)
    view = next(it)["images"][1]  # only a view of the second batch is kept
    kept = first["images"].clone(), view.clone()
    ptrs = set()
    for _ in range(3):  # each batch dropped right away
        ptrs.add(next(it)["images"].data_ptr())
    torch.testing.assert_close(first["images"], kept[0], rtol=0, atol=0)
    torch.testing.assert_close(view, kept[1], rtol=0, atol=0)
    assert first["images"].data_ptr() not in ptrs
    assert len(ptrs) < 3  # a dropped batch's buffer came back

def test_evaluation_every_sample_once_across_ranks(split_dir):
    """2 simulated ranks, 11 samples, batch 3: rank parts of 5 and 6, DALI pads both to 6 and the
    repeats are dropped. Two epochs, to show the second starts cleanly after the padding."""
    seen = []
    for rank in (0, 1):
        loader = make(split_dir, rank=rank, world_size=2)
        start, end = shard_range(N, rank, 2)
        assert len(loader) == -(-(end - start) // B)
        for epoch in range(2):
            ids = [b["annot_id"] for b in loader]
            assert len(ids) == len(loader) and loader.epoch == epoch + 1
            ids = torch.cat(ids).tolist()
            assert ids == list(range(1000 + start, 1000 + end))  # stored order, no repeats
            if epoch == 0:
                seen += ids
    assert sorted(seen) == list(range(1000, 1000 + N))


def test_training_equal_batches_disjoint_ranks(split_dir):
    loaders = [make(split_dir, train=True, rank=r, world_size=2, seed=3) for r in (0, 1)]
    assert len(loaders[0]) == len(loaders[1]) == N // 2 // B
    firsts = []
    for loader in loaders:
        batches = list(loader)
        assert len(batches) == len(loader) and all(b["images"].shape[0] == B for b in batches)
        assert "inv_trans" not in batches[0]
        firsts.append(set(torch.cat([b["annot_id"] for b in batches]).tolist()))
        again = list(loader)  # the next epoch: same count, new draws
        assert len(again) == len(loader)
        assert not torch.equal(again[0]["aug"], batches[0]["aug"])
    assert not firsts[0] & firsts[1]  # disjoint parts within the first epoch


def test_seed_reproducible_and_rank_dependent(split_dir):
    a = next(iter(make(split_dir, train=True, seed=9)))
    b = next(iter(make(split_dir, train=True, seed=9)))
    c = next(iter(make(split_dir, train=True, seed=10)))
    assert torch.equal(a["aug"], b["aug"]) and torch.equal(a["images"], b["images"])
    assert not torch.equal(a["aug"], c["aug"])


def test_resume_mid_epoch_gives_the_same_batches(split_dir):
    """Save after 3 batches (mid-epoch), restore into a fresh loader: it continues with exactly the
    batches (samples, augmentation, pixels) an uninterrupted loader gives, across an epoch boundary."""
    ref = make(split_dir, train=True, seed=4)
    steps = len(ref)  # 3 per epoch
    stream = [b for _ in range(3) for b in ref]  # 3 epochs uninterrupted
    run = make(split_dir, train=True, seed=4)
    it = iter(run)
    for _ in range(2):
        next(it)
    state = run.state_dict()
    assert state["step"] == 2 and state["epoch"] == 0
    resumed = make(split_dir, train=True, seed=4)
    resumed.load_state_dict(state)
    got = list(resumed) + list(resumed)  # rest of epoch 0, then epoch 1
    assert len(got) == steps - 2 + steps and resumed.epoch == 2
    for x, y in zip(got, stream[2:]):
        assert torch.equal(x["annot_id"], y["annot_id"]) and torch.equal(x["aug"], y["aug"])
        assert torch.equal(x["images"], y["images"]) and torch.equal(x["joint_coord"], y["joint_coord"])
    with pytest.raises(ValueError, match="rank"):
        make(split_dir, train=True, rank=1, world_size=2).load_state_dict(state)


def test_bad_input_errors(split_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no manifest.json"):  # the folder is read through its manifest
        make(tmp_path)
    with pytest.raises(FileNotFoundError, match="shard folder memory://nope/test does not exist"):  # URLs: tests/test_s3.py
        make("memory://nope/test")
    with pytest.raises(ValueError, match="too few"):
        make(split_dir, train=True, batch_size=N + 1)
    with pytest.raises(ValueError, match="rank"):
        make(split_dir, rank=2, world_size=2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu(split_dir):
    """nvJPEG + GPU warp against the CPU graph: same labels, patches within a grey level."""
    cpu = torch.cat([b["images"] for b in make(split_dir)]), [b for b in make(split_dir)]
    gpu_batches = list(make(split_dir, device=torch.device("cuda")))
    gpu_images = torch.cat([b["images"] for b in gpu_batches]).cpu()
    assert gpu_batches[0]["images"].is_cuda and gpu_batches[0]["joint_coord"].is_cuda
    assert (gpu_images - cpu[0]).abs().mean() * 255 < 1.0
    for g, c in zip(gpu_batches, cpu[1]):
        for key in ("joint_coord", "joint_valid", "rel_root_depth", "root_valid", "hand_type", "annot_id"):
            torch.testing.assert_close(g[key].cpu(), c[key], atol=1e-4, rtol=0)



@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_decodes_subsampled_exif_tagged_jpegs_as_the_original(tmp_path):
    """4:2:0 JPEGs (as cameras write them) tagged with an EXIF rotation: the GPU decoder keeps the
    stored pixels (the original ignores EXIF) and upsamples chroma as libjpeg-turbo does, so the
    GPU path matches the independent reference as the CPU path does."""
    from tests.test_pipeline_exact import CASES, compare, run_loader

    split, records, images = write_split(tmp_path, "val", 6, per_shard=3, seed=8, exif_orientation=6,
                                         subsampling="420")
    samples = {r["annot_id"]: (r, img) for r, img in zip(records, images)}
    compare(run_loader(split, force_aug=CASES["flip_rot_shift"], device=torch.device("cuda")), samples)
    compare(run_loader(split, force_aug=CASES["flip_rot_shift"]), samples)  # the CPU path on the same data
