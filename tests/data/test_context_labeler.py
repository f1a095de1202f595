"""The model-free `context:<n>` labeler: its quotes, its provenance in a labeled table, and the CLI choice."""

from __future__ import annotations

import hashlib

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from hubkit.data.extract import ExtractConfig, extract
from hubkit.data.label import NO_AUDITOR, label_rows, label_table
from hubkit.data.labeler_registry import (
    LABELER_BACKENDS,
    LabelerBackend,
    LabelerOptions,
    check_choice,
    make_labeler,
    make_pair,
    parse_choice,
)
from hubkit.data.labelers import ContextLabeler, DirectLabeler, mark_token, quote_context
from hubkit.data.sidecar import read_sidecar
from hubkit.errors import DataError
from hubkit.registry import RegistryError


def test_the_current_token_is_marked_where_it_ends_the_prefix():
    assert mark_token("They had lunch at the village", " village") == "They had lunch at the [village]"
    assert mark_token("the vill\nage", "age") == "the vill [age]"  # whitespace collapsed, piece marked
    assert mark_token("It was a villa", "a") == "It was a vill[a]"  # a word piece: only the piece
    assert mark_token("Ends with a dot.", ".") == "Ends with a dot[.]"
    # a token the prefix does not end with (a partial character) marks the last word
    assert mark_token("caf\u00e9 ol\u00e9", "\ufffd") == "caf\u00e9 [ol\u00e9]"


def test_quote_keeps_the_last_n_words_and_says_when_it_cut():
    prefix = " ".join(f"w{i}" for i in range(1, 21))
    assert quote_context(prefix, " w20", 3) == "... w18 w19 [w20]"
    assert quote_context("a b c", " c", 3) == "a b [c]"
    assert quote_context("a b c", " c", 10) == "a b [c]"
    lab = ContextLabeler(3)
    assert lab.explain(prefix, " w20") == 'The text ends with: "... w18 w19 [w20]"'
    assert lab.name == "context:3"
    assert isinstance(lab, DirectLabeler)
    rule = "\0".join(("context:3", 'The text ends with: "{quote}"', "[", "]", "..."))
    assert lab.prompt_sha256 == hashlib.sha256(rule.encode()).hexdigest()
    assert ContextLabeler(4).prompt_sha256 != lab.prompt_sha256
    with pytest.raises(DataError, match="between 1 and"):
        ContextLabeler(0)


def test_label_rows_with_a_direct_labeler_needs_no_model_and_no_auditor():
    items = [("The cat sat on the mat", " mat"), ("", "")]
    labels = label_rows(items, ContextLabeler(2))
    assert labels[0].explanation == 'The text ends with: "... the [mat]"'
    assert (labels[0].status, labels[0].labeler, labels[0].auditor) == ("ok", "context:2", NO_AUDITOR)
    assert labels[1].explanation == 'The text ends with: ""' and labels[1].status == "ok"

    class Other:
        name = "x"

        def chat(self, conversations):
            return []

    with pytest.raises(DataError, match="takes no auditor"):
        label_rows(items, ContextLabeler(2), Other())


def test_label_table_records_context_provenance(tmp_path, tiny, small_corpus):
    act = extract(
        small_corpus.head(3),
        tiny.model,
        tiny.tokenizer,
        tmp_path / "act.parquet",
        ExtractConfig(layer=1, positions_per_doc=2, min_position=4),
        base_model="tiny",
    )
    lab = ContextLabeler(5)
    out = label_table(act, tmp_path / "lab.parquet", lab, rows_per_chunk=4)
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 6
    for r in rows:
        # an independent reading of the rule: the prefix's last five words, the final token bracketed
        words = r["prefix"].split()
        tok = r["token"].strip()
        assert r["explanation"].startswith('The text ends with: "')
        quote = r["explanation"][len('The text ends with: "') : -1]
        assert quote.endswith(f"[{tok}]") and len(quote.replace("... ", "").split()) == min(5, len(words))
        assert quote.replace("[", "").replace("]", "").split()[-1] == words[-1]
        assert (r["labeler"], r["auditor"], r["prompt_sha256"], r["label_status"]) == (
            "context:5",
            "none",
            lab.prompt_sha256,
            "ok",
        )
    side = read_sidecar(out)
    assert side.labeling.labeler == "context:5" and side.labeling.auditor == "none"
    assert side.labeling.status_counts == {"ok": 6}


def test_the_registry_is_what_the_cli_offers():
    assert {"transformers", "openai", "context"} <= set(LABELER_BACKENDS)
    backend, arg = parse_choice("context:12")
    assert backend.name == "context" and arg == "12"
    assert make_labeler("context").name == "context:10"
    assert make_labeler("context:12").name == "context:12"
    labeler, auditor = make_pair("context:3", LabelerOptions())
    assert labeler.name == "context:3" and auditor is None
    with pytest.raises(
        DataError, match=r"unknown backend; choose one of \['context', 'openai', 'transformers'"
    ):
        parse_choice("gpt")
    with pytest.raises(DataError, match="takes no ':' argument"):
        parse_choice("openai:m")
    with pytest.raises(DataError, match="expected a word count"):
        make_labeler("context:ten")
    with pytest.raises(DataError, match="between 1 and"):
        check_choice("context:0")
    check_choice("transformers")  # nothing is loaded to check a choice
    with pytest.raises(RegistryError, match="already registered"):
        LABELER_BACKENDS.add(
            "context", LabelerBackend("context", "again", audited=False, make=lambda a, o: ContextLabeler())
        )
    with pytest.raises(ValueError, match="must not contain ':'"):
        LabelerBackend("a:b", "bad", audited=False, make=lambda a, o: ContextLabeler())


def test_cli_labels_with_context(tmp_path, tiny, small_corpus):
    from hubkit.cli import main

    act = extract(
        small_corpus.head(2),
        tiny.model,
        tiny.tokenizer,
        tmp_path / "act.parquet",
        ExtractConfig(layer=1, positions_per_doc=2, min_position=4),
        base_model="tiny",
    )
    res = CliRunner().invoke(
        main, ["label", "--in", str(act), "--out", str(tmp_path / "l.parquet"), "--labeler", "context:4"]
    )
    assert res.exit_code == 0, res.output
    assert set(pq.read_table(tmp_path / "l.parquet").column("labeler").to_pylist()) == {"context:4"}
    bad = CliRunner().invoke(
        main, ["label", "--in", str(act), "--out", str(tmp_path / "m.parquet"), "--labeler", "nope"]
    )
    assert bad.exit_code == 2 and "unknown backend" in bad.output
    audited = CliRunner().invoke(
        main,
        ["label", "--in", str(act), "--out", str(tmp_path / "m.parquet"), "--labeler", "context",
         "--auditor-model", "x"],
    )  # fmt: skip
    assert audited.exit_code == 2 and "writes its labels itself" in audited.output
