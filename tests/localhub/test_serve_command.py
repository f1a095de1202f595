"""`hubkit hub serve` refuses what it cannot do with one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from hubkit.cli import main
from hubkit.localhub import LocalHub


def _serve(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["hub", "serve", *args])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        result.exception
    )
    return result.exit_code, result.output.strip().splitlines()


def test_refusals_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "bad.yaml").write_text("tokens: [1, 2]\n")
    (tmp_path / "short.yaml").write_text("tokens: {abc: {user: me}}\n")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = str(busy.getsockname()[1])
    cases = {
        "loopback": ["--root", str(tmp_path / "r1"), "--host", "0.0.0.0"],
        "Not a directory": ["--root", str(tmp_path / "a-file" / "root")],
        "already in use": ["--root", str(tmp_path / "r2"), "--port", port],
        "tokens:": ["--root", str(tmp_path / "r3"), "--token-file", str(tmp_path / "bad.yaml")],
        "at least 8 characters": [
            "--root",
            str(tmp_path / "r4"),
            "--token-file",
            str(tmp_path / "short.yaml"),
        ],
        "cannot read the token file": [
            "--root",
            str(tmp_path / "r5"),
            "--token-file",
            str(tmp_path / "absent.yaml"),
        ],
    }
    try:
        with LocalHub(tmp_path / "held"):
            cases["already served"] = ["--root", str(tmp_path / "held"), "--port", "0"]
            for expected, args in cases.items():
                code, lines = _serve(*args)
                assert code == 2, (expected, lines)
                assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    finally:
        busy.close()
    assert not (tmp_path / "r2" / ".server.pid").exists()  # a failed start names no holder of its root


@pytest.mark.parametrize("host", ["10.0.0.1", "::1", "example.com"])
def test_only_ipv4_loopback_is_served(tmp_path: Path, host: str) -> None:
    code, lines = _serve("--root", str(tmp_path / "r"), "--host", host)
    assert code == 2 and len(lines) == 1 and "plain HTTP" in lines[0]
