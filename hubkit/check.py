"""`hubkit check`: lint a base model or an NLA checkpoint before anyone trusts its numbers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from hubkit import constants as C
from hubkit import heads, hub, injection, loading
from hubkit.errors import CheckpointError, HubkitError

log = logging.getLogger(__name__)


@dataclass
class Finding:
    level: str  # "ok" | "info" | "warn" | "error"
    message: str


@dataclass
class CheckReport:
    target: str
    kind: str
    facts: dict[str, object] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level in ("warn", "error")]

    def render(self) -> str:
        lines = [f"hubkit check: {self.target} ({self.kind})"]
        lines += [f"  {k:<28} {v}" for k, v in self.facts.items()]
        marks = {"ok": "ok  ", "info": "info", "warn": "WARN", "error": "FAIL"}
        lines += [f"  [{marks[f.level]}] {f.message}" for f in self.findings]
        lines.append(
            "  result: "
            + ("PASS" if self.ok else "FAIL")
            + (f" with {len(self.warnings)} warning(s)" if self.warnings else "")
        )
        return "\n".join(lines)


def check(
    target: str, base_model: str | None = None, revision: str | None = None, subfolder: str | None = None
) -> CheckReport:
    """Inspect `target` (a registry model name, a model folder, or an NLA checkpoint / repo id)."""
    path = Path(target)
    if not path.exists() and revision is None and subfolder is None:
        from hubkit import models

        local = models.resolve_base(target)  # an offline registry model: its prepared folder
        if local != target:
            return check_base(local, name=target)
    folder = hub.resolve(target, revision=revision, subfolder=subfolder)
    if (folder / C.META_FILE).exists() or (folder / C.AR_META_JSON).exists():
        return check_nla(folder, base_model=base_model, name=target)
    if not (folder / C.MODEL_CONFIG_FILE).exists():
        raise CheckpointError(
            f"{folder}: neither an NLA checkpoint (no {C.META_FILE} or {C.AR_META_JSON}) nor a model folder "
            f"(no {C.MODEL_CONFIG_FILE}); point `hubkit check` at one of those"
        )
    return check_base(str(folder), name=target)


def check_base(path: str, name: str) -> CheckReport:
    """Facts a researcher needs to train an NLA on this base: width, depth, embedding norm, marker."""
    from hubkit import arch

    model = loading.load_causal_lm(path)
    tok = loading.load_tokenizer(path)
    d, n = arch.hidden_size(model), arch.num_layers(model)
    norm = arch.median_embedding_norm(model)
    report = CheckReport(target=name, kind="base model")
    report.facts.update(
        {
            "path": path,
            "architecture": type(model).__name__,
            "d_model": d,
            "layers": n,
            "suggested layer (~2/3)": round(2 * n / 3),
            "embedding scale": arch.embedding_scale(model),
            "median embedding norm": round(norm, 4),
            "chat template": bool(getattr(tok, "chat_template", None)),
        }
    )
    try:
        marker = injection.pick_marker(tok, lambda c: f"Explain {c} now.")
        report.facts["single-token marker"] = repr(marker)
        report.findings.append(Finding("ok", f"marker {marker!r} is one token"))
    except HubkitError as exc:
        report.findings.append(Finding("warn", str(exc)))
    ratio = injection.scale_report(norm, model)
    report.findings.append(
        Finding("info", f"an injection scale near {norm:.3g} matches the embeddings ({ratio.message})")
    )
    return report


def check_nla(folder: Path, base_model: str | None, name: str) -> CheckReport:
    from hubkit.meta import NLAMeta

    report = CheckReport(target=name, kind="NLA checkpoint")
    try:
        meta = NLAMeta.load(folder)
    except HubkitError as exc:
        report.findings.append(Finding("error", str(exc)))
        return report
    report.kind = f"NLA {meta.role.upper()} checkpoint"
    report.facts.update(
        {
            "dialect": meta.converted_from or C.SCHEMA_VERSION,
            "base model": meta.base_model,
            "d_model": meta.d_model,
            "layer": meta.layer,
            "weights": "LoRA adapter" if loading.is_adapter(folder) else meta.adapter.kind,
        }
    )
    if meta.retracted:
        report.findings.append(Finding("warn", f"RETRACTED: {meta.retracted.reason}"))
    if meta.role == "ar":
        assert meta.ar is not None
        report.facts.update(
            {
                "AR kept blocks": meta.ar.num_layers,
                "head": meta.ar.head_format,
                "input norm": meta.ar.input_norm,
            }
        )
        try:
            heads.load_head(folder, meta.ar.head_format, meta.d_model, meta.ar.head_bias)
            report.findings.append(
                Finding(
                    "ok",
                    f"head {heads.HEAD_FILES[meta.ar.head_format]} has shape ({meta.d_model}, {meta.d_model})",
                )
            )
        except HubkitError as exc:
            report.findings.append(Finding("error", str(exc)))
        return report
    assert meta.injection is not None
    report.facts.update(
        {
            "injection": meta.injection.scheme,
            "scale": meta.injection.scale,
            "chat template": meta.av.chat_template,
        }
    )
    if meta.injection.scheme == "residual_add":
        report.findings.append(
            Finding("ok", f"residual addition at block {meta.injection.block}: norm-matched, no scale")
        )
        return report
    try:
        base = loading.resolve_base(base_model or meta.base_model)
        model = loading.load_causal_lm(base)
    except (HubkitError, OSError) as exc:
        report.findings.append(Finding("warn", f"base model not loadable, scale not checked: {exc}"))
        return report
    rep = injection.scale_report(meta.injection_scale_value(), model)
    report.facts["scale / embedding norm"] = None if rep.ratio is None else round(rep.ratio, 3)
    if rep.ok:
        report.findings.append(Finding("ok", rep.message))
    elif meta.injection.ood_allowed:
        report.findings.append(Finding("warn", rep.message + " (recorded as deliberate: ood_allowed)"))
    else:
        report.findings.append(Finding("error", rep.message))
    return report
