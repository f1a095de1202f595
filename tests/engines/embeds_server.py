"""A small HTTP server speaking the part of vLLM's completions protocol hubkit's remote engine uses.

It decodes each base64 ``torch.save`` prompt embedding and generates with transformers
(``generate(inputs_embeds=…)``), so the client's encoding, chunking, ordering and error handling
are tested against an independent generator without vLLM installed. Like ``vllm serve
--enable-lora`` with runtime LoRA updating, it loads adapters by path (``/v1/load_lora_adapter``, a
peft copy of its model per adapter) and serves them by name; it samples when the temperature is above
0 (seeded). The real ``vllm serve`` is exercised by the slow tests.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

MODEL_NAME = "tiny"


class EmbedsServer:
    def __init__(self, model, eos_id: int) -> None:
        self.model, self.eos_id = model, eos_id
        self.requests: list[dict] = []
        self.adapters: dict[str, object] = {}
        self.loaded: list[tuple[str, str]] = []  # (lora_name, lora_path) in the order they were loaded
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._send(200, {"data": [{"id": MODEL_NAME}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/v1/load_lora_adapter":
                    server.load_adapter(body["lora_name"], body["lora_path"])
                    self._send(200, {})
                    return
                with server.lock:
                    server.requests.append(body)
                if body.get("model") != MODEL_NAME and body.get("model") not in server.adapters:
                    self._send(
                        404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}}
                    )
                    return
                self._send(200, {"choices": server.complete(body)})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def load_adapter(self, name: str, path: str) -> None:
        import copy

        from peft import PeftModel

        with self.lock:
            self.adapters[name] = PeftModel.from_pretrained(copy.deepcopy(self.model), path).eval()
            self.loaded.append((name, path))

    @torch.no_grad()
    def complete(self, body: dict) -> list[dict]:
        out = []
        model = self.adapters.get(body["model"], self.model)
        sample = body.get("temperature", 0.0) > 0
        for i, b64 in enumerate(body["prompt_embeds"]):
            emb = torch.load(io.BytesIO(base64.b64decode(b64)), weights_only=True)
            with self.lock:
                if sample and body.get("seed") is not None:
                    torch.manual_seed(body["seed"] + i)
                extra = dict(temperature=body["temperature"], top_p=body["top_p"], top_k=0) if sample else {}
                seq = model.generate(
                    inputs_embeds=emb[None],
                    attention_mask=torch.ones(1, emb.shape[0], dtype=torch.long),
                    max_new_tokens=body["max_tokens"],
                    min_new_tokens=body.get("min_tokens", 0) or None,
                    do_sample=sample,
                    **extra,
                    eos_token_id=body["stop_token_ids"] or self.eos_id,
                    pad_token_id=self.eos_id,
                )
            ids = seq[0].tolist()
            out.append({"index": i, "token_ids": ids, "text": ""})
        return out

    def __enter__(self) -> EmbedsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
