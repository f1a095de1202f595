"""The `hubkit` command line as a whole: every command answers --help without loading torch, and click
stays inside hubkit/cli/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click

from hubkit.cli import main

PACKAGE = Path(__file__).resolve().parents[2] / "hubkit"


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in group.commands.items():
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out += _commands(command, (*prefix, name))
    return out


def test_every_command_answers_help_without_torch():
    paths = [" ".join(path) for path in _commands(main)]
    assert {"explain", "train av", "release init", "hub serve", "models prepare", "eval"} <= set(paths)
    code = (
        "import sys\nfrom hubkit.cli import main\n"
        f"for path in {paths!r}:\n"
        "    try:\n        main([*path.split(), '--help'], standalone_mode=False)\n"
        "    except SystemExit as exc:\n        assert not exc.code, path\n"
        "assert 'torch' not in sys.modules, 'torch'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Usage:") == len(paths)


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "hubkit.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "round-trip" in done.stdout


def test_export_offers_the_library_formats():
    from hubkit.export import FORMATS

    (fmt,) = [p for p in main.commands["export"].params if p.name == "fmt"]
    assert tuple(fmt.type.choices) == FORMATS


def test_click_is_imported_only_by_the_command_line():
    importers = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if re.search(r"^\s*(import click|from click\b)", path.read_text(), re.M)
    }
    assert {p for p in importers if not p.startswith("cli/")} == set()
