"""`OpenAIChatLabeler` against a Chat Completions server on loopback: answers, failures, retries, limits."""

from __future__ import annotations

import time

import pytest

from hubkit.data.labelers import LabelerError, OpenAIChatLabeler, RateLimiter

from .chat_server import reference_reply

MSG = [{"role": "user", "content": 'The final token is: "cat"'}]


def test_answers_in_order_with_the_published_request_shape(chat_server):
    labeler = OpenAIChatLabeler(chat_server.base_url, "m1", api_key="sk-test", max_tokens=33, concurrency=3)
    convs = [[{"role": "user", "content": f'The final token is: "t{i}"'}] for i in range(7)]
    assert labeler.chat(convs) == [reference_reply(c) for c in convs]
    req = chat_server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-test"
    assert req["body"]["model"] == "m1" and req["body"]["max_tokens"] == 33 and req["body"]["stream"] is False
    assert labeler.name == "openai:m1"


def test_http_500_is_retried_then_succeeds(chat_server):
    chat_server.failures = [500, 503]
    labeler = OpenAIChatLabeler(chat_server.base_url, "m", backoff=0.01, max_retries=3)
    assert labeler.complete(MSG) == reference_reply(MSG)
    assert [r["status"] for r in chat_server.requests] == [500, 503, 200]
    assert labeler.attempts == 3


def test_http_429_waits_for_retry_after(chat_server):
    chat_server.failures = [429]
    chat_server.retry_after = "0.4"
    labeler = OpenAIChatLabeler(chat_server.base_url, "m", backoff=0.01)
    assert labeler.complete(MSG) == reference_reply(MSG)
    first, second = chat_server.requests
    assert first["status"] == 429 and second["status"] == 200
    assert second["t"] - first["t"] >= 0.4


def test_retries_used_up_is_a_clear_error(chat_server):
    chat_server.failures = [500] * 3
    labeler = OpenAIChatLabeler(chat_server.base_url, "m", backoff=0.01, max_retries=2)
    with pytest.raises(LabelerError, match=r"no answer after 3 attempts \(last: HTTP 500"):
        labeler.complete(MSG)
    assert len(chat_server.requests) == 3


def test_client_errors_are_not_retried(chat_server):
    chat_server.failures = [401]
    labeler = OpenAIChatLabeler(chat_server.base_url, "m", backoff=0.01)
    with pytest.raises(LabelerError, match="refused the request with HTTP 401"):
        labeler.complete(MSG)
    assert len(chat_server.requests) == 1
    with pytest.raises(LabelerError, match="HTTP 404"):
        OpenAIChatLabeler(chat_server.base_url + "/nope", "m").complete(MSG)


def test_unreachable_endpoint_is_retried_then_reported():
    import socket

    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    labeler = OpenAIChatLabeler(f"http://127.0.0.1:{port}/v1", "m", backoff=0.01, max_retries=1, timeout=2)
    with pytest.raises(LabelerError, match="no answer after 2 attempts"):
        labeler.complete(MSG)
    with pytest.raises(LabelerError, match="must be an http"):
        OpenAIChatLabeler("127.0.0.1:8000", "m")


def test_malformed_answer_is_reported(chat_server):
    chat_server.raw_body = b'{"object": "error"}'
    with pytest.raises(LabelerError, match="not a chat completion"):
        OpenAIChatLabeler(chat_server.base_url, "m").complete(MSG)
    chat_server.raw_body = None
    chat_server.reply = lambda messages: None  # `content: null` is an empty reply, not an error
    assert OpenAIChatLabeler(chat_server.base_url, "m").complete(MSG) == ""


def test_rate_limit_spaces_requests(chat_server):
    labeler = OpenAIChatLabeler(chat_server.base_url, "m", requests_per_second=10, concurrency=4)
    labeler.chat([MSG] * 5)
    times = sorted(r["t"] for r in chat_server.requests)
    assert times[-1] - times[0] >= 0.4 * 0.95  # 5 starts at 10/s span at least 0.4 s
    with pytest.raises(ValueError, match="rate limit"):
        RateLimiter(0)


def test_rate_limiter_alone():
    limiter = RateLimiter(20)
    start = time.monotonic()
    for _ in range(5):
        limiter.wait()
    assert time.monotonic() - start >= 4 / 20 * 0.95
