import json
import math

import pytest

from hubkit.errors import DataError
from hubkit.eval.metrics import summarize
from hubkit.eval.report import EVAL_SCHEMA, EvalReport, read_eval_json


def _report(**figures):
    return EvalReport(
        kind="pair",
        seed=0,
        generation={},
        nla={},
        inputs={},
        overlap={},
        figures=figures,
        verdicts={},
        timing={"x": float("nan")},
    )


def test_report_json_is_strict_and_versioned(tmp_path):
    path = _report(cos=summarize([0.5]), empty=summarize([])).write(tmp_path)
    text = path.read_text()
    assert "NaN" not in text
    data = json.loads(text)
    assert data["schema"] == EVAL_SCHEMA == "hubkit.eval/1" and list(data)[0] == "schema"
    assert data["figures"]["cos"] == {
        "n": 1,
        "mean": 0.5,
        "ci_low": None,
        "ci_high": None,
        "std": None,
        "median": 0.5,
        "min": 0.5,
        "max": 0.5,
    }
    assert data["timing"]["x"] is None and "rows" not in data
    assert data["provenance"]["libraries"]["python"]
    assert read_eval_json(tmp_path)["figures"]["empty"]["n"] == 0


def test_read_eval_refuses_other_schemas(tmp_path):
    (tmp_path / "eval.json").write_text(json.dumps({"schema": "hubkit.eval/0"}))
    with pytest.raises(DataError, match="'hubkit.eval/0'; this hubkit reads 'hubkit.eval/1'"):
        read_eval_json(tmp_path)
    with pytest.raises(DataError, match="no eval.json"):
        read_eval_json(tmp_path / "missing")
    assert math.isfinite(summarize([1.0, 2.0], n_boot=50).ci_low)
