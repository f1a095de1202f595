"""eval.json's typed sections: the layout they write, and the figure paths derived from them."""

import json

import numpy as np
import pytest

from hubkit.errors import DataError
from hubkit.eval.generation import Generation
from hubkit.eval.metrics import to_plain
from hubkit.eval.pair_eval import evaluate_pair
from hubkit.eval.report import read_eval, read_eval_json
from hubkit.eval.sections import (
    PairFigures,
    TrajectoryFigures,
    TrajectoryVerdicts,
    Verdicts,
    figure_paths,
    required_paths,
)

from .conftest import write_table


def _values(data, path: str):
    """Every value at a dotted path (``*`` over list items) of parsed JSON; a missing key raises."""
    head, _, rest = path.partition(".")
    if head == "*":
        assert isinstance(data, list) and data, path
        return [v for item in data for v in (_values(item, rest) if rest else [item])]
    value = data[head]
    return _values(value, rest) if rest else [value]


@pytest.fixture(scope="module")
def written(tmp_path_factory, tiny_pair):
    out = tmp_path_factory.mktemp("sections")
    vectors = np.random.default_rng(0).normal(size=(12, 32))
    table = write_table(out / "eval.parquet", vectors, explanations=[f"label {i}" for i in range(12)])
    rep = evaluate_pair(
        tiny_pair, table, out_dir=out / "o", generation=Generation(max_new_tokens=4), n_boot=50, plots=False
    )
    return rep, read_eval_json(out / "o")


def test_every_required_figure_is_written_and_no_other(written):
    rep, data = written
    for path in required_paths(PairFigures) + required_paths(Verdicts, "verdicts"):
        values = _values(data, path)  # present (KeyError otherwise)
        # null allowed where the data may lack it: no parsed AV output, or too few rows for an interval
        if ".valid_only" not in path and not path.endswith(
            ("ci_low", "ci_high", "std", "input_independent_share")
        ):
            assert all(v is not None for v in values), path
    written_paths = {p for p, _ in figure_paths(PairFigures)}

    # leaves of the JSON figures that the types do not declare would be an undocumented layout
    def leaves(d, p):
        if isinstance(d, dict) and d:
            return [x for k, v in d.items() for x in leaves(v, f"{p}.{k}")]
        if isinstance(d, list) and d and isinstance(d[0], dict):
            return [x for x in leaves(d[0], f"{p}.*")]
        return [p]

    # a null object (no FVE without parsed rows) is a leaf of the JSON whose declared fields lie below it
    extra = {
        e
        for e in leaves(data["figures"], "figures")
        if e not in written_paths and not any(w.startswith(e + ".") for w in written_paths)
    }
    # dict-typed figures (statuses, distinct_n, most_common) are declared as one leaf
    assert {e.rsplit(".", 1)[0] for e in extra} <= {
        "figures.round_trip.statuses",
        "figures.diversity.distinct_n",
        "figures.diversity.most_common.*",
    }, extra
    assert rep.figures.to_dict() == data["figures"] and rep.verdicts.to_dict() == data["verdicts"]


def test_unrun_sections_and_in_memory_fields_stay_out_of_json(written):
    rep, data = written
    assert not {"paraphrase", "claim_ablation", "cross_pair"} & set(data["figures"])
    cs = data["figures"]["content_sensitivity"]["av"]
    assert "per_row" not in cs and "texts" not in cs and rep.figures.content_sensitivity.av.per_row
    assert json.loads(json.dumps(to_plain(rep.figures))) == data["figures"]


def test_optional_paths_are_marked(written):
    paths = dict(figure_paths(PairFigures))
    assert paths["figures.round_trip.all.fve.value"] is False
    assert paths["figures.round_trip.valid_only.fve.value"] is True  # no parsed row: no FVE
    assert paths["figures.content_sensitivity.reference.real.mean"] is True  # table without explanations
    assert (
        paths["figures.paraphrase.delta.mean"] is True
        and paths["figures.cross_pair.cells.*.cos.mean"] is True
    )
    assert "figures.claim_ablation.per_row" not in paths  # in memory only (rows.parquet)
    assert "figures.trajectory.checkpoints.*.identification.top1" in required_paths(TrajectoryFigures)
    assert required_paths(TrajectoryVerdicts, "verdicts") == ("verdicts.trend", "verdicts.reads_vectors_last")


def test_every_figure_the_release_reads_is_one_the_report_always_writes():
    """What the packaged pair card reads unconditionally, and what the release code reads, are figures
    the typed report guarantees (never optional): a report that passes its own types renders the card."""
    from hubkit.release import cards, honesty
    from hubkit.release.figures import template_reads

    env = cards.environment()
    pair = set(required_paths(PairFigures)) | set(required_paths(Verdicts, "verdicts"))
    reads = template_reads(env, "model.md.j2").required + list(honesty.CODE_READS_PAIR)
    assert {p for p in reads if p.startswith(("figures.", "verdicts."))} <= pair
    # a trajectory card may require a section the report leaves out for short runs (the loss curve):
    # every figure it reads is one the report can write, and the release refuses the report without it
    traj = {p for p, _ in figure_paths(TrajectoryFigures)} | {
        p for p, _ in figure_paths(TrajectoryVerdicts, "verdicts")
    }
    reads = template_reads(env, "trajectory.md.j2").required + list(honesty.CODE_READS_TRAJECTORY)
    # a list figure (`losses`) covers the items a template loops over (`losses.*`)
    assert {p.removesuffix(".*") for p in reads if p.startswith(("figures.", "verdicts."))} <= traj


def test_fields_by_key_for_code_written_against_the_json(written):
    rep, _ = written
    assert rep.verdicts["reads_vectors"] is rep.verdicts.reads_vectors
    assert rep.figures["round_trip"]["all"]["cos"] is rep.figures.round_trip.all.cos
    with pytest.raises(KeyError, match="has no field 'nope'"):
        rep.verdicts["nope"]


def test_read_eval_returns_the_typed_sections_that_wrote_it(written, tmp_path):
    rep, data = written
    back = read_eval(rep.write(tmp_path))
    assert isinstance(back.figures, PairFigures) and isinstance(back.verdicts, Verdicts)
    assert back.figures.to_dict() == data["figures"] and back.verdicts.to_dict() == data["verdicts"]
    assert back.figures.round_trip.all.cos.mean == rep.figures.round_trip.all.cos.mean
    assert back.figures.paraphrase is None and back.kind == "pair" and back.inputs == data["inputs"]


def test_read_eval_names_the_file_and_the_mistyped_or_missing_field(written, tmp_path):
    _, data = written
    bad = json.loads(json.dumps(data))
    bad["figures"]["round_trip"]["all"]["cos"]["mean"] = "high"
    (tmp_path / "eval.json").write_text(json.dumps(bad))
    with pytest.raises(
        DataError, match=r"eval\.json: field `figures\.round_trip\.all\.cos\.mean` must be a number"
    ):
        read_eval(tmp_path)
    del bad["verdicts"]["reads_vectors"]
    bad["figures"]["round_trip"]["all"]["cos"]["mean"] = 0.5
    (tmp_path / "eval.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"field `verdicts\.reads_vectors` is required but missing"):
        read_eval(tmp_path)
