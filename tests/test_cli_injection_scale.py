"""An AV meta with a null injection scale is refused, and `--injection-scale` (the CLI) or
`injection_scale=` (the API) supplies it: the texts then equal those of the same AV with the scale
written in its meta."""

from __future__ import annotations

import json
import shutil

import torch
import yaml
from click.testing import CliRunner
from safetensors.torch import save_file

from hubkit.cli import main
from hubkit.testing import write_adapter_pair
from hubkit.verbalizer import ActivationVerbalizer


def test_null_scale_is_refused_and_the_override_equals_the_written_scale(tmp_path, tiny_base_dir, tiny_llama):
    av, _ = write_adapter_pair(tmp_path / "pair", tiny_base_dir)
    blank = tmp_path / "blank-av"
    shutil.copytree(av, blank)
    meta_file = blank / "nla_meta.yaml"
    data = yaml.safe_load(meta_file.read_text())
    data["hubkit"]["injection"]["scale"] = None
    data["extraction"]["injection_scale"] = None
    meta_file.write_text(yaml.safe_dump(data))
    vectors = tmp_path / "v.safetensors"
    save_file({"vectors": torch.randn(2, tiny_llama.d_model)}, str(vectors))
    runner = CliRunner()
    refused = runner.invoke(main, ["explain", str(blank), "--vectors", str(vectors), "--dtype", "float32"])
    assert refused.exit_code == 2 and "--injection-scale" in refused.output
    args = ["--vectors", str(vectors), "--dtype", "float32", "--max-new-tokens", "6"]
    given = runner.invoke(main, ["explain", str(blank), "--injection-scale", "sqrt_d_model", *args])
    written = runner.invoke(main, ["explain", str(av), *args])
    assert given.exit_code == 0 and written.exit_code == 0, given.output + written.output
    rows = [json.loads(line) for line in given.stdout.splitlines() if line.startswith("{")]
    assert rows == [json.loads(line) for line in written.stdout.splitlines() if line.startswith("{")]
    api = ActivationVerbalizer.from_pretrained(blank, dtype="float32", injection_scale="sqrt_d_model")
    assert api.meta.injection_scale_value() == tiny_llama.d_model**0.5
