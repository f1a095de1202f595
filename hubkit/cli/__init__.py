"""The `hubkit` command line: one module per command group, each a thin layer over library functions.

`main` (`hubkit.cli.app`) loads on first use: `hubkit.eval.commands` imports `hubkit.cli.options` before it."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "main":
        # lazy: app imports hubkit.eval.commands, which imports hubkit.cli.options
        from hubkit.cli.app import main

        return main
    raise AttributeError(f"module 'hubkit.cli' has no attribute {name!r}")
