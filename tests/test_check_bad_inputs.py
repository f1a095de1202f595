"""Bad inputs around metas and `hubkit check`: a layer beyond the base's blocks, a base that is a
missing local folder, a 5000-character file name. Each is one line naming what was wrong; `hubkit
check` exits non-zero with no traceback."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from hubkit import constants as C
from hubkit.check import check
from hubkit.cli import main
from hubkit.errors import CheckpointError, HubkitError, MetaError
from hubkit.meta import NLAMeta
from hubkit.testing import write_adapter_pair


def _blocks(folder: Path) -> int:
    import json

    return json.loads((folder / C.MODEL_CONFIG_FILE).read_text())["num_hidden_layers"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tiny_base_dir) -> tuple[Path, Path]:
    return write_adapter_pair(tmp_path_factory.mktemp("pair"), tiny_base_dir, layer=1)


def _copy_with(src: Path, dest: Path, **changes) -> Path:
    import shutil

    shutil.copytree(src, dest)
    meta = NLAMeta.load(src)
    if "layer" in changes and meta.ar is not None:
        changes["ar"] = replace(meta.ar, num_layers=changes["layer"] + 1)
    meta.with_updates(**changes).save(dest)
    return dest


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hubkit.cli", *args], capture_output=True, text=True, timeout=300
    )


def _one_line_failure(result: subprocess.CompletedProcess) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout


# -- a layer beyond the base's blocks -----------------------------------------------------------------------
@pytest.mark.parametrize("role", ["ar", "av"])
def test_layer_beyond_the_bases_blocks_is_refused_at_load(tmp_path: Path, pair, tiny_base_dir, role) -> None:
    src = pair[0] if role == "av" else pair[1]
    folder = _copy_with(src, tmp_path / role, layer=99)
    n = NLAMeta.load(folder, check_depth=False)
    assert n.layer == 99
    with pytest.raises(MetaError) as err:
        NLAMeta.load(folder)
    msg = str(err.value)
    assert "\n" not in msg and str(folder / C.META_FILE) in msg
    assert "`layer` is 99" in msg and f"{_blocks(tiny_base_dir)} blocks" in msg and str(tiny_base_dir) in msg


def test_layer_beyond_a_full_checkpoints_own_blocks(tmp_path: Path, tiny_llama) -> None:
    from hubkit.checkpoint import write_checkpoint
    from hubkit.heads import identity_head
    from hubkit.testing import tiny_metas

    _, ar = tiny_metas(tiny_llama, layer=1, base_model="org/not-here")
    head = identity_head(tiny_llama.d_model)
    folder = write_checkpoint(tmp_path / "ar", tiny_llama.model, tiny_llama.tokenizer, ar, head=head)
    ar.with_updates(layer=99, ar=replace(ar.ar, num_layers=100)).save(folder)
    n = _blocks(folder)
    with pytest.raises(MetaError, match=rf"`layer` is 99 but the checkpoint's model .* has {n} blocks"):
        NLAMeta.load(folder)


def test_check_fails_a_layer_beyond_the_base(tmp_path: Path, pair, tiny_base_dir) -> None:
    folder = _copy_with(pair[1], tmp_path / "ar", layer=99)
    report = check(str(folder))
    n = _blocks(tiny_base_dir)
    assert not report.ok and report.facts["model blocks"] == n
    (err,) = [f for f in report.findings if f.level == "error"]
    assert "`layer` is 99" in err.message and f"{n} blocks" in err.message
    result = CliRunner().invoke(main, ["check", str(folder)])
    assert result.exit_code == 1 and "result: FAIL" in result.output and "`layer` is 99" in result.output


def test_check_passes_the_same_pair_at_a_fitting_layer(pair, tiny_base_dir) -> None:
    for folder in pair:
        report = check(str(folder))
        assert report.ok, report.render()
        assert report.facts["model blocks"] == _blocks(tiny_base_dir)


# -- a base that is a missing local folder ---------------------------------------------------------------
MISSING = "/nonexistent/hubkit-test/base-model"


def test_missing_local_base_is_one_line_when_loading(tmp_path: Path, pair) -> None:
    from hubkit.reconstructor import ActivationReconstructor

    folder = _copy_with(pair[1], tmp_path / "ar", base_model=MISSING)
    assert NLAMeta.load(folder).base_model == MISSING  # the meta itself is fine; the base is not
    with pytest.raises(HubkitError) as err:
        ActivationReconstructor.from_pretrained(folder)
    msg = str(err.value)
    assert "\n" not in msg and MISSING in msg and "--base-model" in msg


def test_check_fails_a_missing_local_base_of_an_adapter(tmp_path: Path, pair) -> None:
    folder = _copy_with(pair[0], tmp_path / "av", base_model=MISSING)
    report = check(str(folder))
    assert not report.ok
    (err,) = [f for f in report.findings if f.level == "error"]
    assert MISSING in err.message and "--base-model" in err.message
    result = _cli("check", str(folder))
    _one_line_failure(result)
    assert "result: FAIL" in result.stdout


# -- a 5000-character file name ---------------------------------------------------------------------------
def test_check_on_a_5000_character_name_is_one_line() -> None:
    name = "n" * 5000
    with pytest.raises(CheckpointError, match="File name too long") as err:
        check(name)
    assert "\n" not in str(err.value) and len(str(err.value)) < 600
    result = _cli("check", name)
    _one_line_failure(result)
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    assert len(lines) == 1 and "too long" in lines[0]


def test_check_on_a_repo_holding_a_5000_character_file_name(tmp_path: Path, monkeypatch) -> None:
    """The local Hub serves a repo with a 5000-character path: `hubkit check` on it is one line."""
    import huggingface_hub.constants as hc
    from huggingface_hub import HfApi

    from hubkit.localhub import LocalHub, use_endpoint

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    token = "hf_local_test_token"
    long_name = "/".join(["d" * 200] * 25) + "/notes.txt"
    assert len(long_name) > 5000
    with LocalHub(tmp_path / "hub") as hub, use_endpoint(hub.endpoint, token=token):
        api = HfApi(endpoint=hub.endpoint, token=token)
        api.create_repo("lab/long-names")
        api.upload_file(
            path_or_fileobj=b"schema: hubkit.nla/1\n", path_in_repo=C.META_FILE, repo_id="lab/long-names"
        )
        try:
            api.upload_file(path_or_fileobj=b"x", path_in_repo=long_name, repo_id="lab/long-names")
        except Exception as exc:  # a server that refuses such names is fine too, if it says so in one line
            assert "\n" not in str(exc).strip().splitlines()[0]
            return
        with pytest.raises(CheckpointError, match="File name too long") as err:
            check("lab/long-names")
    assert "\n" not in str(err.value) and len(str(err.value)) < 600


def test_check_accepts_a_full_checkpoint_whose_base_is_a_training_machine_path(
    tmp_path: Path, tiny_llama
) -> None:
    """A reference critic before the release scrub: its weights are all here, so the path is only said."""
    from hubkit.checkpoint import write_checkpoint
    from hubkit.heads import identity_head
    from hubkit.testing import tiny_metas

    _, ar = tiny_metas(tiny_llama, layer=1, base_model=MISSING)
    head = identity_head(tiny_llama.d_model)
    folder = write_checkpoint(tmp_path / "ar", tiny_llama.model, tiny_llama.tokenizer, ar, head=head)
    report = check(str(folder))
    assert report.ok, report.render()
    (info,) = [f for f in report.findings if MISSING in f.message]
    assert info.level == "info" and "holds its own weights" in info.message
