"""`hubkit export --format reference`: merged AV weights and a truncated AR that compute what the
adapters compute, read back by hubkit and by the reference critic's documented recipe (written out
here: truncated backbone, final norm → identity, lm_head → identity, ``add_special_tokens=True``,
last token, ``value_head``)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from hubkit import ActivationReconstructor, ActivationVerbalizer, NLAMeta
from hubkit.cli import main
from hubkit.errors import MetaError
from hubkit.export import export_reference
from hubkit.testing import write_adapter_pair

LAYER = 2
TEXTS = ["a cat on a mat", "", "Paris is the capital of France.", "code {} [] ()"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tiny_base_dir):
    return write_adapter_pair(tmp_path_factory.mktemp("pair"), tiny_base_dir, layer=LAYER, seed=4)


def reference_critic(folder, texts: list[str]) -> torch.Tensor:
    """The reference critic's documented computation, on the exported folder alone."""
    meta = yaml.safe_load((folder / "nla_meta.yaml").read_text())
    tok = AutoTokenizer.from_pretrained(str(folder))
    probe, bos = tok("x", add_special_tokens=True)["input_ids"], tok.bos_token_id
    assert bos is None or probe[0] == bos, (
        "the reference critic refuses a tokenizer that has a BOS it does not add"
    )
    backbone = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    backbone.lm_head = torch.nn.Identity()
    backbone.model.norm = torch.nn.Identity()
    d = backbone.config.hidden_size
    head = torch.nn.Linear(d, d, bias=False)
    head.load_state_dict(load_file(str(folder / "value_head.safetensors")))
    template = meta["prompt_templates"].get("ar") or meta["prompt_templates"]["critic"]
    out = []
    with torch.no_grad():
        for text in texts:
            ids = tok(template.format(explanation=text), return_tensors="pt", add_special_tokens=True)[
                "input_ids"
            ]
            out.append(head(backbone.model(ids, use_cache=False).last_hidden_state[0, -1]).float())
    return torch.stack(out)


def test_ar_export_matches_the_adapter_and_the_reference_recipe(tmp_path, pair, tiny_base_dir):
    _, ar_dir = pair
    adapter = ActivationReconstructor.from_pretrained(ar_dir, dtype="float32")
    assert (
        adapter.meta.ar.add_bos is True
        and adapter.tokenizer("x")["input_ids"][0] != adapter.tokenizer.bos_token_id
    )
    want = adapter.reconstruct(TEXTS)
    report = export_reference(ar_dir, tmp_path / "ar-ref", dtype="float32")
    out = tmp_path / "ar-ref"
    assert report.max_rel_diff <= 1e-5
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_hidden_layers"] == LAYER + 1 and not (out / "adapter_config.json").exists()
    got = reference_critic(out, TEXTS)
    rel = float((got - want).abs().max() / want.abs().max())
    assert rel <= 1e-5, rel
    top = yaml.safe_load((out / "nla_meta.yaml").read_text())
    assert top["role"] == "ar" and top["critic"]["extraction_layer_index"] == LAYER
    assert isinstance(top["extraction"]["mse_scale"], float) and "tokens" in top
    assert top["base_checkpoint"] == "" or "/" not in top["base_checkpoint"][:1]
    torch.testing.assert_close(
        ActivationReconstructor.from_pretrained(out, dtype="float32").reconstruct(TEXTS),
        want,
        atol=1e-5,
        rtol=1e-5,
    )


def test_av_export_is_full_weights_with_the_same_outputs(tmp_path, pair):
    av_dir, _ = pair
    result = CliRunner().invoke(
        main,
        [
            "export",
            str(av_dir),
            "--format",
            "reference",
            "--out",
            str(tmp_path / "av-ref"),
            "--dtype",
            "float32",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "greedy tokens equal on 4/4" in result.output
    out = tmp_path / "av-ref"
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    top = yaml.safe_load((out / "nla_meta.yaml").read_text())
    assert isinstance(top["extraction"]["injection_scale"], float)
    assert set(top["tokens"]) >= {
        "injection_char",
        "injection_token_id",
        "injection_left_neighbor_id",
        "injection_right_neighbor_id",
    }
    v = torch.randn(3, NLAMeta.load(out).d_model)
    a = ActivationVerbalizer.from_pretrained(av_dir, dtype="float32")
    b = ActivationVerbalizer.from_pretrained(out, dtype="float32")
    assert a.explain(v, max_new_tokens=6) == b.explain(v, max_new_tokens=6)


def test_what_the_reference_cannot_express_is_refused(tmp_path, pair):
    _, ar_dir = pair
    meta = NLAMeta.load(ar_dir)
    meta.with_updates(ar=meta.ar.__class__(**{**meta.ar.__dict__, "final_norm": True})).save(
        tmp_path / "nla_meta.yaml"
    )
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ar_dir, bad)
    shutil.copyfile(tmp_path / "nla_meta.yaml", bad / "nla_meta.yaml")
    (bad / ".hubkit_sha256.json").unlink(missing_ok=True)
    with pytest.raises(MetaError, match="final norm"):
        export_reference(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(
        main, ["export", str(bad), "--format", "reference", "--out", str(tmp_path / "o2")]
    )
    assert (
        result.exit_code != 0
        and result.output.startswith("error: ")
        and len(result.output.strip().splitlines()) == 1
    )


def test_bos_rule_false_clears_the_tokenizers_bos(tmp_path, tiny_llama):
    from hubkit.export.reference import write_bos_rule

    tok = tiny_llama.tokenizer
    tok.save_pretrained(str(tmp_path))
    write_bos_rule(tmp_path, False, tok.bos_token, tok.bos_token_id)
    t2 = AutoTokenizer.from_pretrained(str(tmp_path))
    assert t2.bos_token_id is None and t2("x")["input_ids"] == tok("x", add_special_tokens=False)["input_ids"]
    write_bos_rule(tmp_path, True, tok.bos_token, tok.bos_token_id)
    assert AutoTokenizer.from_pretrained(str(tmp_path))("x")["input_ids"][0] == tok.bos_token_id
