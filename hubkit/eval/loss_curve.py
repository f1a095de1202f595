"""The training loss curve a trajectory's trend verdict reads: a JSONL log, ``trainer_state.json``, or the metas."""

from __future__ import annotations

import json
from pathlib import Path

from hubkit.errors import DataError
from hubkit.eval.records import Checkpoint
from hubkit.provenance import sha256_file

# Loss logs looked for in a run folder (hubkit.train writes metrics.jsonl: one {"step", "loss", …} per line).
LOSS_LOG_NAMES = ("metrics.jsonl", "loss.jsonl", "train_log.jsonl", "log.jsonl")


def read_loss_log(path: str | Path) -> tuple[list[float], list[float]]:
    """(steps, losses) from a JSONL log (lines with ``step`` and ``loss``) or an HF ``trainer_state.json``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such loss log")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            records = json.loads(text).get("log_history", [])
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (ValueError, AttributeError) as exc:
        raise DataError(f"{path}: not a JSONL loss log or trainer_state.json ({exc})") from exc
    pts = [
        (float(r["step"]), float(r["loss"]))
        for r in records
        if isinstance(r, dict) and "step" in r and isinstance(r.get("loss"), (int, float))
    ]
    return [p[0] for p in pts], [p[1] for p in pts]


def loss_curve(
    run_dir: Path, checkpoints: list[Checkpoint], loss_log: str | Path | None
) -> tuple[list, list, dict]:
    """The loss curve for the trend verdict: an explicit or well-known log file, else the checkpoint metas."""
    candidates = (
        [Path(loss_log)]
        if loss_log is not None
        else [d / n for d in (run_dir, *{c.path.parent for c in checkpoints}) for n in LOSS_LOG_NAMES]
    )
    for cand in candidates:
        if cand.is_file() or loss_log is not None:
            steps, losses = read_loss_log(cand)
            if not steps and loss_log is not None:
                raise DataError(f"{cand}: no records with both `step` and `loss` in this loss log")
            if steps:
                return (
                    steps,
                    losses,
                    {"source": str(cand), "sha256": sha256_file(cand), "n_points": len(steps)},
                )
    pts = [(c.step, c.loss) for c in checkpoints if c.step is not None and c.loss is not None]
    return (
        [p[0] for p in pts],
        [p[1] for p in pts],
        {"source": "checkpoint metas (training.step, training.loss)", "n_points": len(pts)},
    )
