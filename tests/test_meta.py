"""`NLAMeta`: the three published dialects map exactly onto hubkit's schema, the defaults applied are
logged once, hubkit's own files round-trip, and every bad file gets an error naming the field."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from hubkit import constants as C
from hubkit.errors import MetaError
from hubkit.meta import (
    DEFAULT_AR_TEMPLATE,
    DEFAULT_AV_TEMPLATE,
    Adapter,
    ARSpec,
    AVSpec,
    Injection,
    NLAMeta,
    Training,
)
from hubkit.testing import make_tiny_model, tiny_metas

D_REF = 3584
AV_T = "Vector: {injection_char} — explain it."
AR_T = "Sum <text>{explanation}</text> <summary>"

REFERENCE = {
    "schema_version": 2,
    "kind": "nla_model",
    "role": "actor",
    "d_model": D_REF,
    "extraction": {"injection_scale": 150.0, "mse_scale": "sqrt_d_model"},
    "tokens": {
        "injection_char": "㊗",
        "injection_token_id": 151,
        "injection_left_neighbor_id": 29,
        "injection_right_neighbor_id": 30,
        "critic_suffix_ids": [7, 8, 9],
    },
    "prompt_templates": {"actor": AV_T, "critic": AR_T},
    "critic": {"extraction_layer_index": 20},
    "base_checkpoint": "Qwen/Qwen2.5-7B-Instruct",
    "stage": "rl",
    "trained_on": "fineweb-100k",
    "parent_checkpoints": ["org/sft-av"],
    "training": {"lr": 1.0e-5, "loss_type": "grpo", "global_batch_size": 256},
}

CONSUMER = {
    "kind": "nla_model",
    "role": "actor",
    "base_model": "google/gemma-4-E2B-it",
    "extraction": {"d_model": 1536, "layer": 20, "injection_scale": 20000, "mse_scale": "sqrt_d_model"},
    "tokens": {"injection_token_id": 5, "injection_left_neighbor_id": 4, "injection_right_neighbor_id": 6},
    "av_lora": {"r": 16, "alpha": 32, "target_modules_regex": ".*(q|v)_proj"},
    "training": {
        "lr": 2.0e-4,
        "steps_completed": 1200,
        "loss_at_step_1200": 0.81,
        "micro_batch": 2,
        "grad_accum": 8,
    },
    "training_data": {"path": "data/av.parquet", "n_rows": 5000, "source": "fineweb", "labelers": ["m1"]},
    "notes": "trained on a 4 GB GPU; checkpoints 5-8 retracted",
}

SIDECAR = {
    "kind": "nla_dataset",
    "extraction": {
        "base_model": "Qwen/Qwen3-8B",
        "d_model": 4096,
        "layer_index": 18,
        "corpus": "fineweb",
        "positions_per_doc": 4,
    },
    "git_commit": "abc1234",
}


def _write_yaml(folder: Path, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / C.META_FILE).write_text(yaml.safe_dump(data, allow_unicode=True))
    return folder


def _meta_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hubkit.meta"]


# -- reference dialect (schema_version 2) ----------------------------------------------------------
def test_reference_maps_every_field_exactly(caplog) -> None:
    caplog.set_level(logging.INFO, logger="hubkit.meta")
    m = NLAMeta.from_dict(copy.deepcopy(REFERENCE), where="ref.yaml")
    assert m.schema == C.SCHEMA_VERSION and m.converted_from == "reference-v2"
    assert (m.role, m.base_model, m.d_model, m.layer) == ("av", "Qwen/Qwen2.5-7B-Instruct", D_REF, 20)
    assert m.injection == Injection(
        scheme="embedding_replace",
        scale=150.0,
        marker="㊗",
        marker_token_id=151,
        left_neighbor_id=29,
        right_neighbor_id=30,
        block=1,
        ood_allowed=False,
    )
    assert m.av == AVSpec(template=AV_T, chat_template=True)
    assert m.ar == ARSpec(
        num_layers=21,
        template=AR_T,
        head_format="value_head",
        head_bias=False,
        add_bos="tokenizer",  # BOS only where the tokenizer adds one, as the reference tokenizes
        input_norm="none",
        chat_template=False,
        suffix_ids=[7, 8, 9],
    )
    assert m.mse_scale == "sqrt_d_model" and m.mse_scale_value() == pytest.approx(math.sqrt(D_REF))
    assert m.injection_scale_value() == 150.0
    assert m.adapter == Adapter(kind="full")
    assert m.training == Training(
        stage="rl", lr=1e-5, loss_type="grpo", global_batch_size=256, parent="org/sft-av"
    )
    assert m.legacy == {"trained_on": "fineweb-100k"}
    # one log line, naming the file, the dialect and the defaults it filled in
    recs = _meta_records(caplog)
    assert len(recs) == 1
    msg = recs[0].getMessage()
    assert "ref.yaml" in msg and "reference-v2" in msg
    for default in ("injection.scheme", "av.chat_template", "ar.add_bos"):
        assert default in msg


@pytest.mark.parametrize(
    ("role", "expected"), [("actor", "av"), ("critic", "ar"), ("av", "av"), ("ar", "ar")]
)
def test_reference_role_aliases(role: str, expected: str) -> None:
    assert NLAMeta.from_dict({**copy.deepcopy(REFERENCE), "role": role}).role == expected


def test_reference_template_keys_av_ar_spelling() -> None:
    data = {**copy.deepcopy(REFERENCE), "prompt_templates": {"av": AV_T, "ar": AR_T}}
    m = NLAMeta.from_dict(data)
    assert (m.av.template, m.ar.template) == (AV_T, AR_T)


def _without_depth(data: dict) -> dict:
    data = copy.deepcopy(data)
    del data["critic"]
    return data


@pytest.mark.parametrize(
    ("spelling", "value"),
    [
        ({"critic": {"extraction_layer_index": 20}}, "K"),
        ({"extraction_layer_index": 20}, "K"),
        ({"critic": {"num_hidden_layers": 20}}, "K"),
        ({"ar": {"num_hidden_layers": 20}}, "K"),
    ],
)
def test_reference_four_spellings_of_the_ar_depth(spelling: dict, value: str) -> None:
    """Every spelling holds the extraction layer K (schema v1's `critic.num_hidden_layers` and the docs'
    `ar.num_hidden_layers` too, as the reference's own config loader reads them); the AR keeps K+1."""
    m = NLAMeta.from_dict({**_without_depth(REFERENCE), **spelling})
    assert m.layer == 20
    assert m.ar.num_layers == 21
    assert not m.legacy.get("critic") and not m.legacy.get("ar")  # consumed, not left over


def test_reference_agreeing_spellings_are_accepted() -> None:
    data = {
        **_without_depth(REFERENCE),
        "critic": {"extraction_layer_index": 20, "num_hidden_layers": 20},
        "ar": {"num_hidden_layers": 20},
        "extraction_layer_index": 20,
    }
    m = NLAMeta.from_dict(data)
    assert (m.layer, m.ar.num_layers) == (20, 21)


@pytest.mark.parametrize(
    "spelling",
    [
        {"critic": {"extraction_layer_index": 20, "num_hidden_layers": 21}},
        {"critic": {"extraction_layer_index": 20}, "extraction_layer_index": 19},
        {"ar": {"num_hidden_layers": 21}, "critic": {"num_hidden_layers": 22}},
    ],
)
def test_reference_contradictory_depth_is_an_error_naming_both(spelling: dict) -> None:
    with pytest.raises(MetaError, match="contradictory") as err:
        NLAMeta.from_dict({**_without_depth(REFERENCE), **spelling}, where="ref.yaml")
    msg = str(err.value)
    assert "ref.yaml" in msg and "\n" not in msg
    flat = [f"{k}.{kk}" for k, v in spelling.items() if isinstance(v, dict) for kk in v]
    flat += [k for k, v in spelling.items() if not isinstance(v, dict)]
    for key in flat:
        assert key in msg


def test_reference_critic_without_any_depth_is_an_error() -> None:
    with pytest.raises(MetaError, match="critic.extraction_layer_index"):
        NLAMeta.from_dict({**_without_depth(REFERENCE), "role": "critic"})


@pytest.mark.parametrize(
    ("raw", "stored", "resolved"),
    [
        (150.0, 150.0, 150.0),
        (80000, 80000.0, 80000.0),
        ("sqrt_d_model", "sqrt_d_model", math.sqrt(D_REF)),
        ("raw", "raw", None),
    ],
)
def test_reference_injection_scale_sentinels(raw, stored, resolved, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hubkit.meta")
    data = copy.deepcopy(REFERENCE)
    data["extraction"]["injection_scale"] = raw
    m = NLAMeta.from_dict(data)
    assert m.injection.scale == stored
    assert m.injection_scale_value() == (pytest.approx(resolved) if resolved else None)
    msg = _meta_records(caplog)[0].getMessage()
    assert ("injection_scale null" in msg) == (raw is None)  # a missing scale is never filled silently


@pytest.mark.parametrize(
    ("raw", "stored", "resolved"),
    [
        (64.0, 64.0, 64.0),
        ("sqrt_d_model", "sqrt_d_model", math.sqrt(D_REF)),
        ("raw", "raw", 1.0),
        (None, None, 1.0),  # raw-MSE mode: kept null
    ],
)
def test_reference_mse_scale_sentinels(raw, stored, resolved, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hubkit.meta")
    data = copy.deepcopy(REFERENCE)
    data["extraction"]["mse_scale"] = raw
    m = NLAMeta.from_dict(data)
    assert m.mse_scale == stored
    assert m.mse_scale_value() == pytest.approx(resolved)
    assert ("mse_scale null" in _meta_records(caplog)[0].getMessage()) == (raw is None)


@pytest.mark.parametrize("bad", [True, "big", [1.0], {"v": 1}])
def test_reference_mistyped_scale_names_the_field(bad) -> None:
    data = copy.deepcopy(REFERENCE)
    data["extraction"]["injection_scale"] = bad
    with pytest.raises(MetaError, match=r"field `extraction.injection_scale`"):
        NLAMeta.from_dict(data)


def test_reference_folder_adapter_and_head_are_read(tmp_path: Path) -> None:
    """A folder's adapter_config.json gives the LoRA and (when the meta lacks it) the base; the head
    file gives the AR head format and bias."""
    data = copy.deepcopy(REFERENCE)
    data["role"] = "critic"
    del data["base_checkpoint"]
    folder = _write_yaml(tmp_path / "ar", data)
    (folder / C.ADAPTER_CONFIG_FILE).write_text(
        json.dumps(
            {
                "r": 8,
                "lora_alpha": 16,
                "target_modules": ["v_proj", "q_proj"],
                "base_model_name_or_path": "Qwen/Qwen2.5-7B-Instruct",
            }
        )
    )
    save_file({"weight": torch.eye(4), "bias": torch.zeros(4)}, str(folder / C.VALUE_HEAD_FILE))
    m = NLAMeta.load(folder)
    assert m.role == "ar" and m.base_model == "Qwen/Qwen2.5-7B-Instruct"
    assert m.adapter == Adapter(kind="lora", r=8, alpha=16.0, target_modules=["q_proj", "v_proj"])
    assert (m.ar.head_format, m.ar.head_bias) == ("value_head", True)


def test_reading_never_mutates_the_callers_mapping() -> None:
    data = copy.deepcopy(REFERENCE)
    first = NLAMeta.from_dict(data)
    assert data == REFERENCE
    assert NLAMeta.from_dict(data) == first


# -- consumer-GPU release ------------------------------------------------------------------------------
def test_consumer_maps_every_field_exactly(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hubkit.meta")
    folder = _write_yaml(tmp_path / "av", CONSUMER)
    (folder / C.AR_META_JSON).write_text(json.dumps({"ar_num_layers": 21}))
    m = NLAMeta.load(folder)
    assert m.converted_from == "consumer-gpu"
    assert (m.role, m.base_model, m.d_model, m.layer) == ("av", "google/gemma-4-E2B-it", 1536, 20)
    assert m.injection == Injection(
        scheme="embedding_replace",
        scale=20000.0,
        marker=None,
        marker_token_id=5,
        left_neighbor_id=4,
        right_neighbor_id=6,
    )
    assert m.av == AVSpec(template=DEFAULT_AV_TEMPLATE, chat_template=False)  # raw template, no chat wrap
    assert m.ar.num_layers == 21 and m.ar.input_norm == "mse_scale"
    assert m.adapter == Adapter(kind="lora", r=16, alpha=32.0, target_modules=".*(q|v)_proj")
    assert m.training == Training(lr=2e-4, step=1200)
    assert m.mse_scale == "sqrt_d_model"
    assert m.legacy == {
        "notes": CONSUMER["notes"],
        "training": {"loss_at_step_1200": 0.81, "micro_batch": 2, "grad_accum": 8},
        "training_data": CONSUMER["training_data"],
    }
    recs = _meta_records(caplog)
    assert len(recs) == 1 and "consumer-gpu" in recs[0].getMessage()
    assert "av.chat_template → false" in recs[0].getMessage()


def test_consumer_without_folder_defaults_the_ar_depth(caplog) -> None:
    caplog.set_level(logging.INFO, logger="hubkit.meta")
    m = NLAMeta.from_dict(copy.deepcopy(CONSUMER))
    assert m.ar.num_layers == 21
    assert "ar.num_layers → layer + 1 = 21" in _meta_records(caplog)[0].getMessage()


def _consumer_ar_folder(root: Path, ar_meta: dict, d: int = 16, r: int = 4) -> Path:
    root.mkdir(parents=True)
    (root / C.AR_META_JSON).write_text(json.dumps(ar_meta))
    # LoRA tensors sort before the head's keys: the width must come from the head, not from lora_A
    save_file(
        {
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(r, d),
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(d, r),
            "value_head.weight": torch.eye(d),
            "value_head.bias": torch.zeros(d),
        },
        str(root / C.AR_LORA_HEAD_FILE),
    )
    return root


def test_consumer_ar_folder_with_ar_meta_json(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hubkit.meta")
    folder = _consumer_ar_folder(
        tmp_path / "ar",
        {
            "ar_num_layers": 3,
            "lora_r": 4,
            "lora_alpha": 8,
            "quant": "4bit",
            "target_modules": ["q_proj"],
            "final_norm_stripped": True,
            "base_model": "org/base",
        },
    )
    m = NLAMeta.load(folder)
    assert m.converted_from == "consumer-gpu-ar"
    assert (m.role, m.base_model, m.d_model, m.layer) == ("ar", "org/base", 16, 2)
    assert m.ar == ARSpec(
        num_layers=3,
        template=DEFAULT_AR_TEMPLATE,
        head_format="ar_lora_value_head",
        head_bias=True,
        add_bos=False,
        input_norm="mse_scale",
        final_norm=False,
    )
    assert m.adapter == Adapter(
        kind="lora", r=4, alpha=8.0, target_modules=["q_proj"], quant="nf4", rslora=True
    )
    assert m.legacy["ar_meta_json"]["final_norm_stripped"] is True
    assert m.injection is None and m.av is None
    assert len(_meta_records(caplog)) == 1


def test_consumer_ar_base_from_adapter_config(tmp_path: Path) -> None:
    folder = _consumer_ar_folder(tmp_path / "ar", {"ar_num_layers": 3, "d_model": 16})
    (folder / C.ADAPTER_CONFIG_FILE).write_text(json.dumps({"r": 4, "base_model_name_or_path": "org/b2"}))
    m = NLAMeta.load(folder)
    assert (m.base_model, m.d_model, m.adapter.kind, m.adapter.r) == ("org/b2", 16, "lora", 4)


@pytest.mark.parametrize(
    ("ar_meta", "needle"),
    [
        ({"ar_num_layers": 3, "quant": "int3", "base_model": "b"}, "field `quant`"),
        ({"lora_r": 4, "base_model": "b"}, "field `ar_num_layers`"),
    ],
)
def test_consumer_ar_errors(tmp_path: Path, ar_meta: dict, needle: str) -> None:
    folder = _consumer_ar_folder(tmp_path / "ar", ar_meta)
    with pytest.raises(MetaError, match=needle) as err:
        NLAMeta.load(folder)
    assert C.AR_META_JSON in str(err.value)


# -- residual-add variant: a dataset sidecar copied into the checkpoint ------------------------------
def test_residual_sidecar_with_linear_head_is_an_ar(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hubkit.meta")
    folder = _write_yaml(tmp_path / "ar", SIDECAR)
    torch.save({"weight": torch.eye(4), "bias": torch.zeros(4)}, folder / C.LINEAR_HEAD_PT_FILE)
    m = NLAMeta.load(folder)
    assert m.converted_from == "residual-add-sidecar"
    assert (m.role, m.base_model, m.d_model, m.layer) == ("ar", "Qwen/Qwen3-8B", 4096, 18)
    assert m.injection.scheme == "residual_add" and m.injection.block == 1 and m.injection.scale is None
    assert m.injection_scale_value() is None
    assert m.ar == ARSpec(
        num_layers=19,
        template=DEFAULT_AR_TEMPLATE,
        head_format="linear_head_pt",
        head_bias=True,
        add_bos="tokenizer",
        input_norm="none",
    )
    assert m.legacy == {"dataset_sidecar": {"git_commit": "abc1234", "extraction": SIDECAR["extraction"]}}
    msg = _meta_records(caplog)[0].getMessage()
    assert len(_meta_records(caplog)) == 1
    for default in ("residual_add", "role → ar", "av.chat_template → true", "injection.marker"):
        assert default in msg


def test_residual_sidecar_without_head_is_an_av(tmp_path: Path) -> None:
    m = NLAMeta.load(_write_yaml(tmp_path / "av", SIDECAR))
    assert m.role == "av" and m.injection.scheme == "residual_add"
    assert m.av == AVSpec(template=DEFAULT_AV_TEMPLATE, chat_template=True)


def test_reference_dataset_sidecar_is_read_as_residual_add(tmp_path: Path, caplog) -> None:
    """The reference pipeline's sidecars also carry `schema_version`, `tokens` and `prompt_templates`:
    they are still the residual-add variant's meta, and their tokens and templates are used."""
    caplog.set_level(logging.INFO, logger="hubkit.meta")
    sidecar = {
        **copy.deepcopy(SIDECAR),
        "schema_version": 2,
        "dataset_id": "ds-1",
        "stage": "av_sft",
        "row_count": 1000,
        "tokens": {
            "injection_char": "㊗",
            "injection_token_id": 11,
            "injection_left_neighbor_id": 10,
            "injection_right_neighbor_id": 12,
            "critic_suffix_ids": [3],
        },
        "prompt_templates": {"actor": AV_T, "critic": AR_T},
    }
    m = NLAMeta.load(_write_yaml(tmp_path / "av", sidecar))
    assert m.converted_from == "residual-add-sidecar" and m.role == "av"
    assert m.injection == Injection(
        scheme="residual_add",
        scale=None,
        marker="㊗",
        marker_token_id=11,
        left_neighbor_id=10,
        right_neighbor_id=12,
        block=1,
    )
    assert (m.av.template, m.ar.template, m.ar.suffix_ids) == (AV_T, AR_T, [3])
    assert m.legacy["dataset_sidecar"]["stage"] == "av_sft"
    msg = _meta_records(caplog)[0].getMessage()
    assert "injection.marker" not in msg and "av.template" not in msg  # recorded, so not defaulted


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"d_model": None}, "extraction.d_model"),
        ({"layer_index": None}, "extraction.layer_index"),
        ({"layer_index": "18"}, "field `extraction.layer_index` must be an integer"),
        ({"d_model": "4096"}, "field `d_model` must be an integer"),
        ({"base_model": None}, "extraction.base_model"),
    ],
)
def test_residual_sidecar_errors(patch: dict, needle: str) -> None:
    data = copy.deepcopy(SIDECAR)
    for k, v in patch.items():
        if v is None:
            del data["extraction"][k]
        else:
            data["extraction"][k] = v
    with pytest.raises(MetaError, match=needle):
        NLAMeta.from_dict(data)


# -- hubkit's own schema ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    return make_tiny_model("llama", d_model=32, n_layers=2)


def _field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


SECTIONS = {"injection": Injection, "av": AVSpec, "ar": ARSpec, "adapter": Adapter, "training": Training}


def _assert_hubkit_fields_only(saved: dict) -> None:
    saved = saved[
        "hubkit"
    ]  # hubkit's record; the reference keys beside it are tested in test_meta_reference_keys
    assert list(saved)[0] == "schema" and saved["schema"] == C.SCHEMA_VERSION
    assert set(saved) <= _field_names(NLAMeta)
    for name, cls in SECTIONS.items():
        if name in saved:
            assert set(saved[name]) <= _field_names(cls), name
    assert None not in (v for k, v in saved.items() if k != "mse_scale")


def test_own_schema_round_trips(tmp_path: Path, tiny, caplog) -> None:
    caplog.set_level(logging.INFO, logger="hubkit.meta")
    av, ar = tiny_metas(tiny, scale=12.5)
    for meta, name in ((av, "av"), (ar, "ar")):
        path = meta.save(tmp_path / name)
        assert path == tmp_path / name / C.META_FILE
        saved = yaml.safe_load(path.read_text())
        _assert_hubkit_fields_only(saved)
        assert NLAMeta.load(path) == meta
        assert NLAMeta.load(path.parent) == meta
    assert _meta_records(caplog) == []  # hubkit's own schema needs no defaults and logs nothing


@pytest.mark.parametrize("source", ["reference", "consumer", "sidecar"])
def test_converted_metas_round_trip_through_hubkit_schema(tmp_path: Path, source: str) -> None:
    data = {"reference": REFERENCE, "consumer": CONSUMER, "sidecar": SIDECAR}[source]
    first = NLAMeta.load(_write_yaml(tmp_path / "in", copy.deepcopy(data)))
    path = first.save(tmp_path / "out" / "nla_meta.yaml")
    saved = yaml.safe_load(path.read_text())
    _assert_hubkit_fields_only(saved)
    assert (saved["schema_version"], saved["kind"]) == (2, "nla_model")  # the reference reads it too
    again = NLAMeta.load(path)
    assert again == first
    assert again.converted_from == first.converted_from  # provenance of the conversion kept


def _hubkit_dict(tiny) -> dict:
    av, _ = tiny_metas(tiny)
    return yaml.safe_load(yaml.safe_dump(av.to_dict()))


def _set(data: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = data
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("dotted", "value", "field_name", "needle"),
    [
        ("d_model", _DELETE, "d_model", "is required but missing"),
        ("role", _DELETE, "role", "is required but missing"),
        ("colour", "red", "colour", "is not a known field"),
        ("injection.colour", "red", "injection.colour", "is not a known field"),
        ("ar.extra", 1, "ar.extra", "is not a known field"),
        ("d_model", "32", "d_model", "must be an integer"),
        ("layer", True, "layer", "must be an integer"),
        ("layer", 1.5, "layer", "must be an integer"),
        ("ar.num_layers", "2", "ar.num_layers", "must be an integer"),
        ("injection.block", False, "injection.block", "must be an integer"),
        ("injection.scale", True, "injection.scale", "got True"),
        ("injection.scale", "big", "injection.scale", "got 'big'"),
        ("injection.scale", -3.0, "injection", "injection.scale` must be a positive"),
        ("injection.scale", float("nan"), "injection", "injection.scale` must be a positive"),
        ("injection.scheme", "prefix", "injection.scheme", "must be one of"),
        ("av.chat_template", "yes", "av.chat_template", "must be true or false"),
        ("base_model", ["a"], "base_model", "must be a string"),
        ("av.template", "no marker here", "av", "{injection_char}"),
        ("av.template", "no marker placeholder here", "av", "{injection_char}"),
        ("ar.template", "no placeholder", "ar", "{explanation}"),
        ("role", "judge", "role", "must be one of"),
        ("schema", "hubkit.nla/2", "schema", "hubkit.nla/1"),
    ],
)
def test_own_schema_errors_name_the_field(tiny, dotted, value, field_name, needle) -> None:
    data = _hubkit_dict(tiny)
    _set(data, dotted, value)
    with pytest.raises(MetaError) as err:
        NLAMeta.from_dict(data, where="x/nla_meta.yaml")
    msg = str(err.value)
    assert msg.startswith("x/nla_meta.yaml: field `" + field_name + "`"), msg
    assert needle in msg


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"role": "judge"}, "field `role`"),
        ({"kind": "nla_thing"}, "field `kind`"),
        ({"prompt_templates": {"actor": "no marker", "critic": AR_T}}, "field `prompt_templates.actor`"),
        (
            {"prompt_templates": {"actor": AV_T, "critic": "no placeholder"}},
            "field `prompt_templates.critic`",
        ),
        ({"prompt_templates": {"actor": AV_T, "judge": "x"}}, "judge"),
        ({"prompt_templates": {"actor": AV_T, "av": "other {injection_char}"}}, "prompt_templates.av"),
        ({"d_model": "3584"}, "field `d_model` must be an integer"),
        ({"d_model": None}, "field `d_model`"),
        (
            {"critic": {"extraction_layer_index": "20"}},
            "field `critic.extraction_layer_index` must be an integer",
        ),
        ({"critic": {"num_hidden_layers": True}}, "field `critic.num_hidden_layers` must be an integer"),
        ({"base_checkpoint": None}, "field `base_checkpoint`"),
        ({"tokens": {}}, "tokens.injection_char"),
    ],
)
def test_reference_errors_name_the_field(patch: dict, needle: str) -> None:
    data = {**copy.deepcopy(REFERENCE), **patch}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(MetaError) as err:
        NLAMeta.from_dict(data, where="ref.yaml")
    assert needle in str(err.value) and str(err.value).startswith("ref.yaml")


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / C.META_FILE).write_text("role: av\nd_model: [1, 2\n")
    with pytest.raises(MetaError, match="not valid YAML") as err:
        NLAMeta.load(tmp_path)
    assert str(tmp_path / C.META_FILE) in str(err.value)


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    (tmp_path / C.META_FILE).write_text("- a\n- b\n")
    with pytest.raises(MetaError, match="expected a mapping at the top level, got list"):
        NLAMeta.load(tmp_path)


def test_unrecognised_dialect_lists_what_is_expected(tmp_path: Path) -> None:
    (tmp_path / C.META_FILE).write_text("role: av\nsize: 3\n")
    with pytest.raises(MetaError, match="unrecognised nla_meta dialect") as err:
        NLAMeta.load(tmp_path)
    assert C.SCHEMA_VERSION in str(err.value)


def test_folder_without_any_meta(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(MetaError) as err:
        NLAMeta.load(tmp_path)
    assert (
        C.META_FILE in str(err.value) and C.AR_META_JSON in str(err.value) and str(tmp_path) in str(err.value)
    )


@pytest.mark.parametrize(
    "name, data",
    [
        ("nla_meta.yaml", "role: av\nd_model: 8\n".encode("utf-16")),
        ("acts.parquet", b"PAR1\x00\xff\xfe binary"),
        ("nla_meta.yaml", "role: av  # caf\xe9\n".encode("latin-1")),
    ],
)
def test_a_file_that_is_not_utf8_yaml_is_one_meta_error(tmp_path, name, data):
    from hubkit.errors import MetaError

    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(MetaError, match=rf"{path}: not UTF-8 text"):
        NLAMeta.load(path)
