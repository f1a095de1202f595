"""Labeler backends by name: what `hubkit label --labeler NAME[:ARG]` and the demo can use.

The CLI choice and its help come from `LABELER_BACKENDS`; adding a backend is one entry plus its test.
Importing this module does not import torch (backends import what they need when made).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from hubkit import engines
from hubkit.data.labelers import (
    DirectLabeler,
    Labeler,
    OpenAIChatLabeler,
    TransformersLabeler,
    VLLMLabeler,
    parse_context_arg,
)
from hubkit.errors import DataError
from hubkit.registry import Registry

AnyLabeler = Labeler | DirectLabeler


@dataclass(frozen=True)
class LabelerOptions:
    """Settings a backend may read (each ignores what it does not use)."""

    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    max_tokens: int = 128
    batch_size: int = 8
    device: str = "cpu"
    requests_per_second: float | None = None
    concurrency: int = 4
    max_retries: int = 5


@dataclass(frozen=True)
class LabelerBackend:
    name: str
    help: str
    audited: bool  # an auditor of the same backend checks each draft (chat backends)
    make: Callable[[str | None, LabelerOptions], AnyLabeler]  # (text after `name:`, options) → labeler
    check_arg: Callable[[str | None], object] | None = None  # takes `:ARG`; refuses a bad one, makes nothing

    def __post_init__(self) -> None:
        if ":" in self.name:
            raise ValueError(f"labeler backend name {self.name!r} must not contain ':'")


LABELER_BACKENDS: Registry[LabelerBackend] = Registry("labeler backend", hint="--labeler")


def choice_help() -> str:
    """One line per backend, for CLI help."""
    return "; ".join(f"{b.name}{'[:N]' if b.check_arg else ''}: {b.help}" for b in LABELER_BACKENDS.values())


def parse_choice(choice: str) -> tuple[LabelerBackend, str | None]:
    """``NAME`` or ``NAME:ARG`` → (backend, arg); an unknown name lists the known ones."""
    name, sep, arg = choice.partition(":")
    if name not in LABELER_BACKENDS:
        raise DataError(f"labeler {choice!r}: unknown backend; choose one of {sorted(LABELER_BACKENDS)}")
    backend = LABELER_BACKENDS.get(name)
    if sep and backend.check_arg is None:
        raise DataError(f"labeler {choice!r}: {name} takes no ':' argument; pass --model/--base-url instead")
    return backend, (arg if sep else None)


def check_choice(choice: str) -> None:
    """Refuse an unknown backend or a bad argument now, before any work (nothing is loaded)."""
    backend, arg = parse_choice(choice)
    if backend.check_arg is not None:
        backend.check_arg(arg)


def make_labeler(choice: str, options: LabelerOptions | None = None) -> AnyLabeler:
    return make_pair(choice, options or LabelerOptions())[0]


def make_pair(
    choice: str,
    options: LabelerOptions,
    auditor_model: str | None = None,
    auditor_base_url: str | None = None,
) -> tuple[AnyLabeler, Labeler | None]:
    """(labeler, auditor) for `choice`: the auditor is the labeler unless another model/endpoint is
    named; backends that are not audited get none (naming an auditor for them is refused)."""
    backend, arg = parse_choice(choice)
    if not backend.audited and (auditor_model or auditor_base_url):
        raise DataError(
            f"labeler {choice!r} writes its labels itself; drop --auditor-model/--auditor-base-url"
        )
    labeler = backend.make(arg, options)
    if not backend.audited:
        return labeler, None
    if auditor_model in (None, options.model) and auditor_base_url in (None, options.base_url):
        return labeler, labeler  # type: ignore[return-value]
    other = replace(
        options, model=auditor_model or options.model, base_url=auditor_base_url or options.base_url
    )
    return labeler, backend.make(arg, other)  # type: ignore[return-value]


def _transformers(arg: str | None, o: LabelerOptions) -> AnyLabeler:
    return TransformersLabeler.from_pretrained(
        o.model, device=o.device, max_new_tokens=o.max_tokens, batch_size=o.batch_size
    )


def _vllm(arg: str | None, o: LabelerOptions) -> AnyLabeler:
    if not engines.vllm_installed():
        raise DataError(f"labeler vllm: vLLM is not installed; {engines.INSTALL_HINT}")
    return VLLMLabeler.from_pretrained(o.model, max_new_tokens=o.max_tokens)


def _openai(arg: str | None, o: LabelerOptions) -> AnyLabeler:
    if not (o.model and o.base_url):
        raise DataError("labeler openai needs --model and --base-url (an OpenAI-compatible endpoint)")
    return OpenAIChatLabeler(
        o.base_url,
        o.model,
        api_key=o.api_key,
        max_tokens=o.max_tokens,
        requests_per_second=o.requests_per_second,
        concurrency=o.concurrency,
        max_retries=o.max_retries,
    )


for _backend in (
    LabelerBackend(
        "transformers",
        "a local model (--model, default the offline default model) writes and audits feature lines "
        "(the LLM path: the way to useful explanations)",
        audited=True,
        make=_transformers,
    ),
    LabelerBackend(
        "vllm",
        "the same on an offline vLLM engine (the vllm extra; no n-gram blocking, so a small model may "
        "repeat itself)",
        audited=True,
        make=_vllm,
    ),
    LabelerBackend(
        "openai",
        "the same through an OpenAI-compatible endpoint (--model and --base-url)",
        audited=True,
        make=_openai,
    ),
    LabelerBackend(
        "context",
        "no model: quotes the last N words of the text (default 10), current token marked; an NLA "
        "trained on it learns to quote context, not to explain",
        audited=False,
        make=lambda arg, o: parse_context_arg(arg),
        check_arg=parse_context_arg,
    ),
):
    LABELER_BACKENDS.add(_backend.name, _backend)
