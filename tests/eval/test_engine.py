"""`hubkit eval --engine`: an eval whose AV generates on a remote engine (a server speaking vLLM's
completions protocol, generating with transformers from the prompt embeddings it is sent) gives the
same rows and figures as the in-process transformers path, and records the engine."""

from __future__ import annotations

from dataclasses import replace

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from engines.embeds_server import EmbedsServer  # tests/engines, on the path as a test package

from hubkit import engines, heads
from hubkit.checkpoint import write_checkpoint
from hubkit.cli.eval import eval_command
from hubkit.eval.generation import Generation
from hubkit.eval.pair_eval import evaluate_pair
from hubkit.eval.report import read_eval_json

from .conftest import D, write_table


@pytest.fixture
def server(tiny):
    with EmbedsServer(tiny.model, tiny.tokenizer.eos_token_id) as s:
        yield s
    engines.close_engines()


def rows_of(out):
    return pq.read_table(out / "rows.parquet").to_pandas()


def test_eval_on_a_remote_engine_equals_transformers(tmp_path, tiny_pair, vectors, server):
    table = write_table(tmp_path / "eval.parquet", vectors)
    gen = Generation(seed=1, max_new_tokens=6, batch_size=5)
    evaluate_pair(tiny_pair, table, out_dir=tmp_path / "tf", generation=gen, n_boot=200)
    evaluate_pair(
        tiny_pair, table, out_dir=tmp_path / "remote", generation=replace(gen, engine=server.url), n_boot=200
    )
    a, b = rows_of(tmp_path / "tf"), rows_of(tmp_path / "remote")
    assert list(a["explanation"]) == list(b["explanation"]) and list(a["status"]) == list(b["status"])
    assert list(a["cos"]) == pytest.approx(list(b["cos"]), abs=1e-6)
    assert sum(len(r["prompt_embeds"]) for r in server.requests) == len(vectors)
    got, ref = read_eval_json(tmp_path / "remote"), read_eval_json(tmp_path / "tf")
    assert got["generation"]["engine"] == server.url and ref["generation"]["engine"] == "transformers"
    assert got["generation"]["engine_resolved"] == server.url
    assert ref["generation"]["engine_resolved"] == "transformers"
    assert got["figures"]["round_trip"]["all"]["cos"]["mean"] == pytest.approx(
        ref["figures"]["round_trip"]["all"]["cos"]["mean"], abs=1e-6
    )


def test_cli_engine_option(tmp_path, tiny, metas, vectors, server):
    av = write_checkpoint(tmp_path / "av", tiny.model, tiny.tokenizer, metas[0])
    ar = write_checkpoint(tmp_path / "ar", tiny.model, tiny.tokenizer, metas[1], head=heads.identity_head(D))
    table = write_table(tmp_path / "eval.parquet", vectors)
    outs = {}
    for name, engine in (("tf", "transformers"), ("remote", server.url)):
        outs[name] = tmp_path / name
        args = ["--av", av, "--ar", ar, "--table", table, "--out", outs[name], "--engine", engine]
        res = CliRunner().invoke(eval_command, [*map(str, args), "--max-new-tokens", "4", "--n-boot", "100"])
        assert res.exit_code == 0, res.output
    assert list(rows_of(outs["tf"])["explanation"]) == list(rows_of(outs["remote"])["explanation"])
    assert len(server.requests) > 0 and read_eval_json(outs["remote"])["generation"]["engine"] == server.url
    bad = CliRunner().invoke(
        eval_command, ["--av", str(av), "--ar", str(ar), "--table", str(table), "--engine", "sglang"]
    )
    assert bad.exit_code == 2 and "unknown engine 'sglang'" in bad.output and "Loading" not in bad.output


def test_auto_records_the_engine_it_chose(tmp_path, tiny_pair, vectors, monkeypatch):
    monkeypatch.setattr("hubkit.engines.vllm_installed", lambda: False)
    table = write_table(tmp_path / "eval.parquet", vectors)
    evaluate_pair(
        tiny_pair,
        table,
        out_dir=tmp_path / "o",
        generation=Generation(engine="auto", max_new_tokens=4),
        n_boot=100,
    )
    gen = read_eval_json(tmp_path / "o")["generation"]
    assert gen["engine"] == "auto" and gen["engine_resolved"] == "transformers"
