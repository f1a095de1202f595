"""The four stage commands end to end through click, on a tiny model folder and a loopback labeler."""

from __future__ import annotations

import click
import pyarrow.parquet as pq
from click.testing import CliRunner

from hubkit.cli.data import COMMANDS as DATA_COMMANDS
from hubkit.data.sidecar import read_sidecar
from hubkit.errors import DataError

CLI = click.Group("hubkit", commands={c.name: c for c in DATA_COMMANDS})


def run(*args: str):
    return CliRunner().invoke(CLI, [str(a) for a in args], catch_exceptions=True)


def test_extract_split_label_build(tmp_path, tiny_dir, chat_server):
    act = tmp_path / "act.parquet"
    res = run(
        "extract",
        "--out",
        act,
        "--model",
        tiny_dir,
        "--limit-docs",
        8,
        "--positions-per-doc",
        2,
        "--min-position",
        2,
        "--docs-per-chunk",
        3,
    )
    assert res.exit_code == 0, res.output
    side = read_sidecar(act)
    assert side.extraction.layer == 2  # two thirds of 3 blocks
    assert side.rows == 16 and f"wrote 16 rows (layer 2) to {act}" in res.output

    res = run(
        "split",
        "--in",
        act,
        "--out",
        tmp_path / "splits",
        "--fractions",
        "av_sft=0.25,ar_sft=0.25,rl=0.25,eval=0.25",
    )
    assert res.exit_code == 0, res.output
    for name in ("av_sft", "ar_sft", "rl", "eval"):
        assert f"{name}: 4 rows, 2 documents" in res.output

    for name in ("av_sft", "ar_sft"):
        res = run(
            "label",
            "--in",
            tmp_path / "splits" / f"{name}.parquet",
            "--out",
            tmp_path / "labeled" / f"{name}.parquet",
            "--backend",
            "openai",
            "--model",
            "m",
            "--base-url",
            chat_server.base_url,
            "--cache",
            tmp_path / "cache.sqlite",
            "--rows-per-chunk",
            3,
        )
        assert res.exit_code == 0, res.output
        assert "'ok':" in res.output
    assert read_sidecar(tmp_path / "labeled" / "av_sft.parquet").labeling.labeler == "openai:m"

    res = run(
        "build",
        "--splits",
        tmp_path / "splits",
        "--labeled",
        tmp_path / "labeled",
        "--out",
        tmp_path / "built",
    )
    assert res.exit_code == 0, res.output
    for name in ("av_sft", "ar_sft", "rl", "eval"):
        assert f"{name}: 4 rows" in res.output
        assert pq.ParquetFile(tmp_path / "built" / f"{name}.parquet").metadata.num_rows == 4
    assert (
        pq.read_table(tmp_path / "built" / "av_sft.parquet")
        .column("explanation")[0]
        .as_py()
        .startswith("<explanation>about")
    )


def test_bad_input_is_reported(tmp_path, tiny_dir, chat_server):
    res = run(
        "extract", "--out", tmp_path / "a.parquet", "--model", tiny_dir, "--layer", 7, "--limit-docs", 2
    )
    assert isinstance(res.exception, DataError) and "layer 7 is beyond" in str(res.exception)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    res = run("extract", "--out", tmp_path / "a.parquet", "--model", tiny_dir, "--corpus", empty)
    assert isinstance(res.exception, DataError) and "no documents" in str(res.exception)
    res = run("label", "--in", empty, "--out", tmp_path / "l.parquet", "--backend", "openai", "--model", "m")
    assert res.exit_code == 2 and "needs --model and --base-url" in res.output
    res = run("split", "--in", empty, "--out", tmp_path / "s", "--fractions", "av_sft=2")
    assert isinstance(res.exception, DataError) and "in [0, 1]" in str(res.exception)
