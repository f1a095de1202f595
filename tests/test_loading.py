"""Loading: the dtype chosen from the hardware, tokenizers that never fall back silently, and
adapter folders that are half-written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hubkit import ActivationReconstructor, ActivationVerbalizer, NLAPair, loading, precision
from hubkit import constants as C
from hubkit.errors import CheckpointError
from hubkit.testing import write_adapter_pair


@pytest.fixture(scope="module")
def pair_dirs(tmp_path_factory, tiny_base_dir) -> tuple[Path, Path]:
    return write_adapter_pair(tmp_path_factory.mktemp("pair"), tiny_base_dir)


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def test_choose_dtype_auto_and_forced() -> None:
    assert loading.choose_dtype(None) == precision.resolve_dtype("auto")
    assert loading.choose_dtype("auto", "cpu") == precision.resolve_dtype("auto", "cpu")
    assert loading.choose_dtype("float32") == torch.float32
    assert loading.choose_dtype("bf16") == torch.bfloat16


def test_from_pretrained_defaults_to_the_hardware_dtype(pair_dirs, caplog) -> None:
    av_dir, ar_dir = pair_dirs
    want = precision.resolve_dtype("auto", "cpu")
    with caplog.at_level("INFO", logger="hubkit.loading"):
        av = ActivationVerbalizer.from_pretrained(av_dir)
    assert next(av.model.parameters()).dtype == want
    assert f"in {precision.resolve_dtype_name(want)} (auto)" in caplog.text
    ar = ActivationReconstructor.from_pretrained(ar_dir, dtype="float32")
    assert next(ar.model.parameters()).dtype == torch.float32
    pair = NLAPair.from_pretrained(av=av_dir, ar=ar_dir)
    assert next(pair.av.model.parameters()).dtype == want


@pytest.mark.parametrize("damage", [b"{ not json", b"", b'{"model": {"type": "BPE", "vocab": 3}}'])
def test_corrupt_checkpoint_tokenizer_is_not_replaced_by_the_base(pair_dirs, tmp_path, damage) -> None:
    av_dir = _copy(pair_dirs[0], tmp_path)
    assert (av_dir / "tokenizer.json").exists()
    (av_dir / "tokenizer.json").write_bytes(damage)
    with pytest.raises(CheckpointError) as err:
        ActivationVerbalizer.from_pretrained(av_dir, dtype="float32")
    assert "tokenizer" in str(err.value) and str(av_dir) in str(err.value) and "\n" not in str(err.value)


def test_adapter_without_config(pair_dirs, tmp_path) -> None:
    """The loader's own check (a folder without recorded hashes reaches it; verify=False stands for that)."""
    av_dir = _copy(pair_dirs[0], tmp_path)
    (av_dir / C.ADAPTER_CONFIG_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"without {C.ADAPTER_CONFIG_FILE}"):
        ActivationVerbalizer.from_pretrained(av_dir, dtype="float32", verify=False)


def test_adapter_without_weights(pair_dirs, tmp_path) -> None:
    """The loader's own check (a folder without recorded hashes reaches it; verify=False stands for that)."""
    ar_dir = _copy(pair_dirs[1], tmp_path)
    (ar_dir / C.ADAPTER_WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="no adapter weights"):
        ActivationReconstructor.from_pretrained(ar_dir, dtype="float32", verify=False)


def test_adapter_config_with_invalid_json(pair_dirs, tmp_path) -> None:
    """The loader's own check (a folder without recorded hashes reaches it; verify=False stands for that)."""
    av_dir = _copy(pair_dirs[0], tmp_path)
    (av_dir / C.ADAPTER_CONFIG_FILE).write_text("{'r': 4,")
    with pytest.raises(CheckpointError) as err:
        ActivationVerbalizer.from_pretrained(av_dir, dtype="float32", verify=False)
    assert C.ADAPTER_CONFIG_FILE in str(err.value) and "not valid JSON" in str(err.value)


def test_truncated_adapter_weights(pair_dirs, tmp_path) -> None:
    av_dir = _copy(pair_dirs[0], tmp_path)
    w = av_dir / C.ADAPTER_WEIGHTS_FILE
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CheckpointError) as err:
        ActivationVerbalizer.from_pretrained(av_dir, dtype="float32")
    assert str(av_dir) in str(err.value) and "\n" not in str(err.value)


def test_adapter_base_reads_the_config(pair_dirs, tiny_base_dir) -> None:
    cfg = json.loads((pair_dirs[0] / C.ADAPTER_CONFIG_FILE).read_text())
    assert loading.adapter_base(pair_dirs[0]) == cfg["base_model_name_or_path"]


def test_ar_adapter_warning_only_for_blocks_it_does_not_keep(tmp_path) -> None:
    """An AR adapter trained on the first K+1 blocks has no tensors for later ones: peft's missing-keys
    warning about those is expected and dropped; a missing key inside the kept blocks is still warned."""
    import warnings

    from peft import LoraConfig, get_peft_model

    from hubkit import arch
    from hubkit.testing import make_tiny_model

    kept = make_tiny_model(n_layers=4, seed=1).model
    arch.truncate(kept, 2)
    get_peft_model(kept, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(str(tmp_path / "ar"))
    for kept_blocks, warned in ((2, False), (3, True), (None, True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = loading.attach_adapter(
                make_tiny_model(n_layers=4, seed=1).model, tmp_path / "ar", "ar", kept_blocks
            )
        missing = [w for w in caught if "Found missing adapter keys" in str(w.message)]
        assert bool(missing) == warned, (kept_blocks, [str(w.message)[:120] for w in caught])
        if warned:
            assert "layers.2." in str(missing[0].message) and "layers.3." in str(missing[0].message)
        lora = [n for n, _ in model.named_parameters() if "lora_A.ar" in n]
        assert len(lora) == 4  # the adapter wraps every block; blocks 2-3 keep their fresh (unused) LoRA


def test_swapped_halves_are_named_as_swapped(pair_dirs) -> None:
    from hubkit.errors import MetaError

    av_dir, ar_dir = pair_dirs
    with pytest.raises(
        MetaError, match=rf"av={ar_dir} is an AR and ar={av_dir} is an AV: the two halves are swapped"
    ):
        NLAPair.from_pretrained(av=ar_dir, ar=av_dir, dtype="float32")
    with pytest.raises(MetaError, match=rf"ar={av_dir}: this is an AV checkpoint, not an AR"):
        NLAPair.from_pretrained(av=av_dir, ar=av_dir, dtype="float32")


def test_every_adapter_tensor_must_land_in_a_module(pair_dirs, tmp_path) -> None:
    """Loaded adapters change the model; one whose keys match nothing is refused, counting the lost tensors."""
    from safetensors.torch import load_file, save_file

    av_dir = _copy(pair_dirs[0], tmp_path)
    (av_dir / C.CHECKPOINT_HASHES_FILE).unlink()
    weights = av_dir / C.ADAPTER_WEIGHTS_FILE
    tensors = load_file(str(weights))
    renamed = {
        k.replace("layers.0.", "layers.0.mlp_x.") if "layers.0." in k else k: v for k, v in tensors.items()
    }
    lost = sum(k != r for k, r in zip(tensors, renamed))
    save_file(renamed, str(weights))
    with pytest.raises(
        CheckpointError, match=rf"{weights}: {lost} of {len(tensors)} adapter tensor\(s\) match no module"
    ):
        ActivationVerbalizer.from_pretrained(av_dir, dtype="float32")
