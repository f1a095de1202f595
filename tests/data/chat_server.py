"""A Chat Completions server on loopback for the labeler tests (imported by conftest and tests)."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_TOKEN = re.compile(r'The final token is: "(.*)"')
_DRAFT = re.compile(r"<draft>(.*)</draft>", re.S)


def reference_reply(messages: list[dict]) -> str:
    """A deterministic answer that depends on the prompt, so tests can predict each label independently.

    Labeler prompt → ``<explanation>about "TOKEN"</explanation>``; auditor prompt →
    ``<explanation>DRAFT\\nchecked</explanation>``.
    """
    content = messages[-1]["content"]
    draft = _DRAFT.search(content)
    if draft:
        return f"<explanation>{draft.group(1)}\nchecked</explanation>"
    token = _TOKEN.search(content)
    return f'<explanation>- about "{token.group(1) if token else "?"}"</explanation>'


class ChatServer:
    """A loopback HTTP server speaking the published Chat Completions API (``POST /v1/chat/completions``).

    `failures` is a list of HTTP statuses to answer (in order) before answering normally; every request is
    recorded (time, status, headers, body) in `requests`.
    """

    def __init__(self, reply: Callable[[list[dict]], str] = reference_reply) -> None:
        self.reply = reply
        self.failures: list[int] = []
        self.retry_after: str | None = None
        self.delay = 0.0  # seconds to wait before each answer
        self.raw_body: bytes | None = None  # answer 200 with this body instead of a chat completion
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server.lock:
                    status = server.failures.pop(0) if server.failures else 200
                    server.requests.append(
                        {
                            "t": time.monotonic(),
                            "status": status,
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": body,
                        }
                    )
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if status != 200:
                    extra = (
                        {"Retry-After": server.retry_after} if status == 429 and server.retry_after else {}
                    )
                    return self._send(status, {"error": {"message": f"injected {status}"}}, extra)
                if not body.get("messages") or not body.get("model"):
                    return self._send(400, {"error": {"message": "`model` and `messages` are required"}})
                time.sleep(server.delay)
                if server.raw_body is not None:
                    return self._send_bytes(200, server.raw_body)
                content = server.reply(body["messages"])
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(server.requests)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": content},
                            }
                        ],
                        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                    },
                )

            def _send(self, status, payload, headers=None):
                self._send_bytes(status, json.dumps(payload).encode(), headers)

            def _send_bytes(self, status, data, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def ok_requests(self) -> list[dict]:
        return [r for r in self.requests if r["status"] == 200]


@contextlib.contextmanager
def serving(reply: Callable[[list[dict]], str]) -> Iterator[ChatServer]:
    """A started `ChatServer` answering with `reply`, shut down on exit."""
    server = ChatServer(reply=reply)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
