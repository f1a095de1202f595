"""Whether an AV and an AR form a pair: width, layer and base model (by name, or by architecture when
a base is recorded as a path on the machine that trained it).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from hubkit import identity
from hubkit.errors import IncompatiblePairError
from hubkit.meta.record import NLAMeta

log = logging.getLogger("hubkit.meta")
_said: set[tuple[str, str]] = set()


def _architecture(meta: NLAMeta) -> identity.Architecture | None:
    """The architecture of the weights `meta` describes: its own folder's, else its base folder's."""
    for folder in (meta.folder, Path(meta.base_model).expanduser() if meta.base_model else None):
        if folder is not None and (found := identity.read_architecture(folder)) is not None:
            return found
    return None


def _base_problems(av: NLAMeta, ar: NLAMeta) -> list[str]:
    if av.base_model == ar.base_model:
        return []
    machine = [m.base_model for m in (av, ar) if not m.base_model or identity.is_machine_path(m.base_model)]
    if not machine:
        same = identity.same_base(av.base_model, ar.base_model)
        return [] if same else [f"base_model: AV {av.base_model!r} vs AR {ar.base_model!r}"]
    a_av, a_ar = _architecture(av), _architecture(ar)
    if a_av is None or a_ar is None:
        lacking = "AV" if a_av is None else "AR"
        return [
            f"base_model: AV {av.base_model!r} vs AR {ar.base_model!r}, and the {lacking} folder has no "
            f"config.json to compare architectures by ({_why(machine[0])})"
        ]
    key = (av.base_model, ar.base_model)
    if key not in _said:
        _said.add(key)
        log.info(
            "base_model: %s: the AV and AR are compared by architecture (%s) instead of by name",
            _why(machine[0]),
            a_ar.describe(),
        )
    return identity.architecture_problems(a_av, a_ar, ar.ar.num_layers if ar.ar else None)


def _why(name: str) -> str:
    return "no base recorded" if not name else f"{name!r} is a path on the machine that trained it"


def check_compatible(av: NLAMeta, ar: NLAMeta) -> None:
    """Refuse an AV and an AR that cannot form a pair; fill a layerless AV's layer from the AR."""
    problems = []
    if av.d_model != ar.d_model:
        problems.append(f"d_model: AV {av.d_model} vs AR {ar.d_model}")
    if av.layer is None and ar.layer is not None:
        av.layer = ar.layer
        if av.ar is not None and av.ar.num_layers is None:
            av.ar = replace(av.ar, num_layers=ar.layer + 1)
        log.info("the AV records no layer: using its AR's layer %d", ar.layer)
    elif av.layer != ar.layer:
        problems.append(f"layer: AV {av.layer} vs AR {ar.layer}")
    problems += _base_problems(av, ar)
    if problems:
        raise IncompatiblePairError(
            f"the AV and AR do not form a pair: {'; '.join(problems)}. Load the two halves trained together."
        )
