"""`hubkit inspect` bad inputs, in the style of tests/test_bad_inputs.py: each exits non-zero with ONE
`error:` line naming the input and what to do, no traceback, and writes nothing."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from hubkit.cli import main

D = 64


@dataclass
class WS:
    root: Path
    av: Path
    ar: Path
    av_layer1: Path
    ar_layer1: Path
    ar_other_base: Path
    n: int = 0

    def file(self, name: str, content: str) -> Path:
        self.n += 1
        path = self.root / "cases" / f"{self.n:03d}" / name
        path.parent.mkdir(parents=True)
        path.write_text(content)
        return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> WS:
    from hubkit.testing import make_tiny_model, write_adapter_pair

    root = tmp_path_factory.mktemp("inspect-bad")
    os.environ["HUBKIT_CACHE"] = str(root / "cache")
    base = make_tiny_model("llama", d_model=D, n_layers=4).save(root / "base")
    other = make_tiny_model("qwen2", d_model=D, n_layers=4, seed=7).save(root / "other-base")
    av, ar = write_adapter_pair(root / "pair", base, layer=2)
    av1, ar1 = write_adapter_pair(root / "pair1", base, layer=1)
    _, ar_other = write_adapter_pair(root / "pair-other", other, layer=2)
    return WS(root, av, ar, av1, ar1, ar_other)


Case = tuple[str, Callable[[WS], list[str]], str]


def _inspect(w: WS, *args, av=None, ar=None) -> list[str]:
    return [
        "inspect",
        "--av",
        str(av or w.av),
        "--ar",
        str(ar or w.ar),
        "--out",
        str(w.root / "never"),
        "--max-new-tokens",
        "2",
        "--dtype",
        "float32",
        "--engine",
        "transformers",
        *map(str, args),
    ]


LONG = " ".join(["word"] * 700)  # the tiny base's context is 512 tokens

CASES: list[Case] = [
    ("text-longer-than-context", lambda w: _inspect(w, "--text", LONG), "context of 512"),
    ("file-longer-than-context", lambda w: _inspect(w, "--file", w.file("long.txt", LONG)), "context of 512"),
    (
        "reply-past-context",
        lambda w: _inspect(w, "--text", " ".join(["word"] * 300), "--reply", 400),
        "reply tokens",
    ),
    ("text-empty", lambda w: _inspect(w, "--text", ""), "--text is empty"),
    ("text-blank", lambda w: _inspect(w, "--text", "   \n"), "--text is empty"),
    ("file-empty", lambda w: _inspect(w, "--file", w.file("empty.txt", "")), "empty.txt"),
    ("file-binary", lambda w: _inspect(w, "--file", w.file("bin.txt", "a\0b")), "bin.txt"),
    ("chat-not-json", lambda w: _inspect(w, "--chat", w.file("chat.json", "{nope")), "chat.json"),
    (
        "chat-object",
        lambda w: _inspect(w, "--chat", w.file("chat.json", json.dumps({"role": "user", "content": "hi"}))),
        "list of",
    ),
    ("chat-empty-list", lambda w: _inspect(w, "--chat", w.file("chat.json", "[]")), "empty"),
    ("chat-strings", lambda w: _inspect(w, "--chat", w.file("chat.json", '["hello"]')), "message 0"),
    (
        "chat-no-content",
        lambda w: _inspect(w, "--chat", w.file("chat.json", '[{"role": "user"}]')),
        "content",
    ),
    (
        "chat-content-not-string",
        lambda w: _inspect(w, "--chat", w.file("chat.json", '[{"role": "user", "content": 3}]')),
        "message 0",
    ),
    (
        "positions-out-of-range",
        lambda w: _inspect(w, "--text", "The cat sat.", "--positions", "999"),
        "positions 999",
    ),
    (
        "positions-negative-out-of-range",
        lambda w: _inspect(w, "--text", "The cat sat.", "--positions", "-99"),
        "positions -99",
    ),
    (
        "positions-not-numbers",
        lambda w: _inspect(w, "--text", "The cat sat.", "--positions", "first"),
        "positions",
    ),
    (
        "positions-reply-without-reply",
        lambda w: _inspect(w, "--text", "The cat sat.", "--positions", "reply"),
        "--reply",
    ),
    ("av-ar-different-layers", lambda w: _inspect(w, "--text", "The cat.", ar=w.ar_layer1), "layer"),
    (
        "av-ar-different-bases",
        lambda w: _inspect(w, "--text", "The cat.", ar=w.ar_other_base),
        "do not form a pair: model_type",
    ),
    ("text-and-chat", lambda w: _inspect(w, "--text", "a", "--chat", w.file("c.json", "[]")), "exactly one"),
    ("no-text", lambda w: _inspect(w), "exactly one"),
    (
        "out-is-a-file",
        lambda w: [*_inspect(w, "--text", "a b c"), "--out", str(w.file("f.txt", "x"))],
        "is a file",
    ),
    ("baseline-b-negative", lambda w: _inspect(w, "--text", "The cat.", "--baseline-b", -1), "baseline"),
    (
        "baseline-eval-not-an-eval",
        lambda w: _inspect(w, "--text", "The cat.", "--baseline-eval", w.file("e.json", "{}")),
        "e.json",
    ),
    ("reply-negative", lambda w: _inspect(w, "--text", "The cat.", "--reply", -1), "reply"),
]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and "cache" not in p.relative_to(root).parts[:1]
    }


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_writes_nothing(ws, case):
    _, build, names = case
    args = build(ws)
    before = snapshot(ws.root)
    result = CliRunner().invoke(main, args)
    text = result.output
    assert "Traceback" not in text, text
    assert result.exit_code not in (0, None), f"exit 0 for {args}: {text}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and errors == lines[-1:], text
    assert re.search(re.escape(names), errors[0], flags=re.IGNORECASE), (
        f"{errors[0]!r} does not name {names!r}"
    )
    assert snapshot(ws.root) == before
    assert not (ws.root / "never").exists()
