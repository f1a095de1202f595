"""The `hubkit` command line: one module per command group, each a thin layer over library functions."""

from __future__ import annotations

from hubkit.cli.app import main

__all__ = ["main"]
