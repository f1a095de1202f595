"""AR head files: every published format reads to the same Linear; broken files are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hubkit import constants as C
from hubkit.errors import CheckpointError
from hubkit.heads import convert_pt_head, identity_head, load_head, save_head, with_bias, write_legacy_pt_from

D = 8


def _head(bias: bool = False) -> torch.nn.Linear:
    torch.manual_seed(0)
    head = torch.nn.Linear(D, D, bias=bias)
    return head


@pytest.mark.parametrize("bias", [False, True])
def test_save_and_load_round_trip(tmp_path: Path, bias: bool) -> None:
    head = _head(bias)
    save_head(head, tmp_path)
    got, lora = load_head(tmp_path, "value_head", D)
    assert lora == {}
    x = torch.randn(3, D)
    torch.testing.assert_close(got(x), head(x))


def test_identity_head_is_the_identity() -> None:
    x = torch.randn(4, D)
    torch.testing.assert_close(identity_head(D)(x), x)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", ["weight", "bias"])
def test_non_finite_head_is_refused_naming_the_file(tmp_path: Path, bad: float, name: str) -> None:
    state = {"weight": torch.eye(D), "bias": torch.zeros(D)}
    state[name][0] = bad
    save_file(state, str(tmp_path / C.VALUE_HEAD_FILE))
    with pytest.raises(CheckpointError) as err:
        load_head(tmp_path, "value_head", D)
    msg = str(err.value)
    assert C.VALUE_HEAD_FILE in msg and f"`{name}`" in msg and "NaN/inf" in msg and "\n" not in msg


def test_non_finite_pt_head_is_refused(tmp_path: Path) -> None:
    w = torch.eye(D)
    w[1, 1] = float("nan")
    torch.save({"weight": w, "bias": torch.zeros(D)}, str(tmp_path / C.LINEAR_HEAD_PT_FILE))
    with pytest.raises(CheckpointError, match="linear_head.pt.*NaN/inf"):
        load_head(tmp_path, "linear_head_pt", D)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_safetensors_head_is_a_one_line_error(tmp_path: Path, damage: str) -> None:
    path = save_head(_head(), tmp_path)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00\xff" * 40, "empty": b""}[damage])
    with pytest.raises(CheckpointError) as err:
        load_head(tmp_path, "value_head", D)
    msg = str(err.value)
    assert str(path) in msg and "safetensors" in msg and "\n" not in msg


@pytest.mark.parametrize("bias", [False, True])
def test_convert_pt_head_writes_the_same_head_as_safetensors(tmp_path: Path, bias: bool) -> None:
    head = _head(bias)
    torch.save({k: v.detach() for k, v in head.state_dict().items()}, str(tmp_path / C.LINEAR_HEAD_PT_FILE))
    out, has_bias = convert_pt_head(tmp_path / C.LINEAR_HEAD_PT_FILE, tmp_path / "bundle")
    assert out.name == C.VALUE_HEAD_FILE and has_bias is bias
    got, _ = load_head(tmp_path / "bundle", "value_head", D)
    x = torch.randn(5, D)
    torch.testing.assert_close(got(x), head(x))


def test_legacy_pt_always_has_a_bias_and_the_same_function(tmp_path: Path) -> None:
    head = _head(bias=False)
    save_head(head, tmp_path)
    path = write_legacy_pt_from(tmp_path, "value_head", D)
    state = torch.load(str(path), weights_only=True)
    assert set(state) == {"weight", "bias"} and torch.equal(state["bias"], torch.zeros(D))
    got, _ = load_head(tmp_path, "linear_head_pt", D, bias=True)
    x = torch.randn(5, D)
    torch.testing.assert_close(got(x), head(x))
    assert with_bias(got) is got
