"""The `hubkit` command line: one module per command group, each a thin layer over library functions.

`main` (the root group, `hubkit.cli.app`) is loaded on first use, so that a command module outside this
package (`hubkit.eval.commands`) can import `hubkit.cli.options` before the root group registers it.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "main":
        # lazy: app imports hubkit.eval.commands, which imports hubkit.cli.options
        from hubkit.cli.app import main

        return main
    raise AttributeError(f"module 'hubkit.cli' has no attribute {name!r}")
