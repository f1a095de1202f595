"""`hubkit check`: lint a base model or an NLA checkpoint before anyone trusts its numbers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from hubkit import arch, heads, hub, identity, injection, loading, models, scale_lint
from hubkit import constants as C
from hubkit.errors import CheckpointError, HubkitError
from hubkit.layers import default_layer
from hubkit.meta import NLAMeta
from hubkit.models import shorten

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

    def add(self, level: str, message: str) -> None:
        self.findings.append(Finding(level, message))

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level in ("warn", "error")]

    def render(self) -> str:
        lines = [f"hubkit check: {self.target} ({self.kind})"]
        lines += [f"  {k:<28} {v}" for k, v in self.facts.items()]
        marks = {"ok": "ok  ", "info": "info", "warn": "WARN", "error": "FAIL"}
        lines += [f"  [{marks[f.level]}] {f.message}" for f in self.findings]
        warned = f" with {len(self.warnings)} warning(s)" if self.warnings else ""
        return "\n".join([*lines, f"  result: {'PASS' if self.ok else 'FAIL'}{warned}"])


def check(
    target: str, base_model: str | None = None, revision: str | None = None, subfolder: str | None = None
) -> CheckReport:
    """Inspect `target` (a registry model name, a model folder, or an NLA checkpoint / repo id)."""
    try:
        by_name = revision is None and subfolder is None and not identity.is_machine_path(target)
        if by_name and not Path(target).exists() and (local := models.resolve_base(target)) != target:
            return check_base(local, name=target)  # an offline registry model: its prepared folder
        folder = hub.resolve(target, revision=revision, subfolder=subfolder)
        if (folder / C.META_FILE).exists() or (folder / C.AR_META_JSON).exists():
            return check_nla(folder, base_model=base_model, name=target)
        if not (folder / C.MODEL_CONFIG_FILE).exists():
            raise CheckpointError(
                f"{folder}: neither an NLA checkpoint (no {C.META_FILE} or {C.AR_META_JSON}) nor a model "
                f"folder (no {C.MODEL_CONFIG_FILE}); point `hubkit check` at one of those"
            )
        return check_base(str(folder), name=target)
    except OSError as exc:  # a name too long, a folder that cannot be read, a file name the disk refuses
        where = f" ({shorten(str(exc.filename))})" if exc.filename and str(exc.filename) != target else ""
        raise CheckpointError(
            f"cannot check {shorten(target)}: {exc.strerror or exc}{where}; point `hubkit check` at a folder "
            "or repo whose file names this machine can hold"
        ) from exc


def check_base(path: str, name: str) -> CheckReport:
    """Facts a researcher needs to train an NLA on this base: width, depth, both norms, marker."""
    model = loading.load_causal_lm(path)
    tok = loading.load_tokenizer(path)
    d, n = arch.hidden_size(model), arch.num_layers(model)
    layer = default_layer(n)
    emb = scale_lint.embedding_norm(model)
    res = scale_lint.corpus_residual_norm(model, tok, layer)
    report = CheckReport(target=name, kind="base model")
    report.facts.update(
        {
            "path": path,
            "architecture": type(model).__name__,
            "d_model": d,
            "layers": n,
            "suggested layer (~2/3)": layer,
            "embedding scale": arch.embedding_scale(model),
            "median embedding norm": round(emb, 4),
            f"median residual norm (L{layer})": round(res, 4),
            "chat template": bool(getattr(tok, "chat_template", None)),
        }
    )
    try:
        marker = injection.pick_marker(tok, lambda c: f"Explain {c} now.")
        report.facts["single-token marker"] = repr(marker)
        report.add("ok", f"marker {marker!r} is one token")
    except HubkitError as exc:
        report.add("warn", str(exc))
    f = scale_lint.OOD_SCALE_FACTOR
    lo, hi = min(emb, res), max(emb, res)
    report.add(
        "info",
        f"injection scales from {lo / f:.3g} to {hi * f:.3g} pass the lint at layer {layer} (embedding norm "
        f"{emb:.4g}, residual norm {res:.4g}; {f:g}× either way)",
    )
    return report


def check_nla(folder: Path, base_model: str | None, name: str) -> CheckReport:
    report = CheckReport(target=name, kind="NLA checkpoint")
    try:
        meta = NLAMeta.load(folder, check_depth=False)
    except HubkitError as exc:
        report.add("error", str(exc))
        return report
    base = base_model or meta.base_model
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
        report.add("warn", f"RETRACTED: {meta.retracted.reason}")
    if identity.missing_local_path(base):
        level = "error" if loading.is_adapter(folder) else "info"
        why = "; pass --base-model with the base's folder or Hub id" if level == "error" else ""
        why = why or " (a path on the machine that trained it; this checkpoint holds its own weights)"
        report.add(level, f"base model {shorten(base)!r} is a local folder that does not exist here{why}")
    if (found := identity.base_blocks(folder, base)) is not None:  # the layer must fit in the model's blocks
        report.facts["model blocks"] = found[0]
        if problem := meta.depth_problem(*found):
            report.add("error", problem)
    if meta.role == "ar":
        _check_ar(report, meta, folder)
    else:
        _check_av(report, meta, folder, base)
    return report


def _check_ar(report: CheckReport, meta: NLAMeta, folder: Path) -> None:
    report.facts.update(
        {"AR kept blocks": meta.ar.num_layers, "head": meta.ar.head_format, "input norm": meta.ar.input_norm}
    )
    try:
        heads.load_head(folder, meta.ar.head_format, meta.d_model, meta.ar.head_bias)
        shape = f"({meta.d_model}, {meta.d_model})"
        report.add("ok", f"head {heads.HEAD_FILES[meta.ar.head_format]} has shape {shape}")
    except HubkitError as exc:
        report.add("error", str(exc))


def _check_av(report: CheckReport, meta: NLAMeta, folder: Path, base: str) -> None:
    inj = meta.injection
    report.facts.update({"injection": inj.scheme, "scale": inj.scale, "chat template": meta.av.chat_template})
    if not inj.needs_scale:
        report.add("ok", f"residual addition at block {inj.block}: norm-matched, no scale")
        return
    if any(f.level == "error" for f in report.findings):
        return  # the base or the layer is wrong: the lint would measure the wrong thing
    own_weights = (folder / C.MODEL_CONFIG_FILE).exists() and not loading.is_adapter(folder)
    try:
        source = str(folder) if own_weights else loading.resolve_base(base)
        model = loading.load_causal_lm(source)
        tok = loading.load_tokenizer(folder, source)
    except (HubkitError, OSError, ValueError) as exc:
        report.add("warn", f"base model not loadable, scale not checked: {exc}")
        return
    res = None if meta.layer is None else scale_lint.corpus_residual_norm(model, tok, meta.layer)
    lint = scale_lint.lint_scale(meta.injection_scale_value(), scale_lint.embedding_norm(model), res)
    for norm, ratio in (("embedding", lint.ratio_to_embedding), ("residual", lint.ratio_to_residual)):
        report.facts[f"scale / {norm} norm"] = None if ratio is None else round(ratio, 3)
    if lint.ok:
        report.add("ok", lint.message)
    elif meta.injection.ood_allowed:
        report.add("warn", lint.message + " (recorded as deliberate: ood_allowed)")
    else:
        report.add("error", lint.message)
