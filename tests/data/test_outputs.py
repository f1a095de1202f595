"""Stages never replace a table hubkit did not write (unless --overwrite), refuse unusable output paths
before any work, and still resume or redo their own unfinished output."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from hubkit.data import chunks
from hubkit.data.extract import ExtractConfig, extract
from hubkit.data.outputs import check_path, has_mark, written_by_hubkit
from hubkit.data.sidecar import read_sidecar, sidecar_path
from hubkit.data.split import split_table
from hubkit.errors import DataError

CONFIG = ExtractConfig(layer=1, positions_per_doc=2, min_position=2, max_length=32)
FRACTIONS = {"av_sft": 0.25, "ar_sft": 0.25, "rl": 0.25, "eval": 0.25}


def _user_table(path):
    pq.write_table(pa.table({"mine": [1, 2, 3]}), path)
    return path.read_bytes()


@pytest.fixture
def act(tmp_path, tiny, small_corpus):
    return extract(
        small_corpus.head(4), tiny.model, tiny.tokenizer, tmp_path / "act.parquet", CONFIG, base_model="t"
    )


def test_extract_refuses_a_users_file_and_replaces_it_only_with_overwrite(tmp_path, tiny, small_corpus):
    out = tmp_path / "mine.parquet"
    before = _user_table(out)
    with pytest.raises(DataError, match=rf"{out}: exists and hubkit did not write it .* pass --overwrite"):
        extract(small_corpus.head(2), tiny.model, tiny.tokenizer, out, CONFIG, base_model="t")
    assert out.read_bytes() == before and not sidecar_path(out).exists()
    assert not chunks.parts_dir(out).exists()
    extract(small_corpus.head(2), tiny.model, tiny.tokenizer, out, CONFIG, base_model="t", overwrite=True)
    assert read_sidecar(out).rows == 4 and written_by_hubkit(out)


def test_a_users_file_with_a_stale_hubkit_sidecar_is_still_the_users(tmp_path, act):
    """The sidecar records the sha256 of what hubkit wrote; a file replaced since is not hubkit's."""
    _user_table(act)
    assert not written_by_hubkit(act)
    with pytest.raises(DataError, match="hubkit did not write it"):
        chunks.prepare_output(act, {"stage": "extract"})


def test_rerunning_hubkit_output_is_a_no_op_and_other_settings_are_refused(tmp_path, tiny, small_corpus, act):
    sha = read_sidecar(act).files
    again = extract(small_corpus.head(4), tiny.model, tiny.tokenizer, act, CONFIG, base_model="t")
    assert again == act and read_sidecar(act).files == sha
    with pytest.raises(DataError, match="made with different settings"):
        extract(small_corpus.head(3), tiny.model, tiny.tokenizer, act, CONFIG, base_model="t")


def test_a_table_merged_before_its_sidecar_was_written_is_redone(tmp_path, tiny, small_corpus, act):
    """A kill between the merge and the sidecar leaves hubkit's marked table alone: it is written again."""
    reference = pq.read_table(act)
    sidecar_path(act).unlink()
    assert has_mark(act) and written_by_hubkit(act)
    extract(small_corpus.head(4), tiny.model, tiny.tokenizer, act, CONFIG, base_model="t")
    assert read_sidecar(act).rows == reference.num_rows
    assert pq.read_table(act).equals(reference)


def test_split_and_build_refuse_users_files_before_writing_anything(tmp_path, act):
    out = tmp_path / "splits"
    out.mkdir()
    before = _user_table(out / "rl.parquet")
    with pytest.raises(DataError, match=r"rl.parquet: exists and hubkit did not write it"):
        split_table(act, out, FRACTIONS)
    assert sorted(p.name for p in out.iterdir()) == ["rl.parquet"]
    assert (out / "rl.parquet").read_bytes() == before
    paths = split_table(act, out, FRACTIONS, overwrite=True)
    assert all(written_by_hubkit(p) for p in paths.values())
    assert split_table(act, out, FRACTIONS).keys() == paths.keys()  # hubkit's own tables are replaced

    from hubkit.data.build import build_tables

    built = tmp_path / "built"
    built.mkdir()
    before = _user_table(built / "rl.parquet")
    with pytest.raises(DataError, match=r"built/rl.parquet: exists and hubkit did not write it"):
        build_tables(built, {"rl": paths["rl"]})
    assert (built / "rl.parquet").read_bytes() == before
    assert build_tables(built, {"rl": paths["rl"]}, overwrite=True)["rl"] == built / "rl.parquet"
    assert written_by_hubkit(built / "rl.parquet")


def test_unusable_output_paths_are_one_line_errors(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(DataError, match=rf"{a_file} is a file, not a folder"):
        check_path(a_file / "t.parquet")
    with pytest.raises(DataError, match="under a system folder"):
        check_path("/proc/hubkit/t.parquet")
    with pytest.raises(DataError, match=r"is 308 bytes; this file system allows 255"):
        check_path(tmp_path / ("n" * 300 + ".parquet"))
    with pytest.raises(DataError, match=r"is 250 bytes; .*adds up to 9"):
        check_path(tmp_path / ("n" * 242 + ".parquet"))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["split", "--in", "{act}", "--out", "{file}/s"], "is a file, not a folder"),
        (["split", "--in", "{act}", "--out", "/proc/x"], "under a system folder"),
        (["split", "--in", "{act}", "--out", "{user_dir}"], "exists and hubkit did not write it"),
        (
            ["build", "--splits", "{tmp}", "--labeled", "{tmp}", "--out", "{tmp}/b"],
            "missing; label the av_sft",
        ),
        (["extract", "--out", "{user}", "--model", "{tiny_dir}"], "exists and hubkit did not write it"),
        (["extract", "--out", "{tmp}/{long}", "--model", "{tiny_dir}"], "this file system allows 255"),
        (
            ["extract", "--out", "{tmp}/a.parquet", "--model", "{tiny_dir}", "--corpus", "{binary}"],
            "a binary file",
        ),
        (
            ["extract", "--out", "{tmp}/a.parquet", "--model", "{tiny_dir}", "--corpus", "{latin1}"],
            "not UTF-8",
        ),
        (
            ["extract", "--out", "{tmp}/a.parquet", "--model", "{tiny_dir}", "--corpus", "{badjson}"],
            "not valid JSON",
        ),
        (
            ["extract", "--out", "{tmp}/a.parquet", "--model", "{tiny_dir}", "--corpus", "{badpq}"],
            "not a readable parquet",
        ),
    ],
)
def test_cli_bad_outputs_and_inputs_exit_non_zero_in_one_line(tmp_path, act, tiny_dir, args, expected):
    from hubkit.cli import main

    (tmp_path / "file").write_text("x")
    (tmp_path / "userdir").mkdir()
    _user_table(tmp_path / "userdir" / "eval.parquet")
    _user_table(tmp_path / "user.parquet")
    (tmp_path / "bin.txt").write_bytes(b"text\x00\x01\x02binary")
    (tmp_path / "l1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (tmp_path / "bad.json").write_text('[{"text": "a"')
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    names = dict(
        act=act,
        file=tmp_path / "file",
        user_dir=tmp_path / "userdir",
        tmp=tmp_path,
        user=tmp_path / "user.parquet",
        tiny_dir=tiny_dir,
        long="n" * 300 + ".parquet",
        binary=tmp_path / "bin.txt",
        latin1=tmp_path / "l1.txt",
        badjson=tmp_path / "bad.json",
        badpq=tmp_path / "bad.parquet",
    )
    before = sorted(p.name for p in tmp_path.rglob("*"))
    res = CliRunner().invoke(main, [a.format(**names) for a in args])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert res.output.startswith("error: ") and expected in res.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("flag, expected", [([], "auto"), (["--dtype", "float32"], "float32")])
def test_extract_dtype_defaults_to_auto_and_is_recorded(tmp_path, tiny_dir, flag, expected):
    from hubkit.cli import main
    from hubkit.precision import resolve_dtype_name

    out = tmp_path / "a.parquet"
    args = [
        "extract",
        "--out",
        str(out),
        "--model",
        str(tiny_dir),
        "--limit-docs",
        "2",
        "--min-position",
        "2",
    ]
    res = CliRunner().invoke(main, args + flag)
    assert res.exit_code == 0, res.output
    assert read_sidecar(out).extraction.dtype == resolve_dtype_name(expected, "cpu")
