"""The offline model registry is packaged YAML read into typed, cached specs; identity uses it
without importing the GGUF/torch side (hubkit.models)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hubkit import model_registry
from hubkit.schema import SchemaError

ENTRY = {
    "name": "toy-1m",
    "hf_repo": "org/Toy-1M",
    "package": "toy-gguf",
    "module": "toy_gguf",
    "gguf_file": "toy.gguf",
    "assembled": False,
    "install": "pip install toy-gguf",
    "quantization": "Q8_0",
    "d_model": 64,
    "n_layers": 6,
    "chat_template": False,
    "nla_layer": 4,
    "embed_scale": "sqrt_d_model",
    "embed_norm": 1.0,
    "license": "mit",
    "aliases": ["org/toy-1m-base"],
}


def _write(tmp_path: Path, models: list[dict], default: str = "toy-1m") -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"schema": "hubkit.models/1", "models": models, "default": default}))
    return path


def test_packaged_registry_is_typed_and_cached() -> None:
    specs, default = model_registry.load_registry()
    assert default == "smollm2-135m" and set(specs) == {"smollm2-135m", "gemma3-270m"}
    assert model_registry.load_registry() is model_registry.load_registry()  # read once
    assert specs["gemma3-270m"].embed_scale == pytest.approx(math.sqrt(640))
    assert not hasattr(specs["smollm2-135m"], "family")


def test_entries_parse_with_aliases_and_sentinels(tmp_path: Path) -> None:
    specs, _ = model_registry.load_registry(_write(tmp_path, [ENTRY]))
    spec = specs["toy-1m"]
    assert spec.embed_scale == pytest.approx(8.0) and spec.aliases == ("org/toy-1m-base",)
    assert (
        model_registry.find("ORG/TOY-1M-BASE", specs) is spec and model_registry.find("nope", specs) is None
    )


@pytest.mark.parametrize(
    ("models", "needle"),
    [
        ([ENTRY, ENTRY], "listed twice"),
        ([{**ENTRY, "colour": "red"}], "models[0].colour` is not a known field"),
        ([{k: v for k, v in ENTRY.items() if k != "d_model"}], "models[0].d_model` is required"),
        ([{**ENTRY, "nla_layer": 6}], "models[0].nla_layer` must be in 0..5"),
    ],
)
def test_bad_registry_entries_name_the_field(tmp_path: Path, models: list[dict], needle: str) -> None:
    with pytest.raises(SchemaError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        model_registry.load_registry(_write(tmp_path, models))


def test_identity_does_not_import_the_model_loader() -> None:
    code = (
        "import sys; from hubkit import identity; import hubkit.meta; "
        "assert identity.same_base('smollm2-135m', 'HuggingFaceTB/SmolLM2-135M-Instruct'); "
        "print('hubkit.models' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_hub_id_maps_registry_names_and_keeps_anything_else():
    from hubkit.identity import hub_id
    from hubkit.model_registry import specs

    for name, spec in specs().items():
        assert hub_id(name) == spec.hf_repo
        assert hub_id(spec.hf_repo) == spec.hf_repo
    assert hub_id("/data/my-base") == "/data/my-base"
    assert hub_id("org/unknown-model") == "org/unknown-model"
