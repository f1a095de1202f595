"""The dialect registry: explicit priorities, duplicate names and priorities refused, and a new
dialect is one registered function; injection scheme names are checked against the schemes there are."""

from __future__ import annotations

import copy

import pytest

from hubkit.errors import MetaError
from hubkit.meta import DIALECTS, SCHEMES, Injection, NLAMeta, register, registry
from hubkit.meta.registry import ordered
from hubkit.registry import Registry, RegistryError


def test_builtin_dialects_in_priority_order() -> None:
    names = [d.name for d in ordered()]
    assert names == ["hubkit", "reference-v2", "consumer-gpu", "consumer-gpu-ar", "residual-add-sidecar"]
    priorities = [d.priority for d in ordered()]
    assert priorities == sorted(priorities) and len(set(priorities)) == len(priorities)


def test_a_duplicate_dialect_name_is_refused() -> None:
    before = DIALECTS.items()
    with pytest.raises(RegistryError, match="'reference-v2' is already registered"):
        register("reference-v2", priority=999, detect=lambda d: False)(lambda data, where, folder: ({}, []))
    assert DIALECTS.items() == before


def test_a_taken_priority_is_refused() -> None:
    with pytest.raises(RegistryError, match="priority 20 is taken by 'reference-v2'"):
        register("another", priority=20, detect=lambda d: False)(lambda data, where, folder: ({}, []))
    assert "another" not in DIALECTS


def test_a_new_dialect_is_one_function(monkeypatch) -> None:
    fresh: Registry = Registry(DIALECTS.kind)
    for name, dialect in DIALECTS.items():
        fresh.add(name, dialect)
    monkeypatch.setattr(registry, "DIALECTS", fresh)  # the registration ends with the test

    @register("toy", priority=5, detect=lambda d: d.get("toy") is True)
    def read_toy(data, where, folder):
        return {"role": "ar", "base_model": "org/b", "d_model": 8, "layer": 1, "ar": {"num_layers": 2}}, [
            "everything → toy defaults"
        ]

    meta = NLAMeta.from_dict({"toy": True}, where="toy.yaml")
    assert (meta.converted_from, meta.layer, meta.ar.num_layers) == ("toy", 1, 2)


def test_injection_scheme_is_a_name_checked_against_the_schemes() -> None:
    assert SCHEMES.names() == ("embedding_replace", "residual_add")  # data of the meta: no injection import
    assert SCHEMES.get("embedding_replace").scaled and not SCHEMES.get("residual_add").scaled
    assert Injection(scheme="residual_add").scheme == "residual_add"
    with pytest.raises(ValueError, match="`injection.scheme` must be one of"):
        Injection(scheme="prefix", scale=1.0)
    data = {
        "schema": "hubkit.nla/1",
        "role": "ar",
        "base_model": "b",
        "d_model": 8,
        "layer": 1,
        "ar": {"num_layers": 2},
        "injection": {"scheme": "prefix"},
    }
    with pytest.raises(MetaError, match=r"^x.yaml: field `injection.scheme` must be one of"):
        NLAMeta.from_dict(copy.deepcopy(data), where="x.yaml")
