"""The CLI runs the inspect tests compare: `hubkit inspect`, and `extract` / `explain` / `round-trip` on the
same text or vectors (shared by the tiny-model and the SmolLM2 tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import torch
from click.testing import CliRunner

from hubkit.cli import main

F32 = ["--dtype", "float32", "--engine", "transformers"]  # exact comparisons run in float32, in process


def run(args: list) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


def inspect(av: Path, ar: Path, out: Path, *args) -> Path:
    run(["inspect", "--av", av, "--ar", ar, "--out", out, *args])
    return out


def records(out: Path) -> list[dict]:
    """The lines of `out`/tokens.jsonl."""
    return [json.loads(line) for line in (out / "tokens.jsonl").read_text().splitlines()]


def extract_text(base: str | Path, text: str, root: Path, layer: int) -> tuple[list[int], torch.Tensor]:
    """(positions, vectors) `hubkit extract` reads from `text` as a one-document corpus, every eligible
    position, in float32."""
    corpus, acts = root / "text.txt", root / "acts.parquet"
    corpus.write_text(text)
    run(
        ["extract", "--model", base, "--corpus", corpus, "--out", acts, "--layer", layer]
        + ["--positions-per-doc", 1000, "--min-position", 0, "--max-length", 512, "--dtype", "float32"]
    )
    table = pq.read_table(acts)
    return table.column("position").to_pylist(), torch.tensor(table.column("vector").to_pylist())


def explain_and_round_trip(
    av: Path, ar: Path, vectors: Path, root: Path, *common
) -> tuple[list[dict], list[dict]]:
    """The JSON lines of `hubkit explain` and of `hubkit round-trip` on `vectors`."""
    explained, trip = root / "explained.jsonl", root / "trip.jsonl"
    run(["explain", av, "--vectors", vectors, "--out", explained, *common])
    run(["round-trip", "--av", av, "--ar", ar, "--vectors", vectors, "--out", trip, *common])
    lines = [[json.loads(x) for x in p.read_text().splitlines()] for p in (explained, trip)]
    return lines[0], lines[1]
