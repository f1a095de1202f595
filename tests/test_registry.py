import pytest

from hubkit.errors import HubkitError
from hubkit.registry import Registry, RegistryError


def test_add_get_and_order() -> None:
    reg: Registry[int] = Registry("widget")
    reg.add("b", 2)
    reg.add("a", 1)
    assert reg.get("a") == 1 and reg.get("b") == 2
    assert reg.names() == ("b", "a")  # registration order, not sorted
    assert reg.items() == (("b", 2), ("a", 1))
    assert "a" in reg and "c" not in reg and len(reg) == 2 and list(reg) == ["b", "a"]


def test_decorator_returns_the_entry() -> None:
    reg: Registry[object] = Registry("scheme")

    @reg.register("double")
    def double(x: int) -> int:
        return 2 * x

    assert reg.get("double") is double and double(3) == 6


def test_duplicate_refused_and_first_kept() -> None:
    reg: Registry[int] = Registry("dialect")
    reg.add("x", 1)
    with pytest.raises(RegistryError, match=r"dialect 'x' is already registered \(1\)"):
        reg.add("x", 2)
    assert reg.get("x") == 1


def test_unknown_name_lists_choices_and_hint() -> None:
    reg: Registry[int] = Registry("engine", hint="`engine:` in the recipe")
    reg.add("transformers", 0)
    reg.add("vllm", 1)
    with pytest.raises(HubkitError) as err:
        reg.get("vlm")
    assert str(err.value) == "unknown engine 'vlm' (`engine:` in the recipe): choose one of transformers, vllm"
    assert isinstance(err.value, KeyError)


def test_empty_name_refused() -> None:
    with pytest.raises(RegistryError, match="non-empty name"):
        Registry("labeler").add("", 1)
