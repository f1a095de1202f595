"""An eval on a training split is never recorded as held-out: checkpoints' metas, runs and sidecars are consulted."""

import json

import pytest

from hubkit import heads
from hubkit.checkpoint import write_checkpoint
from hubkit.errors import DataError
from hubkit.eval.generation import Generation
from hubkit.eval.overlap import check_overlap
from hubkit.eval.pair_eval import evaluate_pair
from hubkit.eval.report import read_eval_json
from hubkit.eval.table import EvalTable
from hubkit.eval.trained_on import RUN_RECIPE_FILE, from_halves
from hubkit.meta import Training
from hubkit.provenance import sha256_file
from hubkit.train.recipe import recipe_from_dict

from .conftest import D, write_table

FAST = ["--max-new-tokens", "4", "--n-boot", "100"]


def _docs(n):
    return [f"doc{i // 2}" for i in range(n)]  # two rows per document, as write_table does


@pytest.fixture
def split(tmp_path, vectors):
    """av_sft.parquet (docs 0-5) and eval.parquet (docs 10-15, plus doc5 in the `leaky` table)."""
    built = tmp_path / "built"
    av_sft = write_table(built / "av_sft.parquet", vectors)
    held_out = write_table(built / "eval.parquet", vectors, doc_ids=[f"doc{10 + i // 2}" for i in range(12)])
    leaky = write_table(
        built / "leaky.parquet", vectors, doc_ids=["doc5"] * 2 + [f"doc{20 + i}" for i in range(10)]
    )
    return av_sft, held_out, leaky


def _run(root, tiny, metas, stage, data, **section):
    """A run folder as `hubkit train` leaves it: the recipe copy and one checkpoint whose meta records the data."""
    av_meta, ar_meta = metas
    section_name = {"av_sft": "av", "ar_sft": "ar", "grpo": "grpo"}[stage]
    recipe = recipe_from_dict(
        {
            "base_model": "tiny",
            "layer": 1,
            "output_dir": str(root.parent),
            section_name: {"data": str(data), **section},
        }
    )
    recipe.save(root / RUN_RECIPE_FILE)
    training = Training(stage=stage, step=10, data_sha256=sha256_file(data))
    meta = (ar_meta if stage == "ar_sft" else av_meta).with_updates(training=training)
    head = heads.identity_head(D) if stage == "ar_sft" else None
    return write_checkpoint(root / "step_000010", tiny.model, tiny.tokenizer, meta, head=head)


def test_recipe_copy_name_is_the_trainers():
    from hubkit.train.loop import RECIPE_COPY

    assert RUN_RECIPE_FILE == RECIPE_COPY


def test_eval_on_the_av_training_table_is_refused_without_train_table(tmp_path, tiny, metas, split):
    av_sft, held_out, _ = split
    runs = tmp_path / "runs"
    av = _run(runs / "av", tiny, metas, "av_sft", av_sft)
    ar = write_checkpoint(
        runs / "ar_plain", tiny.model, tiny.tokenizer, metas[1], head=heads.identity_head(D)
    )
    from click.testing import CliRunner

    from hubkit.cli import main

    res = CliRunner().invoke(
        main,
        [
            "eval",
            "--av",
            str(av),
            "--ar",
            str(ar),
            "--table",
            str(av_sft),
            "--out",
            str(tmp_path / "o"),
            *FAST,
        ],
    )
    assert res.exit_code != 0 and "6 of its 6 documents (12 rows) are training documents" in res.output
    assert "checkpoint av (av_sft)" in res.output and not (tmp_path / "o" / "eval.json").exists()
    # forced, it is recorded as overlapping, never as held-out with n_overlap_docs 0
    res = CliRunner().invoke(
        main,
        [
            "eval",
            "--av",
            str(av),
            "--ar",
            str(ar),
            "--table",
            str(av_sft),
            "--out",
            str(tmp_path / "f"),
            "--force-overlap",
            *FAST,
        ],
    )
    assert res.exit_code == 0, res.output
    ov = read_eval_json(tmp_path / "f")["overlap"]
    assert ov["checked"] and ov["forced"] and ov["n_overlap_docs"] == 6 and ov["n_overlap_rows"] == 12
    assert ov["doc_level"] and any(
        s.get("checkpoint") == "av" and s["stage"] == "av_sft" for s in ov["sources"]
    )
    # the held-out table passes, compared document by document with the training table the run names
    res = CliRunner().invoke(
        main,
        [
            "eval",
            "--av",
            str(av),
            "--ar",
            str(ar),
            "--table",
            str(held_out),
            "--out",
            str(tmp_path / "h"),
            *FAST,
        ],
    )
    assert res.exit_code == 0, res.output
    ov = read_eval_json(tmp_path / "h")["overlap"]
    assert ov["checked"] and ov["n_overlap_docs"] == 0 and ov["doc_level"] and ov["n_train_docs"] == 6
    assert {
        "checkpoint": "av",
        "stage": "av_sft",
        "data_sha256": sha256_file(av_sft),
        "path": str(av_sft),
        "n_docs": 6,
    } in ov["sources"]


def test_documents_shared_with_the_run_table_are_found(tmp_path, tiny, metas, split, tiny_pair):
    av_sft, _, leaky = split
    av = _run(tmp_path / "runs" / "av", tiny, metas, "av_sft", av_sft)
    with pytest.raises(DataError, match=r"1 of its 11 documents \(2 rows\) are training documents"):
        evaluate_pair(
            tiny_pair, leaky, checkpoints={"av": av}, generation=Generation(max_new_tokens=4), n_boot=50
        )


def test_grpo_checkpoint_leads_to_the_sft_table_it_started_from(tmp_path, tiny, metas, split):
    av_sft, _, _ = split
    rl = write_table(
        tmp_path / "built" / "rl.parquet",
        EvalTable.read(av_sft).vectors.numpy(),
        doc_ids=[f"r{i}" for i in range(12)],
    )
    sft = _run(tmp_path / "runs" / "av", tiny, metas, "av_sft", av_sft)
    grpo = _run(tmp_path / "runs" / "grpo", tiny, metas, "grpo", rl, av_init=str(sft))
    got = from_halves({"av": grpo})
    assert [(r.checkpoint, r.stage, r.data_path) for r in got] == [
        ("av", "grpo", str(rl)),
        ("av < step_000010", "av_sft", str(av_sft)),
    ]
    with pytest.raises(DataError, match="training documents"):
        check_overlap(EvalTable.read(av_sft), trained=got)


def test_changed_training_table_is_compared_by_hash_only(tmp_path, tiny, metas, split, caplog):
    av_sft, held_out, _ = split
    av = _run(tmp_path / "runs" / "av", tiny, metas, "av_sft", av_sft)
    av_sft.write_bytes(av_sft.read_bytes() + b"\0")  # edited after training
    got = from_halves({"av": av})
    assert got[0].data_path is None and "changed since training" in caplog.text
    ov = check_overlap(EvalTable.read(held_out), trained=got)
    assert ov.checked and not ov.doc_level and ov.sources[0]["matched"] is None


def test_sidecar_of_a_training_split_marks_its_own_documents(tmp_path, vectors):
    path = write_table(tmp_path / "av_sft.parquet", vectors)
    split = {
        "name": "av_sft",
        "fractions": {},
        "seed": 0,
        "doc_ids": {"av_sft": _docs(12)[::2], "eval": ["e1"]},
    }
    side = {
        "schema": "hubkit.dataset/1",
        "table": "av_sft",
        "split": split,
        "extraction": {"base_model": "tiny", "layer": 1, "d_model": D},
    }
    path.with_name("av_sft.parquet.json").write_text(json.dumps(side))
    with pytest.raises(DataError, match=r"6 of its 6 documents \(12 rows\) are training documents"):
        check_overlap(EvalTable.read(path))
    ov = check_overlap(EvalTable.read(path), force=True)
    assert [s["key"] for s in ov.sources] == ["split.doc_ids.av_sft"] and ov.n_overlap_docs == 6
