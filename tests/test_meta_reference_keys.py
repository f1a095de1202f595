"""A saved nla_meta.yaml carries the reference schema_version-2 keys beside hubkit's record: the keys
are present with the right values, a reader that uses only them (written here from the documented
format) recovers the numbers hubkit uses, and hubkit prefers its record but refuses a file whose two
halves disagree."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from hubkit import constants as C
from hubkit.errors import MetaError
from hubkit.meta import NLAMeta, critic_suffix_ids, fill_suffix_ids
from hubkit.testing import make_tiny_model, tiny_metas

REFERENCE_KEYS = {
    "kind",
    "schema_version",
    "role",
    "d_model",
    "extraction",
    "tokens",
    "prompt_templates",
    "base_checkpoint",
}


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_model("llama", d_model=32, n_layers=3)


def _marker_ids(tiny, template: str) -> dict:
    """Marker id and its neighbours in the chat-wrapped AV prompt, as the reference records them."""
    tok = tiny.tokenizer
    marker_id = tok("¶", add_special_tokens=False)["input_ids"][0]
    content = template.format(injection_char="¶")
    ids = tok.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=True, add_generation_prompt=True
    )
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    p = ids.index(marker_id)
    return {"marker_token_id": marker_id, "left_neighbor_id": ids[p - 1], "right_neighbor_id": ids[p + 1]}


def reference_only_reader(path: Path) -> dict:
    """What the reference client and critic compute from a file, using only the documented keys."""
    meta = yaml.safe_load(path.read_text())
    meta.pop("hubkit", None)
    assert meta["kind"] == "nla_model" and meta["schema_version"] == 2
    ext, t, pt = meta["extraction"], meta.get("tokens", {}), meta["prompt_templates"]
    critic = meta.get("critic") or {}
    k = critic.get("extraction_layer_index", critic.get("num_hidden_layers"))
    return {
        "role": meta["role"],
        "d_model": meta["d_model"],
        "injection_scale": None if ext["injection_scale"] is None else float(ext["injection_scale"]),
        "mse_scale": None if ext["mse_scale"] is None else float(ext["mse_scale"]),
        "k": k,
        "kept_blocks": None if k is None else k + 1,
        "av_template": pt.get("av") or pt.get("actor"),
        "ar_template": pt.get("ar") or pt.get("critic"),
        "tokens": t,
        "base": meta["base_checkpoint"],
    }


@pytest.mark.parametrize("scale", [12.5, "sqrt_d_model"])
def test_saved_av_carries_the_reference_keys_with_hubkits_numbers(tmp_path: Path, tiny, scale) -> None:
    av, _ = tiny_metas(tiny, layer=1, scale=scale, base_model="org/base")
    av.injection.marker_token_id = 7
    av.injection.left_neighbor_id, av.injection.right_neighbor_id = 6, 8
    path = av.save(tmp_path / "av", tokenizer=tiny.tokenizer)
    saved = yaml.safe_load(path.read_text())
    assert REFERENCE_KEYS <= set(saved) and "hubkit" in saved
    assert saved["critic"] == {"extraction_layer_index": 1} and saved["extraction_layer_index"] == 1
    got = reference_only_reader(path)
    assert got["role"] == "av" and got["d_model"] == av.d_model == 32 and got["base"] == "org/base"
    assert got["injection_scale"] == pytest.approx(av.injection_scale_value())
    assert got["mse_scale"] == pytest.approx(av.mse_scale_value()) == pytest.approx(math.sqrt(32))
    assert (got["k"], got["kept_blocks"]) == (av.layer, av.ar.num_layers) == (1, 2)
    assert (got["av_template"], got["ar_template"]) == (av.av.template, av.ar.template)
    assert got["tokens"] == {
        "injection_char": "¶",
        "injection_token_id": 7,
        "injection_left_neighbor_id": 6,
        "injection_right_neighbor_id": 8,
        "critic_suffix_ids": got["tokens"]["critic_suffix_ids"],
    }
    suffix = av.ar.template.split("{explanation}")[1]
    assert got["tokens"]["critic_suffix_ids"] == tiny.tokenizer.encode(suffix, add_special_tokens=False)[1:]


def test_saved_ar_is_what_the_reference_critic_reads(tmp_path: Path, tiny) -> None:
    _, ar = tiny_metas(tiny, layer=2, base_model="org/base")
    got = reference_only_reader(ar.save(tmp_path / "ar"))
    assert got["role"] == "ar" and got["mse_scale"] == pytest.approx(ar.mse_scale_value())
    assert got["ar_template"] == ar.ar.template and got["kept_blocks"] == ar.ar.num_layers == 3
    assert got["injection_scale"] is None  # critics do not inject


def test_reference_keys_alone_give_hubkit_the_same_numbers(tmp_path: Path, tiny) -> None:
    """Drop hubkit's record: the reference-v2 reader recovers every number the record held."""
    av, _ = tiny_metas(tiny, layer=1, scale=12.5, base_model="org/base")
    av.injection.__dict__.update(_marker_ids(tiny, av.av.template))
    path = av.save(tmp_path / "av", tokenizer=tiny.tokenizer)
    data = yaml.safe_load(path.read_text())
    record = data.pop("hubkit")
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / C.META_FILE).write_text(yaml.safe_dump(data, allow_unicode=True))
    ref = NLAMeta.load(tmp_path / "ref")
    assert ref.converted_from == "reference-v2"
    assert (ref.role, ref.d_model, ref.layer, ref.ar.num_layers) == (
        av.role,
        av.d_model,
        av.layer,
        av.ar.num_layers,
    )
    assert ref.injection_scale_value() == pytest.approx(av.injection_scale_value())
    assert ref.mse_scale_value() == pytest.approx(av.mse_scale_value())
    assert (ref.av.template, ref.ar.template) == (av.av.template, av.ar.template)
    for f in ("marker", "marker_token_id", "left_neighbor_id", "right_neighbor_id"):
        assert getattr(ref.injection, f) == getattr(av.injection, f)
    assert ref.ar.suffix_ids == record["ar"]["suffix_ids"]


def test_layouts_the_reference_cannot_express_still_carry_its_keys(tmp_path: Path, tiny) -> None:
    av, _ = tiny_metas(tiny, layer=1, scheme="residual_add", base_model="org/base")
    av.adapter.r = 8
    saved = yaml.safe_load(av.save(tmp_path / "av").read_text())
    assert REFERENCE_KEYS - {"tokens"} <= set(saved) and saved["tokens"]["injection_char"] == "¶"
    assert saved["extraction"]["injection_scale"] is None  # no scale: the reference would ask for one
    assert saved["hubkit"]["injection"]["scheme"] == "residual_add" and saved["hubkit"]["adapter"]["r"] == 8
    assert NLAMeta.load(tmp_path / "av") == av


def test_hubkit_prefers_its_record_and_refuses_a_disagreeing_reference_key(tmp_path: Path, tiny) -> None:
    av, _ = tiny_metas(tiny, layer=1, scale=12.5)
    path = av.save(tmp_path / "av")
    data = yaml.safe_load(path.read_text())
    data["hubkit"]["av"]["chat_template"] = False  # only in the record: the record wins
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert NLAMeta.load(path).av.chat_template is False
    data["extraction"]["injection_scale"] = 99.0
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(
        MetaError, match=r"field `extraction.injection_scale` is 99.0 but the hubkit record says 12.5"
    ):
        NLAMeta.load(path)


def test_suffix_ids_need_a_suffix_of_two_tokens(tiny) -> None:
    assert (
        critic_suffix_ids(tiny.tokenizer, "<text>{explanation}</text> <summary>")
        == (tiny.tokenizer.encode("</text> <summary>", add_special_tokens=False)[1:])
    )
    with pytest.raises(MetaError, match="at least 2"):
        critic_suffix_ids(tiny.tokenizer, "{explanation}")
    _, ar = tiny_metas(tiny)
    filled = fill_suffix_ids(ar, tiny.tokenizer)
    assert filled.ar.suffix_ids and ar.ar.suffix_ids is None  # a copy; the input is unchanged


def _layouts(tiny) -> list[tuple[str, NLAMeta]]:
    """Every combination of settings hubkit writes that changes what a half computes."""
    from dataclasses import replace

    out = []
    for scheme in ("embedding_replace", "residual_add"):
        for chat in (True, False):
            for scale in (12.5, "sqrt_d_model"):
                av, _ = tiny_metas(
                    tiny, layer=1, scale=scale, chat=chat, scheme=scheme, base_model="org/base"
                )
                out.append((f"av-{scheme}-chat{chat}-{scale}", av))
    _, ar = tiny_metas(tiny, layer=1, base_model="org/base")
    for add_bos in (True, False, "tokenizer"):
        for norm in ("none", "mse_scale"):
            for chat in (False, True):
                spec = replace(ar.ar, add_bos=add_bos, input_norm=norm, chat_template=chat)
                out.append((f"ar-bos{add_bos}-{norm}-chat{chat}", ar.with_updates(ar=spec)))
    out.append(("ar-raw-mse", ar.with_updates(mse_scale=None)))
    return out


def test_the_two_readings_of_every_layout_agree_or_the_reference_reading_is_refused(tmp_path: Path, tiny):
    """A file read with its hubkit record and the same file read from its reference keys alone (the
    record lost, as a hand copy or another tool may lose it) give the same settings, or the second is
    refused naming what the reference keys cannot express; never other vectors without a word."""
    from hubkit.meta.record import _comparable

    agreed, refused = [], []
    for name, meta in _layouts(tiny):
        path = meta.save(tmp_path / name / C.META_FILE)
        full = NLAMeta.load(path)
        data = yaml.safe_load(path.read_text())
        data.pop("hubkit")
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        needed = data.get(C.RECORD_NEEDED_KEY)
        if needed:
            with pytest.raises(
                MetaError, match=rf"cannot express \({re.escape(str(needed))}\).*`hubkit:` record"
            ):
                NLAMeta.load(path)
            refused.append(name)
            continue
        assert _comparable(NLAMeta.load(path)) == _comparable(full), name
        agreed.append(name)
    assert "av-embedding_replace-chatTrue-12.5" in agreed and "ar-bostokenizer-none-chatFalse" in agreed
    assert "ar-boxTrue-none-chatFalse".replace("box", "bos") in refused  # hubkit's default AR: BOS always
    assert all("residual_add" in n for n in refused if n.startswith("av-residual")) and len(refused) > 5
