"""The GPU check's FSDP part: `hubkit train` under ``torchrun --nproc_per_node 1`` with ``strategy: fsdp``.

Three runs through the real command line, each a row of the table: the AV fully fine-tuned (float32
sharded weights, bf16 compute: FSDP's mixed-precision policy), the AR as a LoRA, then GRPO from
those two (the policy gathered for its rollouts). Step time is the median after the first step;
peak GPU memory is what the trainer logs per step (`peak_gpu_mb` in metrics.jsonl).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _rl_table(av_table: Path, out: Path) -> Path:
    import pyarrow.parquet as pq

    t = pq.read_table(av_table).drop_columns(["explanation"])
    pq.write_table(t.append_column("prefix", [["some text"] * t.num_rows]), out)
    return out


def _launch(stage: str, recipe: Path, device: str, timeout: int) -> tuple[int, str]:
    cmd = ["torchrun", "--nproc_per_node", "1", "-m", "hubkit.cli", "train", stage, str(recipe), "-q"]
    cmd += ["--device", device] if device.startswith("cuda") else []
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
    )
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error:")]
    return proc.returncode, (errors or (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""])[0][:200]


def _row(what: str, run: Path, rc: int, note: str) -> dict:
    row: dict = {"what": what}
    metrics = run / "metrics.jsonl"
    if rc != 0 or not metrics.is_file():
        row["error"] = f"rc {rc}: {note}"
        return row
    steps = [json.loads(x) for x in metrics.read_text().splitlines()]
    row["step_s"] = statistics.median([m["seconds"] for m in steps[1:] or steps])
    if "peak_gpu_mb" in steps[-1]:
        row["peak_gpu_mb"] = max(m["peak_gpu_mb"] for m in steps)
    return row


def fsdp_rows(
    model: str, layer: int, steps: int, device: str, tables: tuple[Path, Path], timeout: int
) -> list[dict]:
    """AV full, AR LoRA and GRPO under FSDP2 with one process; one row each."""
    from bench_train_smollm2 import stage

    av_data, ar_data = tables
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = {
            "base_model": model,
            "layer": layer,
            "dtype": "float32",
            "output_dir": str(folder / "run"),
            "distributed": {"strategy": "fsdp", "mixed_precision": "bfloat16"},
        }
        grpo = {
            "data": str(_rl_table(av_data, folder / "rl.parquet")),
            "steps": steps,
            "micro_batch_size": 2,
            "checkpoint_every": steps,
            "group_size": 4,
            "max_new_tokens": 16,
            "adapter": {"kind": "full"},
            "optim": {"lr": 1e-6},
        }
        recipe = {
            **base,
            "av": {**stage(steps, av_data, "full"), "optim": {"lr": 1e-5}},
            "ar": stage(steps, ar_data, "lora"),
            "grpo": grpo,
        }
        path = folder / "fsdp.yaml"
        path.write_text(yaml.safe_dump(recipe))
        for name, what in (("av", "AV full"), ("ar", "AR lora"), ("grpo", "GRPO full policy")):
            rc, note = _launch(name, path, device, timeout)
            rows.append(_row(f"FSDP 1 process: {what} step {model}", folder / "run" / name, rc, note))
    return rows
