"""Runs extract, label (transformers labeler) and eval in one process, or in each process of a torchrun.

python tests/data/stages_driver.py OUT BASE AV AR
torchrun --nproc_per_node 2 tests/data/stages_driver.py OUT BASE AV AR
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hubkit.cli import main  # noqa: E402


def run(out: str, base: str, av: str, ar: str) -> None:
    o = Path(out)
    for args in (
        [
            "extract",
            "--out",
            str(o / "acts.parquet"),
            "--model",
            base,
            "--limit-docs",
            "6",
            "--docs-per-chunk",
            "1",
            "--layer",
            "1",
            "--dtype",
            "float32",
            "--max-length",
            "32",
            "--positions-per-doc",
            "2",
        ],
        [
            "label",
            "--in",
            str(o / "acts.parquet"),
            "--out",
            str(o / "labeled.parquet"),
            "--labeler",
            "transformers",
            "--model",
            base,
            "--rows-per-chunk",
            "2",
            "--batch-size",
            "2",
            "--max-tokens",
            "6",
            "--cache",
            str(o / "labels.sqlite"),
        ],
        [
            "eval",
            "--av",
            av,
            "--ar",
            ar,
            "--table",
            str(o / "acts.parquet"),
            "--out",
            str(o / "eval"),
            "--batch-size",
            "2",
            "--ar-batch-size",
            "2",
            "--max-new-tokens",
            "6",
            "--no-plots",
            "--dtype",
            "float32",
            "--n-boot",
            "50",
        ],
    ):
        main(args, standalone_mode=False)


if __name__ == "__main__":
    run(*sys.argv[1:5])
