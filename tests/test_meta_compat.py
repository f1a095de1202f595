"""Pairs straight out of the reference trainer: an actor sidecar with no layer, a critic whose
`base_checkpoint` is the training machine's path. Fixtures are written here from the documented
sidecar format, next to real (tiny) HF checkpoints."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from hubkit import constants as C
from hubkit import identity
from hubkit.errors import IncompatiblePairError
from hubkit.meta import NLAMeta, check_compatible
from hubkit.testing import make_tiny_model

AV_T = "Explain the activation {injection_char} in a few words."
AR_T = "Summary of the following text: <text>{explanation}</text> <summary>"


def _actor_sidecar(d: int, base: str) -> dict:
    """What the reference trainer writes for an actor: no `critic` section, a null critic template."""
    return {
        "kind": "nla_model",
        "schema_version": 2,
        "role": "actor",
        "stage": "sft",
        "base_checkpoint": base,
        "d_model": d,
        "extraction": {"injection_scale": 12.0, "mse_scale": d**0.5},
        "tokens": {
            "injection_char": "¶",
            "injection_token_id": 7,
            "injection_left_neighbor_id": 6,
            "injection_right_neighbor_id": 8,
            "critic_suffix_ids": None,
        },
        "prompt_templates": {"actor": AV_T, "critic": None},
        "trained_on": ["/data/av_sft.parquet"],
        "parent_checkpoints": [base],
        "created_at": "2026-01-01T00:00:00+00:00",
        "created_by": "trainer",
    }


def _critic_sidecar(d: int, base: str, k: int) -> dict:
    data = _actor_sidecar(d, base)
    data.update(role="critic", stage="init", prompt_templates={"actor": AV_T, "critic": AR_T})
    data["extraction"]["injection_scale"] = None
    data["critic"] = {"extraction_layer_index": k}
    return data


def _checkpoint(folder: Path, tiny, sidecar: dict) -> Path:
    tiny.save(folder)
    (folder / C.META_FILE).write_text(yaml.safe_dump(sidecar, allow_unicode=True, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_model("llama", d_model=32, n_layers=3)


MACHINE = "/mnt/nfs/train-7/ckpts/base-llama"


def test_trainer_actor_sidecar_loads_without_a_layer(tmp_path: Path, tiny) -> None:
    av = NLAMeta.load(_checkpoint(tmp_path / "av", tiny, _actor_sidecar(32, "org/base-llama")))
    assert av.role == "av" and av.layer is None and av.ar is not None and av.ar.num_layers is None
    assert av.injection.scale == 12.0 and av.av.template == AV_T


def test_pair_takes_the_layer_from_its_ar_and_compares_by_architecture(tmp_path: Path, tiny, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hubkit.meta")
    av = NLAMeta.load(_checkpoint(tmp_path / "av", tiny, _actor_sidecar(32, "org/base-llama")))
    ar = NLAMeta.load(_checkpoint(tmp_path / "ar", tiny, _critic_sidecar(32, MACHINE, 1)))
    assert identity.is_machine_path(ar.base_model) and not Path(MACHINE).exists()
    caplog.clear()
    check_compatible(av, ar)
    assert (av.layer, av.ar.num_layers) == (1, 2) == (ar.layer, ar.ar.num_layers)
    said = [r.getMessage() for r in caplog.records if "architecture" in r.getMessage()]
    assert len(said) == 1 and MACHINE in said[0] and "llama" in said[0] and "d_model 32" in said[0]
    check_compatible(av, ar)  # said once, not on every check
    assert len([r for r in caplog.records if "architecture" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("other", "needle"),
    [
        (dict(arch="llama", d_model=48, n_layers=3), "d_model"),
        (dict(arch="qwen2", d_model=32, n_layers=3), "model_type"),
    ],
)
def test_architecture_mismatch_is_refused(tmp_path: Path, tiny, other: dict, needle: str) -> None:
    ar_tiny = make_tiny_model(**other)
    d = ar_tiny.d_model
    av = NLAMeta.load(_checkpoint(tmp_path / "av", tiny, _actor_sidecar(32, "org/base-llama")))
    ar = NLAMeta.load(_checkpoint(tmp_path / "ar", ar_tiny, _critic_sidecar(d, MACHINE, 1)))
    av.d_model = d  # isolate the architecture comparison from the width check of the metas
    with pytest.raises(IncompatiblePairError, match=needle):
        check_compatible(av, ar)


def test_ar_deeper_than_the_avs_base_is_refused(tmp_path: Path, tiny) -> None:
    av = NLAMeta.load(_checkpoint(tmp_path / "av", tiny, _actor_sidecar(32, "org/base-llama")))
    ar = NLAMeta.load(
        _checkpoint(tmp_path / "ar", make_tiny_model("llama", 32, 5), _critic_sidecar(32, MACHINE, 3))
    )
    with pytest.raises(IncompatiblePairError, match="depth: the AR keeps 4 blocks, the AV's base has 3"):
        check_compatible(av, ar)


def test_tokenizer_difference_is_refused(tmp_path: Path, tiny) -> None:
    av = NLAMeta.load(_checkpoint(tmp_path / "av", tiny, _actor_sidecar(32, "org/base-llama")))
    ar_dir = _checkpoint(tmp_path / "ar", tiny, _critic_sidecar(32, MACHINE, 1))
    tj = json.loads((ar_dir / "tokenizer.json").read_text())
    tj["model"]["vocab"]["zzz-extra"] = len(tj["model"]["vocab"])
    (ar_dir / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(IncompatiblePairError, match="tokenizer"):
        check_compatible(av, NLAMeta.load(ar_dir))


def test_machine_path_without_a_config_to_compare_says_what_is_missing(tmp_path: Path, tiny) -> None:
    av = NLAMeta.load(_checkpoint(tmp_path / "av", tiny, _actor_sidecar(32, "org/base-llama")))
    ar_dir = _checkpoint(tmp_path / "ar", tiny, _critic_sidecar(32, MACHINE, 1))
    (ar_dir / C.MODEL_CONFIG_FILE).unlink()
    with pytest.raises(IncompatiblePairError, match="AR folder has no config.json") as err:
        check_compatible(av, NLAMeta.load(ar_dir))
    assert MACHINE in str(err.value) and "\n" not in str(err.value)


def test_names_still_decide_when_neither_is_a_path(tmp_path: Path, tiny) -> None:
    av = NLAMeta.load(_checkpoint(tmp_path / "av", tiny, _actor_sidecar(32, "org/base-llama")))
    ar = NLAMeta.load(_checkpoint(tmp_path / "ar", tiny, _critic_sidecar(32, "org/other-model", 1)))
    with pytest.raises(IncompatiblePairError, match="base_model"):
        check_compatible(av, ar)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", True),
        ("huggingfacetb/smollm2-135m-instruct", "smollm2-135m", True),
        ("gemma3-270m", "google/gemma-3-270m", True),
        ("smollm2-135m", "gemma3-270m", False),
        ("org/Model-X", "other/model-x", True),
        ("org/model-x", "org/model-y", False),
    ],
)
def test_same_base_is_one_definition(a: str, b: str, same: bool) -> None:
    assert identity.same_base(a, b) is same and identity.same_base(b, a) is same


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("/mnt/x/ckpt", True),
        ("~/models/x", True),
        ("./x", True),
        ("gs://bucket/x", True),
        ("a/b/c", True),
        ("org/name", False),
        ("smollm2-135m", False),
    ],
)
def test_machine_paths_are_told_from_hub_ids(name: str, path: bool) -> None:
    assert identity.is_machine_path(name) is path
