"""The NLA round-trip metric as a Hugging Face `evaluate` module: load it by path
(``evaluate.load(".../hubkit/eval/evaluate_module.py")``), pass the original vectors as ``references`` and
the AR's reconstructions as ``predictions``; it returns the headline figures that need only vectors."""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from hubkit.eval.identification import identification
from hubkit.eval.metrics import cosine_rows, fve, nmse_rows, noise_floor, summarize
from hubkit.eval.results_file import round_trip_fields

_DESCRIPTION = """Round-trip fidelity of a Natural Language Autoencoder: cos(v, v̂) per row, summarised with a
seeded bootstrap interval, next to a noise floor (cosine of reconstructions against other rows' vectors)
and identification accuracy against chance, so an AR that writes the same vector for any input shows."""

_INPUTS = """
Args:
    predictions: reconstructions v̂, one list of d floats per row.
    references: original vectors v, one list of d floats per row (same d).
    seed: bootstrap seed (default 0).
    n_boot: bootstrap resamples (default 2000).
Returns:
    cos_mean, cos_ci_low, cos_ci_high, cos_std, cos_median, cos_min, cos_max, nmse_mean, fve, fve_baseline_b,
    noise_floor_p95, noise_floor_mean, frac_above_floor, top1, top5, chance_top1, chance_top5, n.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class NLARoundTrip(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("float32")),
                }
            ),
        )

    def _compute(self, predictions, references, seed: int = 0, n_boot: int = 2000) -> dict:
        v = np.asarray(references, dtype=np.float64)
        v_hat = np.asarray(predictions, dtype=np.float64)
        cos = summarize(cosine_rows(v, v_hat), n_boot=n_boot, seed=seed)
        f = fve(v, v_hat, n_boot=n_boot, seed=seed + 2)
        floor = noise_floor(v, v_hat, seed=seed)
        ident = identification(v, v_hat)
        return round_trip_fields(cos, float(nmse_rows(v, v_hat).mean()), f, floor, ident)
