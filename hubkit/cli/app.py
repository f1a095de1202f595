"""The root `hubkit` group: logging, version, and every command group registered once.

A new command: a module here that parses options and calls a library function, added to the tuple below."""

from __future__ import annotations

import logging

import click

from hubkit.cli import check, data, demo, export, hub, inspect, models, release, train, vectors
from hubkit.cli.eval import eval_command
from hubkit.cli.options import HubkitGroup


@click.group(cls=HubkitGroup)
@click.option("-v", "--verbose", count=True, help="-v for info logs, -vv for debug.")
@click.version_option(package_name="hubkit")
def main(verbose: int) -> None:
    """Train, evaluate, publish and load Natural Language Autoencoders."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


for command in (*vectors.COMMANDS, *data.COMMANDS, check.check, models.models, hub.hub, train.train, eval_command,
                release.release, demo.demo, inspect.inspect, export.export):
    main.add_command(command)
