"""The GPU decoder against the CPU reference (issue 14.6, part of `pytest -m gpu`): all images on
nvJPEG's CUDA decoder (hw_decoder_load 0.0) and all on the hardware JPEG decoder (1.0, where the GPU
has one; elsewhere DALI decodes them with CUDA), for 4:4:4 and 4:2:0 JPEGs, each sample compared
with the independent reference of tests/test_pipeline_exact.py (within a grey level on average).

Run: .venv/bin/python -m pytest -q -m gpu tests/test_gpu_decoder.py
"""
import pytest
import torch

from tests.test_pipeline_fixtures import write_split


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("subsampling", ["444", "420"])
@pytest.mark.parametrize("hw_decoder_load", [0.0, 1.0], ids=["cuda-decoder", "hardware-decoder"])
def test_gpu_decoders_match_the_reference(tmp_path, hw_decoder_load, subsampling):
    from tests.test_pipeline_exact import CASES, compare, run_loader

    split, records, images = write_split(tmp_path, "val", 8, per_shard=4, seed=11, subsampling=subsampling)
    samples = {r["annot_id"]: (r, img) for r, img in zip(records, images)}
    out = run_loader(split, force_aug=CASES["flip_rot_shift"], device=torch.device("cuda"),
                     hw_decoder_load=hw_decoder_load)
    assert len(out["annot_id"]) == 8
    compare(out, samples)
