"""Spliced loss: how much of the base's next-token behaviour survives when the reconstruction replaces the vector.

The standard faithfulness figure of sparse-autoencoder work (SAELens reports it for every SAE), here per
vector: at one position of a token sequence, the residual stream at the output of block L is replaced by

- the original vector (the base's own behaviour; an exact no-op when the vector was read from this sequence),
- the AR's reconstruction, rescaled to the original's L2 norm (its direction is what the NLA carries),
- the mean vector (of the eval set, or of the bundled corpus for `hubkit inspect`), as it is,
- zero,

and the base runs on to its next-token distribution at that position. Per row: the cross-entropy of each
(against the next token when it is known; else against the original's own distribution, so that
``CE_orig`` is its entropy and ``CE_x − CE_orig = KL``), and ``KL(original ‖ spliced)``. The headline is the
**fraction of loss recovered** ``(CE_mean − CE_recon) / (CE_mean − CE_orig)`` (of the mean CEs, with a
bootstrap interval over rows): 1 when the reconstruction is as good as the original, 0 when it is no
better than the mean vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from hubkit import arch
from hubkit.base_access import base_of
from hubkit.data.extract import tokenize
from hubkit.errors import DataError
from hubkit.eval.metrics import DEFAULT_BOOT, Plain, Summary, bootstrap_ci, summarize

CONDITIONS = ("original", "reconstruction", "mean", "zero")
TARGET_NEXT, TARGET_OWN = "next_token", "original_distribution"
DEFAULT_BATCH = 8


def rescale_to(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Rows of `v` rescaled to the L2 norms of the rows of `like` (a zero row stays zero)."""
    norm = v.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, v * like.norm(dim=-1, keepdim=True) / norm.clamp_min(1e-30), v)


def _splice_hook(rows: torch.Tensor, positions: torch.Tensor, values: torch.Tensor):
    def hook(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden.clone()
        hidden[rows, positions] = values.to(hidden.dtype)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return hook


@torch.no_grad()
def spliced_logprobs(
    model: nn.Module,
    layer: int,
    sequences: Sequence[Sequence[int]],
    positions: Sequence[int],
    values: torch.Tensor,
) -> torch.Tensor:
    """Next-token log-probabilities ``[N, V]`` (float32) at ``positions[i]`` of ``sequences[i]`` with the output
    of block `layer` at that position replaced by ``values[i]``; each sequence is cut after its position
    (later tokens cannot change it) and the rows run as one right-padded batch."""
    tm, layers = arch.text_model(model), arch.decoder_layers(model)
    device = next(model.parameters()).device
    rows = [torch.tensor(list(s[: p + 1]), dtype=torch.long) for s, p in zip(sequences, positions)]
    ids, mask = arch.right_padded(rows)
    idx = torch.arange(len(rows), device=device)
    pos = torch.tensor([len(r) - 1 for r in rows], device=device)
    handle = layers[layer].register_forward_hook(_splice_hook(idx, pos, values.to(device)))
    try:
        hidden = tm(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)[0]
    finally:
        handle.remove()
    logits = model.get_output_embeddings()(hidden[idx, pos]).float()
    cap = getattr(arch.text_config(model), "final_logit_softcapping", None)
    if cap:
        logits = cap * torch.tanh(logits / cap)
    return torch.log_softmax(logits, dim=-1)


@dataclass
class SplicedRows:
    """Per-row cross-entropies and KLs (float64 arrays, one entry per row) and each row's CE target."""

    ce: dict[str, np.ndarray]  # condition -> [N]
    kl: dict[str, np.ndarray]  # condition other than original -> [N]
    targets: list[str]

    def __len__(self) -> int:
        return len(self.targets)


def spliced_rows(
    model: nn.Module,
    layer: int,
    sequences: Sequence[Sequence[int]],
    positions: Sequence[int],
    original: torch.Tensor,
    reconstruction: torch.Tensor,
    mean: torch.Tensor,
    next_tokens: Sequence[int | None] | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> SplicedRows:
    """CE and KL of each condition at each row (see the module docstring); `next_tokens[i]` None (or no
    list) scores row i against the original's own distribution."""
    n = len(sequences)
    if not (len(positions) == n == original.shape[0] == reconstruction.shape[0]):
        raise DataError(
            f"spliced loss: {n} sequences, {len(positions)} positions, {original.shape[0]} vectors and "
            f"{reconstruction.shape[0]} reconstructions must be as many"
        )
    for s, p in zip(sequences, positions):
        if not 0 <= p < len(s):
            raise DataError(f"spliced loss: position {p} is outside a sequence of {len(s)} tokens")
    targets = list(next_tokens) if next_tokens is not None else [None] * n
    orig = original.float()
    values = {
        "original": orig,
        "reconstruction": rescale_to(reconstruction.float(), orig),
        "mean": mean.float().reshape(1, -1).expand_as(orig),
        "zero": torch.zeros_like(orig),
    }
    ce = {c: np.empty(n) for c in CONDITIONS}
    kl = {c: np.empty(n) for c in CONDITIONS[1:]}
    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))
        k = sl.stop - sl.start
        seqs = list(sequences[sl]) * len(CONDITIONS)
        pos = list(positions[sl]) * len(CONDITIONS)
        lp = spliced_logprobs(model, layer, seqs, pos, torch.cat([values[c][sl] for c in CONDITIONS]))
        lp = lp.double().cpu().reshape(len(CONDITIONS), k, -1)
        p_orig = lp[0].exp()
        for ci, c in enumerate(CONDITIONS):
            for j in range(k):
                t = targets[sl.start + j]
                ce[c][sl.start + j] = (
                    float(-lp[ci, j, t]) if t is not None else float(-(p_orig[j] * lp[ci, j]).sum())
                )
            if ci:
                kl[c][sl] = (p_orig * (lp[0] - lp[ci])).sum(-1).numpy()
    return SplicedRows(ce=ce, kl=kl, targets=[TARGET_OWN if t is None else TARGET_NEXT for t in targets])


def recovered(ce_orig: np.ndarray, ce_recon: np.ndarray, ce_base: np.ndarray) -> float | None:
    """``(mean CE_base − mean CE_recon) / (mean CE_base − mean CE_orig)``; None when the denominator is 0."""
    den = float(ce_base.mean() - ce_orig.mean())
    return None if abs(den) < 1e-12 else float(ce_base.mean() - ce_recon.mean()) / den


def recovered_interval(
    rows: SplicedRows, base: str = "mean", n_boot: int = DEFAULT_BOOT, seed: int = 0
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of `recovered` (rows resampled together: the bootstrap draws row indices)."""
    if len(rows) < 2:
        return None, None
    o, r, b = rows.ce["original"], rows.ce["reconstruction"], rows.ce[base]

    def stat(idx: np.ndarray) -> np.ndarray:
        i = idx.astype(np.int64)
        den = b[i].mean(axis=1) - o[i].mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.abs(den) < 1e-12, np.nan, (b[i].mean(axis=1) - r[i].mean(axis=1)) / den)

    lo, hi = bootstrap_ci(np.arange(len(rows)), stat=stat, n_boot=n_boot, seed=seed)
    return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) else (None, None)


@dataclass
class SplicedLoss(Plain):
    """The eval.json section ``figures.spliced_loss``."""

    n: int
    layer: int
    target: str  # next_token | original_distribution | mixed
    mean_source: str  # where the mean vector came from
    ce_original: Summary
    ce_reconstruction: Summary
    ce_mean: Summary
    ce_zero: Summary
    kl_reconstruction: Summary
    kl_mean: Summary
    kl_zero: Summary
    frac_recovered: float | None
    frac_recovered_ci_low: float | None
    frac_recovered_ci_high: float | None
    frac_recovered_vs_zero: float | None
    rows: SplicedRows | None = field(default=None, repr=False)

    def headline(self, digits: int = 4) -> str:
        """``CE orig …, recon …, mean …, zero …; loss recovered X [lo, hi]`` (one line for a terminal or transcript)."""
        f = f".{digits}f"
        names = ("orig", "recon", "mean", "zero")
        ces = ", ".join(f"{name} {getattr(self, f'ce_{c}').mean:{f}}" for name, c in zip(names, CONDITIONS))
        rec = "n/a" if self.frac_recovered is None else f"{self.frac_recovered:{f}}"
        if self.frac_recovered_ci_low is not None:
            rec += f" [{self.frac_recovered_ci_low:{f}}, {self.frac_recovered_ci_high:{f}}]"
        return f"CE {ces}; KL recon {self.kl_reconstruction.mean:{f}}; loss recovered {rec}"


def summarize_spliced(
    rows: SplicedRows, layer: int, mean_source: str, n_boot: int = DEFAULT_BOOT, seed: int = 0
) -> SplicedLoss:
    """The section's figures from per-row values: summaries with intervals and the fraction recovered."""
    kinds = set(rows.targets)
    lo, hi = recovered_interval(rows, n_boot=n_boot, seed=seed + 7)
    s = {f"ce_{c}": summarize(rows.ce[c], n_boot, seed + i) for i, c in enumerate(CONDITIONS)}
    s |= {f"kl_{c}": summarize(rows.kl[c], n_boot, seed + 4 + i) for i, c in enumerate(CONDITIONS[1:])}
    return SplicedLoss(
        n=len(rows),
        layer=layer,
        target=kinds.pop() if len(kinds) == 1 else "mixed",
        mean_source=mean_source,
        frac_recovered=recovered(rows.ce["original"], rows.ce["reconstruction"], rows.ce["mean"]),
        frac_recovered_ci_low=lo,
        frac_recovered_ci_high=hi,
        frac_recovered_vs_zero=recovered(rows.ce["original"], rows.ce["reconstruction"], rows.ce["zero"]),
        rows=rows,
        **s,
    )


def row_columns(sl: SplicedLoss) -> dict:
    """Per-row columns for rows.parquet (``spliced_ce_<condition>``, ``spliced_kl_<condition>``)."""
    import pyarrow as pa

    assert sl.rows is not None
    ce = {f"spliced_ce_{c}": pa.array(sl.rows.ce[c]) for c in CONDITIONS}
    return ce | {f"spliced_kl_{c}": pa.array(sl.rows.kl[c]) for c in CONDITIONS[1:]}


def eval_spliced_loss(
    pair,
    prefixes: Sequence[str],
    vectors: torch.Tensor,
    reconstructions: torch.Tensor,
    *,
    base_model: str | None = None,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
) -> SplicedLoss:
    """Spliced loss of an eval table's rows: each row's ``prefix`` is tokenized as extraction does (BOS first)
    and the splice is at its last token; the table has no next token, so CE is against the original's own
    next-token distribution; the mean vector is the mean of the eval vectors."""
    layer = pair.av.meta.layer
    with base_of(pair, base_model=base_model) as base:
        seqs = tokenize(base.tokenizer, list(prefixes), add_bos=True, max_length=1 << 62)
        if empty := [i for i, s in enumerate(seqs) if not s]:
            raise DataError(
                f"spliced loss: eval rows {empty[:5]} have an empty prefix and no BOS to splice at"
            )
        v, v_hat = vectors.float(), torch.as_tensor(reconstructions).float()
        last = [len(s) - 1 for s in seqs]
        rows = spliced_rows(base.model, layer, seqs, last, v, v_hat, v.mean(dim=0), batch_size=batch_size)
    return summarize_spliced(rows, layer, f"mean of the {len(seqs)} eval vectors", n_boot=n_boot, seed=seed)
