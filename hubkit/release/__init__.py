"""Releases: spec (``releases/NAME.yaml``) → honesty checks → bundle (cards, provenance) → push to the Hub.

`load_spec` reads and validates a spec; `build_bundle` checks it against its files and writes one
folder per repo; `push_bundle` publishes a bundle in one commit per repo, tags it and verifies it.

Modules (imports run downwards): `spec` (the YAML spec) → `public` (local paths → published names) →
`families` (base-family table, licence and legal files), `plan` (a checkpoint folder: copy, convert,
refuse), `provenance` (manifest, provenance.json, training-data credits), `figures` + `cards`
(templates in ``templates/``), `honesty` (the cited eval.json and every refusal), `context` (the card
context and writer) → `bundle` (one builder per kind, `build_bundle`) → `push`. The command is
`hubkit.cli.release`.
"""

from __future__ import annotations

from hubkit.lazy import lazy_exports
from hubkit.release.errors import HonestyError, PushError, ReleaseError

# Imported when first used: building a bundle brings torch, the push huggingface_hub.
_EXPORTS = {
    "ReleaseSpec": "hubkit.release.spec",
    "LoadedSpec": "hubkit.release.spec",
    "load_spec": "hubkit.release.spec",
    "Bundle": "hubkit.release.provenance",
    "build_bundle": "hubkit.release.bundle",
    "push_bundle": "hubkit.release.push",
    "plan_text": "hubkit.release.push",
}
__all__ = ["HonestyError", "PushError", "ReleaseError", *_EXPORTS]

__getattr__ = lazy_exports(__name__, _EXPORTS)
