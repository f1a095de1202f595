"""What every `hubkit` command shares: the error wrapper (`HubkitGroup`, `fail`), option blocks (`stack`)."""

from __future__ import annotations

import errno
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from hubkit.checkpoint import NO_VERIFY_ENV
from hubkit.data.outputs import check_path
from hubkit.engines import normalise
from hubkit.errors import HubkitError, OutputError
from hubkit.hub.redaction import redact
from hubkit.precision import check_device, normalise_dtype_name

F = TypeVar("F", bound=Callable[..., object])


class HubkitGroup(click.Group):
    """A click group reporting every expected failure as one line and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HubkitError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(describe_os_error(exc))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            fail("aborted", 1)
        sys.exit(rv if type(rv) is int else 0)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: <message>` on one line of stderr (line breaks folded, credentials masked); exit `code`."""
    one_line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    click.echo(f"error: {redact(one_line)}", err=True)
    sys.exit(code)


_OS_HINTS = {
    errno.ENOTDIR: "a parent of this path is a file; choose a path inside a folder",
    errno.ENAMETOOLONG: "choose a shorter file name",
    errno.EACCES: "choose a location you can write to",
    errno.EPERM: "choose a location you can write to",
    errno.EROFS: "choose a location on a writable file system",
    errno.ENOSPC: "free some disk space or choose another disk",
    errno.ENOENT: "check that the path exists",
    errno.EISDIR: "name a file, not a folder",
}


def describe_os_error(exc: OSError) -> str:
    """`<reason>: <path>` for an OSError, with what to do for the common causes."""
    if exc.strerror is None:  # raised with a message of its own (e.g. by a library), no errno
        return str(exc) or exc.__class__.__name__
    where = f" {str(exc.filename)[:200]}" if exc.filename else ""
    return f"{exc.strerror}:{where} ({_OS_HINTS.get(exc.errno or -1, 'check the path and try again')})"


def check_out(out: str | os.PathLike | None) -> None:
    """Refuse an output file path that cannot be written (`check_path`) or is a folder, before any work."""
    if out is None:
        return
    if Path(out).is_dir():
        raise OutputError(f"--out {out} is a folder; name a file")
    check_path(out)


def stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """One decorator that applies `decorators` as if written one above the other (first one on top)."""

    def apply(fn: F) -> F:
        for decorate in reversed(decorators):
            fn = decorate(fn)
        return fn

    return apply


def checked(check: Callable[[Any], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback that runs `check(value)` (None passes) and turns a HubkitError into a usage error."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            return None if value is None else check(value)
        except HubkitError as err:
            raise click.BadParameter(str(err), ctx=ctx, param=param) from err

    return callback


def _injection_scale(value: str) -> str:
    """A positive finite number, sqrt_d_model or raw, refused here rather than in the meta."""
    if value in ("sqrt_d_model", "raw"):
        return value
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise click.BadParameter(f"{value!r} is not a positive finite number, sqrt_d_model or raw")
    return value


def _no_verify(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """`--no-verify-weights`: skip hashing the checkpoint's files on load for this command only."""
    if value and NO_VERIFY_ENV not in os.environ:
        os.environ[NO_VERIFY_ENV] = "1"
        ctx.call_on_close(lambda: os.environ.pop(NO_VERIFY_ENV, None))


revision_option = click.option("--revision", default=None, help="Branch, tag or commit of a Hub repo.")
subfolder_option = click.option("--subfolder", default=None, help="Checkpoint subfolder (e.g. step_000050).")
overwrite_option = click.option("--overwrite", is_flag=True, help="Replace an existing output and any partial run.")
threads_option = click.option(
    "--threads",
    type=click.IntRange(1, 1024),
    default=None,
    help="CPU threads for torch (default: the physical cores available).",
)
load_options = stack(
    click.option(
        "--no-verify-weights",
        is_flag=True,
        expose_value=False,
        callback=_no_verify,
        help="Skip checking the checkpoint's files against their recorded sha256 on load (very large files). "
        "Env: HUBKIT_NO_VERIFY=1.",
    ),
    revision_option,
    subfolder_option,
    click.option("--base-model", default=None, help="Where the base weights come from (local path or name)."),
    click.option("--device", default=None, callback=checked(check_device), help="cpu, cuda, cuda:1 …"),
    click.option(
        "--dtype",
        default=None,
        callback=checked(normalise_dtype_name),
        help="auto (bf16 where the hardware has it, else fp32; the default), float32, bfloat16 or float16.",
    ),
)

def out_dir_option(help: str | None, required: bool = False) -> Callable[[F], F]:
    return click.option("--out", "out_dir", required=required, type=click.Path(file_okay=False), help=help)


def pop_load(opts: dict[str, Any]) -> dict[str, Any]:
    """The from_pretrained keywords `load_options` adds, popped from a command's options."""
    return {k: opts.pop(k) for k in ("revision", "subfolder", "base_model", "device", "dtype")}


engine_option = click.option(
    "--engine",
    default="auto",
    callback=checked(normalise),
    show_default=True,
    envvar="HUBKIT_ENGINE",
    help="AV generation engine: auto (vLLM when installed, else transformers), transformers, vllm, "
    "or the URL of a `vllm serve --enable-prompt-embeds` endpoint (http://host:port). Env: HUBKIT_ENGINE.",
)


def generation_options(batch_default: int | None, batch_help: str) -> Callable[[F], F]:
    """``--batch-size --max-new-tokens --engine --injection-scale --min-new-tokens``: how an AV generates."""
    return stack(
        click.option(
            "--batch-size", default=batch_default, show_default=True, type=click.IntRange(min=1), help=batch_help
        ),
        click.option("--max-new-tokens", default=64, show_default=True, type=click.IntRange(min=1)),
        engine_option,
        click.option(
            "--injection-scale",
            default=None,
            callback=checked(_injection_scale),
            help="Override the AV meta's injection scale (a number, sqrt_d_model or raw), e.g. where it is null.",
        ),
        click.option("--min-new-tokens", default=0, show_default=True, type=click.IntRange(min=0)),
    )
