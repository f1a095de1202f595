"""`hubkit.schema`: strict dict → dataclass parsing names the field that is wrong, at any depth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from hubkit.schema import SchemaError, from_dict, to_dict


@dataclass
class Inner:
    n: int
    mode: Literal["a", "b"] = "a"

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"`n` must be >= 0, got {self.n}")


@dataclass
class Outer:
    name: str
    inner: Inner
    maybe: Inner | None = None
    ratio: float = 1.0
    flag: bool = False
    ids: list[int] = field(default_factory=list)
    table: dict[str, int] = field(default_factory=dict)
    scale: float | Literal["auto"] | None = None


GOOD = {"name": "x", "inner": {"n": 1}, "maybe": {"n": 2, "mode": "b"}, "ids": [1, 2], "table": {"k": 3}}


def test_valid_mapping_builds_nested_instances() -> None:
    obj = from_dict(Outer, GOOD)
    assert obj == Outer(name="x", inner=Inner(1), maybe=Inner(2, "b"), ids=[1, 2], table={"k": 3})


def test_int_is_accepted_for_float_and_becomes_float() -> None:
    obj = from_dict(Outer, {**GOOD, "ratio": 3, "scale": 150})
    assert obj.ratio == 3.0 and isinstance(obj.ratio, float)
    assert obj.scale == 150.0 and isinstance(obj.scale, float)
    assert from_dict(Outer, {**GOOD, "scale": "auto"}).scale == "auto"


def test_to_dict_round_trips_and_drops_none() -> None:
    obj = from_dict(Outer, GOOD)
    data = to_dict(obj)
    assert "scale" not in data  # None dropped
    assert from_dict(Outer, data) == obj
    assert to_dict(obj, drop_none=False)["scale"] is None


@pytest.mark.parametrize(
    ("patch", "field_name", "needle"),
    [
        ({"inner": {"n": "1"}}, "inner.n", "must be an integer"),
        ({"inner": {"n": True}}, "inner.n", "must be an integer"),
        ({"inner": {"n": 1.5}}, "inner.n", "must be an integer"),
        ({"inner": {"n": 1, "mode": "c"}}, "inner.mode", "must be one of"),
        ({"inner": {"n": 1, "extra": 0}}, "inner.extra", "is not a known field"),
        ({"inner": {}}, "inner.n", "is required but missing"),
        ({"inner": {"n": -1}}, "inner", "`n` must be >= 0"),
        ({"maybe": {"n": "2"}}, "maybe.n", "must be an integer"),
        ({"maybe": {"n": 2, "typo": 1}}, "maybe.typo", "is not a known field"),
        ({"maybe": 5}, "maybe", "must be a mapping"),
        ({"ratio": "1.0"}, "ratio", "must be a number"),
        ({"ratio": True}, "ratio", "must be a number"),
        ({"flag": "yes"}, "flag", "must be true or false"),
        ({"flag": 1}, "flag", "must be true or false"),
        ({"name": 3}, "name", "must be a string"),
        ({"ids": [1, "2"]}, "ids[1]", "must be an integer"),
        ({"ids": 1}, "ids", "must be a list"),
        ({"table": {"k": "v"}}, "table.k", "must be an integer"),
        ({"scale": True}, "scale", "got True"),
        ({"scale": "big"}, "scale", "got 'big'"),
        ({"unknown_top": 1}, "unknown_top", "is not a known field"),
    ],
)
def test_errors_name_the_field(patch: dict, field_name: str, needle: str) -> None:
    with pytest.raises(SchemaError) as err:
        from_dict(Outer, {**GOOD, **patch}, where="spec.yaml")
    assert err.value.field == field_name
    assert needle in str(err.value)
    assert str(err.value).startswith(f"spec.yaml: field `{field_name}`")


def test_missing_top_level_field_and_non_mapping() -> None:
    with pytest.raises(SchemaError, match="field `inner` is required but missing"):
        from_dict(Outer, {"name": "x"})
    with pytest.raises(SchemaError, match="must be a mapping, got list"):
        from_dict(Outer, [1, 2])  # type: ignore[arg-type]


def test_unknown_field_error_lists_known_fields() -> None:
    with pytest.raises(SchemaError) as err:
        from_dict(Outer, {**GOOD, "nmae": "typo"})
    assert "nmae" in str(err.value) and "'name'" in str(err.value)
