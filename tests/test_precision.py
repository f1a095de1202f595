"""The dtype and thread policy: chosen from the hardware, refusals name the valid choices."""

from __future__ import annotations

import pytest
import torch

from hubkit import precision as P


def test_auto_on_cpu_follows_native_bf16_support():
    expected = torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32
    assert P.resolve_dtype("auto", "cpu") == expected
    assert P.resolve_dtype(None, "cpu") == expected


def test_explicit_names_and_aliases_are_kept():
    assert P.resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert P.resolve_dtype("float32", "cpu") == torch.float32
    assert P.resolve_dtype(torch.float16) == torch.float16
    assert P.resolve_dtype_name("fp16") == "float16"


def test_unknown_dtype_names_the_choices():
    with pytest.raises(P.PrecisionError, match="float8.*auto, float32, bfloat16, float16"):
        P.resolve_dtype("float8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU-only build")
def test_cuda_on_a_cpu_build_is_refused_with_what_to_do():
    with pytest.raises(P.PrecisionError, match="--device cpu"):
        P.check_device("cuda")
    assert P.check_device("cpu") == "cpu"


def test_threads_never_exceed_cores_across_workers():
    cores = P.physical_cores()
    assert 1 <= cores <= (torch.get_num_threads() * 2 + 64)
    for workers in (1, 2, 3, 8):
        assert P.threads_per_worker(workers) * workers <= max(cores, workers)
