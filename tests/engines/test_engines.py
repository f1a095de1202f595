"""Engine choice: names, the logged fallback when vLLM is absent, and one-line errors."""

from __future__ import annotations

import logging
import socket
import sys

import pytest
import torch
from click.testing import CliRunner

from hubkit import engines
from hubkit.engines import EngineError
from hubkit.testing import tiny_metas, write_adapter_pair
from hubkit.verbalizer import ActivationVerbalizer


@pytest.fixture
def no_vllm(monkeypatch):
    """vLLM made unimportable for the test (``import vllm`` raises ImportError)."""
    monkeypatch.setitem(sys.modules, "vllm", None)
    assert not engines.vllm_installed()


def test_names_are_checked():
    assert engines.normalise(None) == "transformers"
    assert engines.normalise(" VLLM ") == "vllm"
    assert engines.normalise("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    with pytest.raises(EngineError, match="choose one of auto, transformers, vllm"):
        engines.normalise("sglang")


def test_auto_falls_back_with_one_log_line(no_vllm, caplog):
    with caplog.at_level(logging.INFO, logger="hubkit.engines"):
        assert engines.resolve("auto") == "transformers"
    lines = [r for r in caplog.records if "not installed" in r.getMessage()]
    assert len(lines) == 1 and "pip install" in lines[0].getMessage()
    assert engines.resolve(None) == "transformers"


def test_explicit_vllm_without_vllm_is_one_line_error(no_vllm):
    with pytest.raises(
        EngineError, match=r"not installed: install it with `pip install 'hubkit\[vllm\]'"
    ) as err:
        engines.resolve("vllm")
    assert "\n" not in str(err.value)


def test_prompt_embedding_engines_refuse_residual_add():
    assert engines.resolve("auto", scheme="residual_add") == "transformers"
    for name in ("vllm", "http://127.0.0.1:9"):
        with pytest.raises(EngineError, match="use --engine transformers"):
            engines.resolve(name, scheme="residual_add")


def test_explain_auto_without_vllm_equals_transformers(no_vllm, tiny_llama):
    av = ActivationVerbalizer(tiny_llama.model, tiny_llama.tokenizer, tiny_metas(tiny_llama)[0])
    v = torch.randn(3, tiny_llama.d_model)
    assert av.explain(v, max_new_tokens=6, engine="auto") == av.explain(v, max_new_tokens=6)
    with pytest.raises(EngineError, match="not installed"):
        av.explain(v, max_new_tokens=6, engine="vllm")


def test_vllm_engine_needs_a_folder_for_an_in_memory_model(tiny_llama):
    from hubkit.engines.source import source_for

    with pytest.raises(EngineError, match="pass base_model=<folder>"):
        source_for(tiny_llama.model, None)


def test_adapter_written_once_by_sha256(tmp_path, tiny_base_dir, monkeypatch):
    from hubkit.engines.source import source_for
    from hubkit.verbalizer import ActivationVerbalizer as AV

    monkeypatch.setenv("HUBKIT_CACHE", str(tmp_path / "cache"))
    av_dir, _ = write_adapter_pair(tmp_path, tiny_base_dir)
    av = AV.from_pretrained(av_dir, dtype="float32")
    a = source_for(av.model, av.adapter_name)
    b = source_for(av.model, av.adapter_name)
    assert a == b and a.base == str(tiny_base_dir) and a.dtype == "float32"
    from safetensors.torch import load_file

    saved = load_file(f"{a.adapter}/adapter_model.safetensors")
    original = load_file(f"{av_dir}/adapter_model.safetensors")
    assert saved.keys() == original.keys()
    assert all(torch.equal(saved[k], original[k]) for k in saved)
    with torch.no_grad():  # a changed adapter (a training step) is a new folder
        next(p for n, p in av.model.named_parameters() if "lora_B" in n).add_(1.0)
    assert source_for(av.model, av.adapter_name).adapter != a.adapter


def test_cli_engine_vllm_without_vllm(tmp_path, tiny_base_dir, no_vllm):
    from hubkit.cli import main
    from hubkit.vectors_io import write_vectors

    av_dir, _ = write_adapter_pair(tmp_path, tiny_base_dir)
    vec = tmp_path / "v.safetensors"
    write_vectors(vec, torch.randn(2, 64))
    res = CliRunner().invoke(main, ["explain", str(av_dir), "--vectors", str(vec), "--engine", "vllm"])
    assert res.exit_code == 2
    err = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "vLLM is not installed" in err[0] and "pip install" in err[0]
    ok = CliRunner().invoke(main, ["explain", str(av_dir), "--vectors", str(vec), "--max-new-tokens", "4"])
    assert ok.exit_code == 0, ok.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_remote_down_is_one_line_error():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EngineError, match=r"no vllm serve answers at .*start one with `vllm serve") as err:
        engines.get_engine(url)
    assert "\n" not in str(err.value)


def test_adapter_cache_keeps_the_most_recent(tmp_path, tiny_base_dir, monkeypatch):
    from hubkit.engines import source
    from hubkit.verbalizer import ActivationVerbalizer as AV

    monkeypatch.setenv("HUBKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(source, "KEEP_ADAPTERS", 2)
    av = AV.from_pretrained(write_adapter_pair(tmp_path, tiny_base_dir)[0])
    lora_b = next(p for n, p in av.model.named_parameters() if "lora_B" in n)
    written = []
    for _ in range(4):  # four training steps: four adapters
        with torch.no_grad():
            lora_b.add_(0.5)
        written.append(source.adapter_folder(av.model, av.adapter_name))
    kept = sorted(str(p) for p in (tmp_path / "cache" / "engines" / "adapters").iterdir())
    assert len(set(written)) == 4 and kept == sorted(written[-2:])


def test_max_model_len_is_capped_at_the_models_positions(tiny_base_dir):
    from transformers import AutoModelForCausalLM

    from hubkit.engines.source import source_for

    model = AutoModelForCausalLM.from_pretrained(str(tiny_base_dir))
    positions = model.config.max_position_embeddings
    assert positions < 1024  # the tiny model has 512, as the demo's quick pair did
    assert source_for(model, None).max_model_len == positions
    assert source_for(model, None, max_model_len=64).max_model_len == 64


def test_a_vllm_failure_is_an_engine_error_and_auto_falls_back(tiny_llama, monkeypatch, caplog):
    """vLLM's own RuntimeError (its CPU kernels lack head_dim=16) becomes an EngineError, so `auto` falls
    back to transformers with one log line and an explicit `vllm` is one line naming the cause."""
    from hubkit.engines.vllm_local import engine_errors

    def failing(*args, **kwargs):
        with engine_errors("vLLM failed to generate on base"):
            raise RuntimeError("Unsupported CPU attention configuration: head_dim=16\nmore detail")

    monkeypatch.setattr(engines, "resolve", lambda name, scheme=None: "vllm")
    monkeypatch.setattr(ActivationVerbalizer, "generate_on_engine", failing)
    av = ActivationVerbalizer(tiny_llama.model, tiny_llama.tokenizer, tiny_metas(tiny_llama)[0])
    v = torch.randn(2, tiny_llama.d_model)
    with caplog.at_level(logging.WARNING, logger="hubkit.engines"):
        assert av.explain(v, max_new_tokens=4, engine="auto") == av.explain(v, max_new_tokens=4)
    assert any(
        "head_dim=16" in r.getMessage() and "transformers instead" in r.getMessage() for r in caplog.records
    )
    with pytest.raises(
        EngineError, match=r"RuntimeError: Unsupported CPU attention configuration: head_dim=16; use"
    ):
        av.explain(v, max_new_tokens=4, engine="vllm")


def test_a_pydantic_error_is_summarised_by_its_message_not_its_title():
    from hubkit.engines.vllm_local import error_summary

    text = (
        "1 validation error for ModelConfig\n  Value error, User-specified max_model_len (1024) is greater than "
        "the derived max_model_len (max_position_embeddings=512) [type=value_error]\n"
        "    For further information visit https://errors.pydantic.dev/2/v/value_error"
    )
    summary = error_summary(ValueError(text))
    assert (
        "max_model_len (1024) is greater than the derived max_model_len" in summary
        and "For further" not in summary
    )


def test_vllm_output_stays_off_the_terminal_unless_verbose(capfd):
    import os

    from hubkit.engines.vllm_local import quiet_output

    hubkit_log = logging.getLogger("hubkit")
    level = hubkit_log.level
    try:
        hubkit_log.setLevel(logging.WARNING)
        with quiet_output():
            os.write(2, b"native hint\n")
        hubkit_log.setLevel(logging.INFO)  # hubkit -v
        with quiet_output():
            os.write(2, b"shown with -v\n")
    finally:
        hubkit_log.setLevel(level)
    err = capfd.readouterr().err
    assert "native hint" not in err and "shown with -v" in err


def test_the_bitsandbytes_kernel_notice_is_dropped_and_other_warnings_kept(caplog):
    import hubkit  # noqa: F401  (installs the filter)

    bnb = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING, logger="bitsandbytes.backends.cpu.ops"):
        bnb.warning(
            "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please ...", "no network"
        )
        bnb.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]
