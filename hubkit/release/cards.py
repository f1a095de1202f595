"""Model and dataset cards: YAML header from ``ModelCardData``/``DatasetCardData``, body from jinja2.

Bodies are rendered from ``templates/*.md.j2`` (package data) with ``StrictUndefined``: a figure the
template names but eval.json lacks is an error, never an empty cell. Number filters (``f3``, ``pct``,
``g2``, ``n`` for counts, ``t`` for text) refuse ``None`` for the same reason. A user's ``--cards DIR``
is searched first, so one template can be overridden and the others kept.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData

from hubkit.eval.report import EvalReport
from hubkit.release.errors import ReleaseError

DEFAULT_CARDS = Path(__file__).resolve().parent / "templates"
MODEL_TEMPLATE = "model.md.j2"
TRAJECTORY_TEMPLATE = "trajectory.md.j2"
DATASET_TEMPLATE = "dataset.md.j2"
LIBRARY_NAME = "hubkit"
BASE_TAGS = ("nla", "interpretability", "activation-decoding", "hubkit")
TASK_TYPE = "feature-extraction"
TASK_NAME = "NLA round trip (vector -> explanation -> vector)"
HUB_URL = "https://huggingface.co"


def _number(fmt: str):
    def f(value: Any) -> str:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ReleaseError(f"a card template formats {value!r} as a number; eval.json lacks this figure")
        if not math.isfinite(value):
            raise ReleaseError(f"a card template formats {value!r}: a card never shows a non-finite number")
        return fmt.format(value)

    return f


def _count(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ReleaseError(f"a card template formats {value!r} as a count; eval.json lacks this figure")
    return str(value)


def _text(value: Any) -> str:
    if value is None:
        raise ReleaseError("a card template prints a text figure that is null; eval.json lacks this figure")
    return str(value)


def environment(cards_dir: str | Path | None = None):
    """A strict jinja2 environment over `cards_dir` (searched first) and the default templates."""
    paths = [str(DEFAULT_CARDS)]
    if cards_dir is not None:
        user = Path(cards_dir)
        if not user.is_dir():
            raise ReleaseError(f"--cards {user}: no such folder of card templates")
        paths.insert(0, str(user))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(
        f3=_number("{:.3f}"),
        f4=_number("{:.4f}"),
        g2=_number("{:.2g}"),
        g4=_number("{:.4g}"),
        pct=_number("{:.1%}"),
        n=_count,
        t=_text,
        short=lambda s: str(s)[:12],
    )
    return env


def render_body(template: str, context: dict, cards_dir: str | Path | None = None) -> str:
    """Render one body template; an undefined name or a missing figure names the template."""
    try:
        return environment(cards_dir).get_template(template).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise ReleaseError(f"card template {exc.name!r} not found in {cards_dir or DEFAULT_CARDS}") from exc
    except jinja2.UndefinedError as exc:
        raise ReleaseError(
            f"card template {template}: {exc} (the template names a value the release lacks)"
        ) from exc
    except jinja2.TemplateError as exc:
        raise ReleaseError(f"card template {template}: {type(exc).__name__}: {exc}") from exc


# -- model-index --------------------------------------------------------------------------------
def _eval_result(
    table: dict, metric_type: str, name: str, value: float, dataset_type: str, config: str | None = None
):
    return EvalResult(
        task_type=TASK_TYPE,
        task_name=TASK_NAME,
        dataset_type=dataset_type,
        dataset_name=f"held-out eval table ({table.get('rows_evaluated', table['rows_total'])} rows)",
        dataset_split="eval",
        dataset_revision=table["sha256"],
        metric_type=metric_type,
        metric_name=name,
        metric_value=float(value),
        metric_config=config,
    )


def pair_eval_results(report: EvalReport, dataset_type: str) -> list:
    """The headline figures of a pair eval as ``EvalResult``s (the card header's model-index)."""
    f = report.figures
    rt = f.round_trip.all
    figures = [
        ("cosine", "round-trip cosine (mean)", rt.cos.mean),
        ("fve", "fraction of variance explained", rt.fve.value),
        ("nmse", "normalised MSE (mean)", rt.nmse.mean),
        ("noise_floor_p95", "noise floor (p95 of mismatched cosines)", f.noise_floor.p95),
        ("frac_above_noise_floor", "rows above the noise floor", f.noise_floor.frac_above),
        *((f"identification_top{t.k}", f"identification top-{t.k} (chance {t.chance:.3g})", t.accuracy)
          for t in f.identification.top),
        ("distinct_explanations", "distinct explanations (fraction)", f.diversity.distinct_frac),
    ]  # fmt: skip
    return [_eval_result(report.inputs["table"], *figure, dataset_type) for figure in figures]


def trajectory_eval_results(report: EvalReport, dataset_type: str, retracted: set[str]) -> list:
    """Per-checkpoint cosine and top-1 identification, one ``metric_config`` per step (retracted ones left out)."""
    table = report.inputs["table"]
    return [
        _eval_result(table, metric, f"{name}, {p.name}", value, dataset_type, p.name)
        for p in report.figures.trajectory.checkpoints
        if p.name not in retracted
        for metric, name, value in (
            ("cosine", "round-trip cosine (mean)", p.cos.mean),
            ("identification_top1", "identification top-1", p.identification.top1),
        )
    ]


# -- cards --------------------------------------------------------------------------------------
def _card(card_class: type, data: Any, template: str, context: dict, cards_dir: str | Path | None) -> str:
    body = render_body(template, context, cards_dir)
    return str(card_class(f"---\n{data.to_yaml()}\n---\n\n{body.lstrip()}"))


def model_card(
    context: dict, template: str, cards_dir: str | Path | None, *, tags: list[str], **header: Any
) -> str:
    """A model card: ``ModelCardData`` header (`header`: base model, license, datasets, model-index…) + body."""
    data = ModelCardData(library_name=LIBRARY_NAME, tags=list(dict.fromkeys([*BASE_TAGS, *tags])), **header)
    return _card(ModelCard, data, template, context, cards_dir)


def dataset_card(
    context: dict, cards_dir: str | Path | None, *, tags: list[str], rows: int, **header: Any
) -> str:
    """A dataset card: ``DatasetCardData`` header (`header`: license, language, parquet configs…) + body."""
    tags = list(dict.fromkeys([*BASE_TAGS, *tags]))
    data = DatasetCardData(tags=tags, size_categories=[size_category(rows)], **header)
    return _card(DatasetCard, data, DATASET_TEMPLATE, context, cards_dir)


def size_category(n: int) -> str:
    """The Hub's size bucket for `n` rows."""
    names = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M")
    return next((name for i, name in enumerate(names) if n < 1000 * 10**i), "100M<n<1B")
