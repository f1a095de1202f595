from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing
import sqlite3

import pyarrow.parquet as pq
import pytest

from hubkit.data.extract import ExtractConfig, extract
from hubkit.data.label import (
    AUDITOR_PROMPT,
    LABELER_PROMPT,
    PROMPT_SHA256,
    LabelCache,
    auditor_messages,
    label_rows,
    label_table,
    labeler_messages,
    normalise,
    parse_label,
    wrap,
)
from hubkit.data.labelers import Labeler, LabelerError, OpenAIChatLabeler, TransformersLabeler
from hubkit.data.sidecar import read_sidecar
from hubkit.data.tables import LABEL_COLUMNS
from hubkit.errors import DataError
from hubkit.provenance import sha256_file

from .chat_server import reference_reply


def test_parse_and_normalise():
    raw = "Sure!\n<explanation>\n1. A story about rain\n- the token ' over'  ends a verb phrase\n\n</explanation> bye"
    assert parse_label(raw) == "A story about rain\nthe token ' over' ends a verb phrase"
    assert parse_label("<explanation>cut off mid") == "cut off mid"  # ran out of tokens: keep what is there
    assert parse_label("no tags at all") == ""
    assert parse_label("<explanation>  </explanation>") == ""
    assert normalise("a <draft>b</draft>\x13 c\ufffd") == "a b c"
    assert wrap("x\ny") == "<explanation>x\ny</explanation>"


def test_prompts_and_hash():
    assert PROMPT_SHA256 == hashlib.sha256((LABELER_PROMPT + "\0" + AUDITOR_PROMPT).encode()).hexdigest()
    msg = labeler_messages("The cat sat", " sat")[0]["content"]
    assert "<text>The cat sat</text>" in msg and 'The final token is: " sat"' in msg
    audit = auditor_messages("The cat sat", " sat", "draft line")[0]["content"]
    assert "<draft>draft line</draft>" in audit


class Scripted:
    """A labeler whose replies are given per prompt kind; counts the conversations it is asked."""

    def __init__(self, name: str, draft: str, audit: str) -> None:
        self.name, self.draft, self.audit, self.asked = name, draft, audit, []

    def chat(self, conversations):
        self.asked += conversations
        return [self.audit if "<draft>" in c[-1]["content"] else self.draft for c in conversations]


def test_statuses_labeler_then_auditor(tmp_path):
    items = [("The cat sat", " sat")]
    ok = label_rows(items, Scripted("a", "<explanation>d</explanation>", "<explanation>e</explanation>"))[0]
    assert (ok.explanation, ok.status) == ("e", "ok")
    unaudited = label_rows(items, Scripted("a", "<explanation>d</explanation>", "I agree."))[0]
    assert (unaudited.explanation, unaudited.status) == ("d", "unaudited")
    lab = Scripted("a", "nothing useful", "<explanation>e</explanation>")
    failed = label_rows(items, lab)[0]
    assert (failed.explanation, failed.status) == ("", "failed")
    assert len(lab.asked) == 1  # no audit without a draft
    assert isinstance(lab, Labeler)
    lab.chat = lambda conversations: []
    with pytest.raises(LabelerError, match="answered 0 of 1 conversations"):
        label_rows(items, lab)


def test_cache_reuses_labels_by_text_and_models_and_skips_failures(tmp_path, chat_server):
    cache = LabelCache(tmp_path / "c.sqlite")
    labeler = OpenAIChatLabeler(chat_server.base_url, "m")
    items = [("The cat sat", " sat"), ("A dog ran", " ran"), ("The cat sat", " sat")]
    first = label_rows(items, labeler, cache=cache)
    assert [lb.explanation for lb in first] == ['about " sat"\nchecked', 'about " ran"\nchecked'] + [
        'about " sat"\nchecked'
    ]
    assert len(chat_server.requests) == 4  # 2 distinct texts × (labeler + auditor)
    assert len(cache) == 2
    again = label_rows(items, labeler, cache=LabelCache(tmp_path / "c.sqlite"))
    assert again == first and len(chat_server.requests) == 4  # reused across cache instances
    other = OpenAIChatLabeler(chat_server.base_url, "other-model")
    label_rows(items[:1], other, cache=cache)
    assert len(chat_server.requests) == 6  # another labeler is another key
    failing = Scripted("f", "no tags", "")
    label_rows([("x y z", " z")], failing, cache=cache)
    label_rows([("x y z", " z")], failing, cache=cache)
    assert len(failing.asked) == 2  # failures are not cached: tried again


def _open_cache_at_once(path, barrier, results) -> None:
    barrier.wait()
    try:
        LabelCache(path).close()
        results.put("ok")
    except DataError as exc:
        results.put(str(exc))


def test_processes_opening_a_new_cache_together_all_get_it(tmp_path):
    """Two label runs (two ranks of a torchrun, or two runs on the default cache) start at the same moment:
    turning a new file to WAL from both at once used to fail one of them with "database is locked"."""
    ctx = multiprocessing.get_context("fork")
    outcomes = []
    for trial in range(20):
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [
            ctx.Process(target=_open_cache_at_once, args=(tmp_path / f"{trial}.sqlite", barrier, results))
            for _ in range(2)
        ]
        for proc in procs:
            proc.start()
        outcomes += [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join()
    assert outcomes == ["ok"] * 40
    with sqlite3.connect(tmp_path / "0.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_label_table_adds_provenance_and_a_sidecar(tmp_path, tiny, small_corpus, chat_server):
    act = extract(
        small_corpus.head(3),
        tiny.model,
        tiny.tokenizer,
        tmp_path / "act.parquet",
        ExtractConfig(layer=1, positions_per_doc=2, min_position=2),
        base_model="tiny",
    )
    labeler = OpenAIChatLabeler(chat_server.base_url, "lab")
    auditor = OpenAIChatLabeler(chat_server.base_url, "aud")
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    out = label_table(act, tmp_path / "lab.parquet", labeler, auditor, rows_per_chunk=4)
    table, source = pq.read_table(out), pq.read_table(act)
    assert table.column_names == source.column_names + list(LABEL_COLUMNS)
    assert table.select(source.column_names).equals(source)
    for token, row in zip(source.column("token").to_pylist(), table.select(list(LABEL_COLUMNS)).to_pylist()):
        assert row["explanation"] == f'about "{token}"\nchecked'
        assert (row["labeler"], row["auditor"], row["prompt_sha256"], row["label_status"]) == (
            "openai:lab",
            "openai:aud",
            PROMPT_SHA256,
            "ok",
        )
        assert dt.datetime.fromisoformat(row["labeled_at"]) >= before
    models = {r["body"]["model"] for r in chat_server.requests}
    assert models == {"lab", "aud"}
    side = read_sidecar(out)
    assert side.table == "labeled" and side.rows == 6 and side.explanation_format == "plain"
    assert side.labeling.status_counts == {"ok": 6} and side.labeling.auditor == "openai:aud"
    assert side.parents == {"act.parquet": sha256_file(act)}
    assert side.extraction == read_sidecar(act).extraction


def test_transformers_labeler_generates_with_the_chat_template(tiny):
    labeler = TransformersLabeler(tiny.model, tiny.tokenizer, "tiny", max_new_tokens=5, batch_size=2)
    convs = [
        labeler_messages(p, t) for p, t in [("The cat sat", " sat"), ("A much longer text here", " here")]
    ]
    prompt = labeler.render(convs[0])
    assert prompt.startswith(tiny.tokenizer.bos_token + "<|user|>") and prompt.endswith(
        "<|assistant|>\n<explanation>"
    )
    replies = labeler.chat(convs + convs[:1])
    assert len(replies) == 3 and all(r.startswith("<explanation>") for r in replies)
    assert replies[0] == replies[2]  # greedy: the same conversation gives the same reply
    assert tiny.tokenizer.padding_side == "left"  # restored
    # a label from a real (tiny, random) model goes through the same parsing as any other
    label = label_rows([("The cat sat", " sat")], labeler)[0]
    assert label.status in ("ok", "unaudited", "failed") and label.labeler == "tiny"
    assert label.explanation == normalise(label.explanation)


def test_bad_label_inputs(tmp_path, chat_server):
    with pytest.raises(DataError, match="rows_per_chunk"):
        label_table(
            tmp_path / "x.parquet",
            tmp_path / "y.parquet",
            OpenAIChatLabeler(chat_server.base_url, "m"),
            rows_per_chunk=0,
        )
    with pytest.raises(DataError, match="no such table"):
        label_table(
            tmp_path / "x.parquet", tmp_path / "y.parquet", OpenAIChatLabeler(chat_server.base_url, "m")
        )


def test_reference_reply_is_what_the_server_sends(chat_server):
    msgs = labeler_messages("a b", " b")
    assert OpenAIChatLabeler(chat_server.base_url, "m").complete(msgs) == reference_reply(msgs)


class IdsEngine:
    """An engine double answering `generate_from_ids` with transformers greedy generation, one prompt at a
    time (no padding), ids ending before the first stop token, as vLLM's are returned."""

    def __init__(self, model) -> None:
        self.model, self.calls = model, []

    def generate_from_ids(self, prompts, *, max_new_tokens, stop_token_ids=None):
        import torch

        self.calls.append(len(prompts))
        out = []
        for ids in prompts:
            with torch.no_grad():
                seq = self.model.generate(
                    input_ids=torch.tensor([ids]),
                    attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=stop_token_ids,
                    pad_token_id=stop_token_ids[0],
                )[0, len(ids) :].tolist()
            out.append(seq[: next((i for i, t in enumerate(seq) if t in stop_token_ids), len(seq))])
        return out


def test_vllm_labeler_sends_the_transformers_labelers_prompts(tiny):
    """The same rendered prompt, greedy, the reply primed and cut after the closing tag: with n-gram
    blocking off, the transformers labeler's replies (cut the same way) are the vLLM labeler's."""
    from hubkit.data.labelers import VLLMLabeler, cut_after

    convs = [
        labeler_messages(p, t) for p, t in [("The cat sat", " sat"), ("A much longer text here", " here")]
    ]
    ref = TransformersLabeler(tiny.model, tiny.tokenizer, "tiny", max_new_tokens=12, no_repeat_ngram_size=0)
    engine = IdsEngine(tiny.model)
    lab = VLLMLabeler(engine, tiny.tokenizer, "vllm:tiny", max_new_tokens=12)
    assert lab.render(convs[0]) == ref.render(convs[0])
    assert lab.chat(convs) == [cut_after(r, "</explanation>") for r in ref.chat(convs)]
    assert engine.calls == [2]  # one call: vLLM batches the prompts itself
    assert cut_after("<explanation>a</explanation> more", "</explanation>") == "<explanation>a</explanation>"
    assert cut_after("no tag", "</explanation>") == "no tag" and cut_after("x", None) == "x"


def test_vllm_labeler_without_vllm_is_one_line(monkeypatch):
    from hubkit.data.labeler_registry import make_labeler

    monkeypatch.setattr("hubkit.engines.vllm_installed", lambda: False)
    with pytest.raises(DataError, match=r"labeler vllm: vLLM is not installed; install it with") as err:
        make_labeler("vllm")
    assert "\n" not in str(err.value)
