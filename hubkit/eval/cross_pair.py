"""Cross-pair matrix: several AVs × several ARs on one eval table.

Each AV generates once; each AR reads every AV's explanations. A cell holds the round-trip figures a pair
eval of that AV and AR reports, with the same seeds, so it equals the separate eval of that pair. Every cell
and every AV against the table is checked *before* any model is loaded: never half a matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hubkit.errors import IncompatiblePairError, MetaError
from hubkit.eval.ablations import reconstruct_unique
from hubkit.eval.generation import Generation
from hubkit.eval.identification import TopK, from_ranks, ranks
from hubkit.eval.metrics import DEFAULT_BOOT, FVE, Plain, Summary, cosine_rows, fve, noise_floor, summarize
from hubkit.eval.table import EvalTable, check_against_meta
from hubkit.meta import NLAMeta, check_compatible
from hubkit.reconstructor import ActivationReconstructor
from hubkit.verbalizer import ActivationVerbalizer

log = logging.getLogger(__name__)

# A half is a checkpoint folder (loaded when its turn comes, then released) or a loaded half with `.meta`.
Half = Any


@dataclass
class Cell:
    av: str
    ar: str
    n: int
    n_excluded: int  # AV outputs that did not parse (included in the figures, as in a pair eval)
    cos: Summary
    fve: FVE
    noise_floor_p95: float
    frac_above_floor: float
    identification: list[TopK]
    mean_rank: float


@dataclass
class CrossPair(Plain):
    avs: list[str]
    ars: list[str]
    n: int
    cells: list[Cell]  # AV-major: cells[i * len(ars) + j] is (avs[i], ars[j])
    this_pair: dict[str, str] | None = None  # {"av": name, "ar": name} when part of a pair eval
    explanations: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def cell(self, av: str, ar: str) -> Cell:
        for c in self.cells:
            if c.av == av and c.ar == ar:
                return c
        raise KeyError(f"no cell ({av!r}, {ar!r}) in this matrix (AVs {self.avs}, ARs {self.ars})")

    def matrix(self, figure: Callable[[Cell], float | None]) -> np.ndarray:
        """``[len(avs), len(ars)]`` of one figure per cell (``None`` becomes NaN)."""
        return np.array([figure(c) for c in self.cells], dtype=float).reshape(len(self.avs), len(self.ars))

    def headline(self) -> str:
        """One line per AV: cosine / top-1 against each AR."""
        lines = [
            f"cross-pair matrix on {self.n} rows (cos / top-1; chance {1 / self.n:.3f}); ARs: {', '.join(self.ars)}"
        ]
        for a in self.avs:
            cells = [self.cell(a, r) for r in self.ars]
            lines.append(
                f"  {a}: " + "  ".join(f"{c.cos.mean:.4f}/{c.identification[0].accuracy:.3f}" for c in cells)
            )
        return "\n".join(lines)


def meta_of(name: str, half: Half, role: str) -> NLAMeta:
    meta = half.meta if hasattr(half, "meta") else NLAMeta.load(Path(half))
    if meta.role != role:
        raise MetaError(
            f"cross-pair {role.upper()} {name!r} is an {meta.role.upper()} checkpoint, not an {role.upper()}"
        )
    return meta


def check_cross(avs: Mapping[str, Half], ars: Mapping[str, Half], table: EvalTable | None = None) -> None:
    """Refuse, before any work, a matrix with an incompatible AV × AR cell or an AV the table does not fit."""
    if not avs or not ars:
        raise IncompatiblePairError(
            f"a cross-pair matrix needs at least one AV and one AR (got {len(avs)} and {len(ars)})"
        )
    av_metas = {n: meta_of(n, h, "av") for n, h in avs.items()}
    ar_metas = {n: meta_of(n, h, "ar") for n, h in ars.items()}
    bad = []
    for a, am in av_metas.items():
        for r, rm in ar_metas.items():
            try:
                check_compatible(am, rm)
            except IncompatiblePairError as exc:
                bad.append(f"({a}, {r}): {str(exc).split(': ', 1)[-1].split('. Load')[0]}")
    if bad:
        raise IncompatiblePairError(
            f"cross-pair matrix: {len(bad)} of {len(av_metas) * len(ar_metas)} AV × AR cells cannot form a pair: "
            + "; ".join(bad[:4])
            + ". Cross only halves of one base model, layer and width"
        )
    if table is not None:
        for am in av_metas.values():
            check_against_meta(table, am)


def load_half(
    path: Path, role: str, base_model: str | None = None, device: str | None = None, dtype: str | None = None
):
    """The AV or AR checkpoint at `path` (the default `loader` of `cross_pair_matrix`)."""
    cls = ActivationVerbalizer if role == "av" else ActivationReconstructor
    return cls.from_pretrained(path, base_model=base_model, device=device, dtype=dtype)


def _load(half: Half, role: str, loader: Callable[[Path, str], Any] | None):
    return half if hasattr(half, "meta") else (loader or load_half)(Path(half), role)


def cell_figures(
    av: str, ar: str, v: np.ndarray, v_hat: np.ndarray, ok: np.ndarray, n_boot: int, seed: int
) -> Cell:
    """One cell, with the seeds a pair eval uses for the same figures."""
    cos = cosine_rows(v, v_hat)
    floor = noise_floor(v, v_hat, seed=seed)
    ident = from_ranks(ranks(v, v_hat))
    return Cell(
        av=av,
        ar=ar,
        n=int(v.shape[0]),
        n_excluded=int((~ok).sum()),
        cos=summarize(cos, n_boot=n_boot, seed=seed),
        fve=fve(v, v_hat, n_boot=n_boot, seed=seed + 2),
        noise_floor_p95=floor.p95,
        frac_above_floor=floor.frac_above,
        identification=ident.top,
        mean_rank=ident.mean_rank,
    )


def cross_pair_matrix(
    avs: Mapping[str, Half],
    ars: Mapping[str, Half],
    table: EvalTable,
    *,
    generation: Generation = Generation(),
    n_boot: int = DEFAULT_BOOT,
    this_pair: dict[str, str] | None = None,
    known: Mapping[str, list] | None = None,
    loader: Callable[[Path, str], Any] | None = None,
    progress: bool = False,
) -> CrossPair:
    """Every AV × AR cell on the rows of `table` (already selected). `known` maps AV names to explanations
    already generated with the same settings (a pair eval's own AV), which are reused. `loader(path, role)`
    loads a half given as a folder (default: the hubkit loaders); each is released after its turn, so one
    model is in memory at a time."""
    check_cross(avs, ars, table)
    v = table.vectors.float()
    vn = v.numpy().astype(np.float64)
    details: dict[str, list] = {}
    for name, half in avs.items():
        if known and name in known:
            details[name] = list(known[name])
        else:  # the AV is released as soon as it has generated
            details[name] = generation.run(_load(half, "av", loader), v, progress)
    outputs: dict[tuple[str, str], np.ndarray] = {}
    for r_name, half in ars.items():
        ar = _load(half, "ar", loader)
        for a_name, ds in details.items():
            outputs[a_name, r_name] = reconstruct_unique(ar, [d.text for d in ds], generation.ar_batch_size)
        del ar
    cells = []
    for a_name, ds in details.items():
        ok = np.array([d.ok for d in ds], dtype=bool)
        cells += [cell_figures(a_name, r, vn, outputs[a_name, r], ok, n_boot, generation.seed) for r in ars]
    return CrossPair(
        avs=list(avs),
        ars=list(ars),
        n=int(vn.shape[0]),
        cells=cells,
        this_pair=this_pair,
        explanations={a: [d.text for d in ds] for a, ds in details.items()},
    )
