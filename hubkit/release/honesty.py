"""Honesty checks: a release is refused when its card would say something its files do not support.

* eval.json must have measured exactly the weights being published (sha256 of every shipped file),
  with finite figures and its provenance; its plots and per-checkpoint reports are copied only when
  their sha256 is the one eval.json recorded;
* every number the card prints must be in eval.json (no empty cells, no retyped figures);
* the AV and AR metas (and the eval's own record of them) must describe one NLA;
* an injection scale beyond 50× the base's token-embedding norm must have been recorded as
  deliberate by the training (``injection.ood_allowed``).

Each refusal names the file at fault and what to do.
"""

from __future__ import annotations

import functools
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from hubkit import constants, loading, scale_lint
from hubkit.errors import DataError, first_line
from hubkit.eval.report import EvalReport, read_eval_json, typed_report
from hubkit.eval.yardstick import co_trained
from hubkit.identity import same_base
from hubkit.meta import NLAMeta, check_compatible
from hubkit.provenance import sha256_file
from hubkit.release import cards
from hubkit.release.errors import HonestyError, ReleaseError
from hubkit.release.figures import template_reads
from hubkit.release.spec import LoadedSpec, leaves

# Figures the release code itself reads from eval.json (the model-index, the meta checks, the hash
# checks). What the card templates read is derived from the templates in use (`hubkit.release.figures`).
CODE_READS_PAIR: tuple[str, ...] = (
    "nla.base_model",
    "nla.layer",
    "nla.d_model",
    "nla.injection.scheme",
    "inputs.table.sha256",
    "inputs.table.rows_total",
    "figures.round_trip.all.cos.mean",
    "figures.round_trip.all.fve.value",
    "figures.round_trip.all.nmse.mean",
    "figures.noise_floor.p95",
    "figures.noise_floor.frac_above",
    "figures.identification.top.*.k",
    "figures.identification.top.*.accuracy",
    "figures.identification.top.*.chance",
    "figures.diversity.distinct_frac",
)
CODE_READS_TRAJECTORY: tuple[str, ...] = (
    "nla.base_model",
    "nla.layer",
    "nla.d_model",
    "inputs.table.sha256",
    "figures.trajectory.checkpoints.*.name",
    "figures.trajectory.checkpoints.*.av.files",
    "figures.trajectory.checkpoints.*.ar.files",
    "figures.trajectory.checkpoints.*.cos.mean",
    "figures.trajectory.checkpoints.*.identification.top1",
)


@dataclass(frozen=True)
class CitedEval:
    """An eval.json a release cites: typed (what release code reads), as JSON (what a card prints), and where."""

    report: EvalReport
    data: dict
    path: Path


def cite_eval(ls: LoadedSpec, kind: str, field_name: str = "eval") -> CitedEval:
    """The eval.json of `kind` (pair or trajectory) a spec field names (a file or the folder holding it)."""
    value = getattr(ls.spec, field_name)
    assert value is not None
    path = ls.existing(value, field_name)
    path = path / constants.EVAL_FILE if path.is_dir() else path
    try:
        ev = read_eval_json(path)
    except DataError as exc:
        raise ReleaseError(f"{ls.path}: field `{field_name}`: {exc}") from exc
    try:
        report = typed_report(ev, path)
    except DataError as exc:  # a figure missing or mistyped: the card would print an empty or invented number
        raise HonestyError(f"{exc}. Or release without this eval") from exc
    bad = next(((k, v) for k, v in leaves(ev) if isinstance(v, float) and not math.isfinite(v)), None)
    if bad is not None:
        raise HonestyError(
            f"{path}: figure `{bad[0]}` is {bad[1]}; a card never shows a non-finite number. Re-run "
            "`hubkit eval` (it writes finite figures or stops), or release without this eval"
        )
    prov = ev.get("provenance")
    if not isinstance(prov, dict) or not prov.get("git") or not prov.get("libraries"):
        raise HonestyError(
            f"{path}: no `provenance` (git commit, library versions) recorded; the card's numbers could not "
            "be traced to the code that computed them. Re-run `hubkit eval`"
        )
    if ev.get("kind") != kind:
        how = "`hubkit eval --trajectory RUN`" if kind == "trajectory" else "`hubkit eval --av … --ar …`"
        raise ReleaseError(
            f"{ls.path}: field `{field_name}`: {path} is a {ev.get('kind')!r} eval; a `{ls.spec.kind}` "
            f"release cites a {kind} eval ({how})"
        )
    return CitedEval(report, ev, path)


def copy_output(eval_path: Path, record: dict, dest: Path, what: str) -> None:
    """Copy an eval output (plot, per-checkpoint eval.json) after checking the sha256 eval.json recorded."""
    src = eval_path.parent / record["path"]
    if not src.is_file():
        raise HonestyError(f"{src}: {what} listed in {eval_path} is missing; re-run `hubkit eval`")
    if sha256_file(src) != record["sha256"]:
        raise HonestyError(
            f"{src}: {what} differs from the sha256 {eval_path} recorded; it was not made by this "
            "eval. Re-run `hubkit eval`"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)


def copy_plots(ev: dict, eval_path: Path, dest: Path) -> list[dict]:
    """Copy every plot eval.json lists into ``dest/plots``; ``[{name, path}]`` for the card."""
    plots = (ev.get("outputs") or {}).get("plots") or {}
    out = []
    for name, rec in sorted(plots.items()):
        target = dest / constants.PLOTS_DIR / Path(rec["path"]).name
        copy_output(eval_path, rec, target, f"plot {name!r}")
        out.append({"name": name.replace("_", " "), "path": f"{constants.PLOTS_DIR}/{target.name}"})
    return out


_MISSING = object()


def _walk(data: Any, parts: list[str], done: str) -> list[tuple[str, Any]]:
    """Values at a dotted path (``*`` fans out over list items), with the concrete path of each."""
    if not parts:
        return [(done, data)]
    head, rest = parts[0], parts[1:]
    if head == "*":
        if not isinstance(data, list) or not data:
            return [(done, _MISSING if not isinstance(data, list) else [])]
        return [hit for i, item in enumerate(data) for hit in _walk(item, rest, f"{done}[{i}]")]
    if not isinstance(data, dict) or head not in data:
        return [(f"{done}.{head}".lstrip("."), _MISSING)]
    return _walk(data[head], rest, f"{done}.{head}".lstrip("."))


def check_required(
    data: dict,
    required: tuple[str, ...],
    eval_path: str | Path,
    template: str | None = None,
    allow_null: bool = False,
) -> None:
    """Refuse when a figure the card prints is absent, null or an empty list in eval.json.

    With `allow_null`, only absence is refused (a figure the template tests for ``none``).
    """
    for dotted in required:
        for where, value in _walk(data, dotted.split("."), ""):
            if value is _MISSING or (not allow_null and (value is None or value == [])):
                state = "missing" if value is _MISSING else "null" if value is None else "an empty list"
                what = (
                    f"card template {template} reads `{where}`, which"
                    if template
                    else f"required figure `{where}`"
                )
                raise HonestyError(
                    f"{eval_path}: {what} is {state}; the card would print an empty or invented number. "
                    "Re-run `hubkit eval` on enough rows (this hubkit writes every figure), or release "
                    "without this eval"
                )


def check_card_figures(
    data: dict,
    eval_path: str | Path,
    template: str,
    code_reads: tuple[str, ...],
    cards_dir: str | Path | None = None,
) -> None:
    """Every figure the release code and the card `template` (as found in `cards_dir`) read must be there."""
    check_required(data, code_reads, eval_path)
    try:
        reads = template_reads(cards.environment(cards_dir), template)
    except jinja2.TemplateSyntaxError as exc:
        where = f"{exc.filename or exc.name or template}, line {exc.lineno}"
        raise HonestyError(f"card template {where}: {exc.message}; fix the template (jinja2 syntax)") from exc
    check_required(data, tuple(reads.required), eval_path, template)
    check_required(data, tuple(reads.present), eval_path, template, allow_null=True)


def check_hashes(
    shipped: dict[str, str], recorded: dict[str, str], eval_path: str | Path, source: str | Path, label: str
) -> None:
    """Every file shipped from `source` must be one eval.json measured, byte for byte (sha256).

    `shipped` and `recorded` map paths relative to the checkpoint folder to sha256. Files eval.json
    records but the bundle leaves out (a README, trainer state) do not matter; a shipped file that is
    unrecorded or differs means the card would cite numbers of other weights.
    """
    if not recorded:
        raise HonestyError(
            f"{eval_path}: records no file hashes for the {label} checkpoint, so its numbers cannot be tied to "
            f"{source}. Re-run `hubkit eval` with the checkpoint folders (it hashes them)"
        )
    for rel, sha in sorted(shipped.items()):
        want = recorded.get(rel)
        if want is None:
            raise HonestyError(
                f"{Path(source) / rel}: not among the files {eval_path} measured for the {label} checkpoint; "
                "the card would cite numbers of other weights. Re-run `hubkit eval` on this checkpoint"
            )
        if want != sha:
            raise HonestyError(
                f"{Path(source) / rel}: sha256 {sha[:12]}… differs from {want[:12]}… recorded in {eval_path} for the "
                f"{label} checkpoint; the card would cite numbers of other weights. Re-run `hubkit eval` on "
                "the checkpoint being released (or release the checkpoint that was evaluated)"
            )


def check_pair_metas(av: NLAMeta, ar: NLAMeta, av_file: str | Path, ar_file: str | Path) -> None:
    """The two halves must share base model, layer and width."""
    try:
        check_compatible(av, ar)
    except Exception as exc:
        raise HonestyError(f"{av_file} and {ar_file} disagree: {exc}") from exc


def check_meta_against_eval(meta: NLAMeta, nla: dict, meta_file: str | Path, eval_path: str | Path) -> None:
    """The checkpoint's meta must be the NLA eval.json says it measured (base model, layer, width)."""
    problems = [
        f"{k} {getattr(meta, k)} vs {nla.get(k)}"
        for k in ("d_model", "layer")
        if nla.get(k) != getattr(meta, k)
    ]
    if not same_base(str(nla.get("base_model")), meta.base_model):
        problems.append(f"base_model {meta.base_model!r} vs {nla.get('base_model')!r}")
    if problems:
        raise HonestyError(
            f"{meta_file} disagrees with what {eval_path} measured: "
            + "; ".join(problems)
            + ". Release the NLA that was evaluated, or evaluate this one"
        )


@functools.lru_cache(maxsize=8)
def base_norms(model_path: str, layer: int | None) -> tuple[float, float | None]:
    """(median token-embedding norm after the model's own scaling, median residual norm at `layer` on
    the bundled corpus) of the model at `model_path`: the two yardsticks of `hubkit.scale_lint`."""
    path = loading.resolve_base(model_path)
    model = loading.load_causal_lm(path)
    if layer is None:
        return scale_lint.embedding_norm(model), None
    residual = scale_lint.corpus_residual_norm(model, loading.load_tokenizer(path), layer)
    return scale_lint.embedding_norm(model), residual


def measure_scale(
    scale: float | None,
    model_path: str,
    where: str | Path,
    ood_allowed: bool | None = None,
    layer: int | None = None,
) -> dict | None:
    """``{scale, embedding_norm, residual_norm, ratio, ratio_to_residual, within_factor, factor, ood_allowed,
    measured_on}`` judged by `hubkit.scale_lint.lint_scale`; ``None`` without a scale."""
    if scale is None:
        return None
    try:
        norm, residual = base_norms(str(model_path), layer)
    except Exception as exc:
        raise HonestyError(
            f"{where}: cannot measure injection scale {scale:.4g} against the token-embedding norm: the model "
            f"{model_path!r} does not load ({first_line(exc)}). Set "
            "`base_model:` in the release spec to a local folder of the base weights"
        ) from exc
    lint = scale_lint.lint_scale(scale, norm, residual)
    return {
        "scale": scale,
        "embedding_norm": norm,
        "residual_norm": residual,
        "ratio": lint.ratio_to_embedding,
        "ratio_to_residual": lint.ratio_to_residual,
        "within_factor": lint.ok,
        "factor": lint.factor,
        "ood_allowed": ood_allowed,
        "measured_on": str(model_path),
    }


def injection_scale(
    meta: NLAMeta, meta_file: str | Path, checkpoint: str | Path, base_model: str | None = None
) -> dict | None:
    """The AV's scale against the embedding norm (`measure_scale`), refused beyond 50× unless deliberate.

    ``None`` when nothing is rescaled (residual addition or raw vectors). The norm is measured on the
    weights the AV runs on: its own folder for full weights, else the base (`base_model` overrides).
    """
    if meta.role != "av" or meta.injection is None:
        return None
    where = str(checkpoint) if not loading.is_adapter(Path(checkpoint)) else (base_model or meta.base_model)
    info = measure_scale(
        meta.injection_scale_value(), where, meta_file, bool(meta.injection.ood_allowed), layer=meta.layer
    )
    if info is not None and not info["within_factor"] and not meta.injection.ood_allowed:
        residual = (
            f" and {info['ratio_to_residual']:.3g}× the median residual norm {info['residual_norm']:.4g} at layer "
            f"{meta.layer}"
            if info["residual_norm"] is not None
            else ""
        )
        raise HonestyError(
            f"{meta_file}: injection scale {info['scale']:.4g} is {info['ratio']:.3g}× the median token-embedding "
            f"norm {info['embedding_norm']:.4g}{residual} of {where}, beyond {constants.OOD_SCALE_FACTOR:g}× either way (above "
            f"the larger norm or below the smaller), and the training did not record it as deliberate (`injection.ood_allowed: true`). Such checkpoints have had "
            "to be retracted; fix the scale and retrain, or retrain with --allow-ood-injection if it is intended"
        )
    return info


def check_yardstick(
    ar_metas: dict[str, NLAMeta], has_fixed: dict[str, bool], eval_path: str | Path, note: str | None
) -> None:
    """Refuse figures whose only yardstick is an AR trained against the AV it scores (GRPO's
    ``train_ar``), unless the card says so in the author's words (`card.co_trained_ar`).

    `ar_metas` maps a checkpoint name to its AR's meta, `has_fixed` to whether eval.json also holds the
    frozen SFT AR's figures for it."""
    only = sorted(n for n, m in ar_metas.items() if co_trained(m) and not has_fixed.get(n, False))
    if only and not (note or "").strip():
        raise HonestyError(
            f"{eval_path}: the figures of {', '.join(only)} come only from an AR trained alongside its AV in "
            "RL, which flatters the pair. Re-run `hubkit eval --fixed-ar <the SFT AR the run started from>` "
            "so the frozen AR's figures stand beside them, or say so in the card (`card.co_trained_ar`)"
        )
