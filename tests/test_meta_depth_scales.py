"""The AR depth spellings (each holds K) and the scales: raw-MSE mode kept null, a null AV injection
scale refused with the override named, and the override itself. Fixtures follow the reference's
documented schema_version-2 model sidecar."""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import pytest
import yaml

from hubkit import constants as C
from hubkit.errors import MetaError
from hubkit.meta import NLAMeta

D = 896
ACTOR = {
    "kind": "nla_model",
    "schema_version": 2,
    "role": "actor",
    "d_model": D,
    "base_checkpoint": "Qwen/Qwen2.5-0.5B-Instruct",
    "extraction": {"injection_scale": 150.0, "mse_scale": math.sqrt(D)},
    "tokens": {
        "injection_char": "㊗",
        "injection_token_id": 40,
        "injection_left_neighbor_id": 39,
        "injection_right_neighbor_id": 41,
        "critic_suffix_ids": [5, 6],
    },
    "prompt_templates": {
        "actor": "V: {injection_char}. Explain.",
        "critic": "S <text>{explanation}</text> x",
    },
    "critic": {"extraction_layer_index": 16},
}


def _write(folder: Path, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / C.META_FILE).write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return folder


def _depthless(role: str = "critic") -> dict:
    data = copy.deepcopy(ACTOR)
    del data["critic"]
    data["role"] = role
    return data


# -- AR depth: four spellings, all K ---------------------------------------------------------------
@pytest.mark.parametrize(
    "spelling",
    [
        {"critic": {"extraction_layer_index": 16}},
        {"extraction_layer_index": 16},
        {"critic": {"num_hidden_layers": 16}},
        {"ar": {"num_hidden_layers": 16}},
    ],
)
def test_each_depth_spelling_holds_k_and_the_ar_keeps_k_plus_1(tmp_path: Path, spelling: dict) -> None:
    folder = _write(tmp_path / "ar", {**_depthless(), **spelling})
    meta = NLAMeta.load(folder)
    assert (meta.role, meta.layer, meta.ar.num_layers) == ("ar", 16, 17)


@pytest.mark.parametrize(
    ("spelling", "a", "b"),
    [
        (
            {"critic": {"num_hidden_layers": 17, "extraction_layer_index": 16}},
            "critic.extraction_layer_index",
            "critic.num_hidden_layers",
        ),
        (
            {"ar": {"num_hidden_layers": 17}, "extraction_layer_index": 16},
            "extraction_layer_index",
            "ar.num_hidden_layers",
        ),
        (
            {"critic": {"num_hidden_layers": 15}, "ar": {"num_hidden_layers": 16}},
            "critic.num_hidden_layers",
            "ar.num_hidden_layers",
        ),
    ],
)
def test_contradictory_depth_is_one_line_naming_the_file_and_both_fields(
    tmp_path: Path, spelling: dict, a: str, b: str
) -> None:
    folder = _write(tmp_path / "ar", {**_depthless(), **spelling})
    with pytest.raises(MetaError) as err:
        NLAMeta.load(folder)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(folder / C.META_FILE))
    assert f"`{a}`" in msg and f"`{b}`" in msg and "contradictory" in msg


# -- mse_scale null: raw-MSE mode survives load → save → load -------------------------------------------
def test_null_mse_scale_round_trips_as_null(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hubkit.meta")
    data = copy.deepcopy(ACTOR)
    data["extraction"]["mse_scale"] = None
    first = NLAMeta.load(_write(tmp_path / "in", data))
    assert first.mse_scale is None and first.mse_scale_value() == 1.0
    assert "mse_scale null → raw-MSE mode" in caplog.records[0].getMessage()
    path = first.save(tmp_path / "out")
    saved = yaml.safe_load(path.read_text())
    assert saved["hubkit"]["mse_scale"] is None and saved["extraction"]["mse_scale"] is None
    again = NLAMeta.load(path)
    assert again == first and again.mse_scale is None
    assert NLAMeta.load(again.save(tmp_path / "again")).mse_scale is None


def test_absent_mse_scale_is_the_documented_default(tmp_path: Path) -> None:
    data = copy.deepcopy(ACTOR)
    del data["extraction"]["mse_scale"]
    assert NLAMeta.load(_write(tmp_path / "in", data)).mse_scale == "sqrt_d_model"


# -- a null AV injection scale is refused; the override fills it -------------------------------------------
@pytest.mark.parametrize("how", ["null", "absent"])
def test_null_av_injection_scale_is_refused_naming_file_field_and_override(tmp_path: Path, how: str) -> None:
    data = copy.deepcopy(ACTOR)
    if how == "null":
        data["extraction"]["injection_scale"] = None
    else:
        del data["extraction"]["injection_scale"]
    folder = _write(tmp_path / "av", data)
    with pytest.raises(MetaError) as err:
        NLAMeta.load(folder)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(folder / C.META_FILE))
    for needle in ("`extraction.injection_scale`", "injection_scale=", "--injection-scale"):
        assert needle in msg


def test_null_scale_in_hubkits_own_record_names_its_field(tmp_path: Path) -> None:
    meta = NLAMeta.load(_write(tmp_path / "av", ACTOR))
    data = yaml.safe_load(meta.save(tmp_path / "saved").read_text())
    del data["hubkit"]["injection"]["scale"]
    data["extraction"]["injection_scale"] = None
    (tmp_path / "saved" / C.META_FILE).write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(MetaError, match=r"`injection.scale`.*injection_scale=.*--injection-scale"):
        NLAMeta.load(tmp_path / "saved")


@pytest.mark.parametrize(
    ("override", "stored", "resolved"),
    [
        (150, 150.0, 150.0),
        ("80000", 80000.0, 80000.0),
        ("sqrt_d_model", "sqrt_d_model", math.sqrt(D)),
        ("raw", "raw", None),
    ],
)
def test_the_override_fills_a_null_scale(tmp_path: Path, override, stored, resolved) -> None:
    data = copy.deepcopy(ACTOR)
    data["extraction"]["injection_scale"] = None
    meta = NLAMeta.load(_write(tmp_path / "av", data), injection_scale=override)
    assert meta.injection.scale == stored
    assert meta.injection_scale_value() == (pytest.approx(resolved) if resolved else None)
    assert NLAMeta.from_dict(copy.deepcopy(data), injection_scale=override).injection.scale == stored


def test_the_override_replaces_a_recorded_scale_and_says_so(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hubkit.meta")
    meta = NLAMeta.load(_write(tmp_path / "av", ACTOR), injection_scale=42.0)
    assert meta.injection.scale == 42.0
    assert "injection.scale → 42.0 (override; the file says 150.0)" in caplog.records[-1].getMessage()


def test_a_bad_override_names_itself(tmp_path: Path) -> None:
    with pytest.raises(MetaError, match="injection_scale"):
        NLAMeta.load(_write(tmp_path / "av", ACTOR), injection_scale="big")


def test_a_critic_with_a_null_injection_scale_loads(tmp_path: Path) -> None:
    """Critic sidecars carry `injection_scale: null` (critics do not inject)."""
    data = copy.deepcopy(ACTOR)
    data["role"] = "critic"
    data["extraction"]["injection_scale"] = None
    meta = NLAMeta.load(_write(tmp_path / "ar", data))
    assert meta.role == "ar" and meta.injection.scale is None and meta.injection_scale_value() is None
