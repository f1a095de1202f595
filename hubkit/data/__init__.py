"""Stages 0-3 of the NLA data pipeline: extract → split → label → build.

    corpus ──extract──▶ activations.parquet ──split──▶ splits/{av_sft,ar_sft,rl,eval}.parquet
           ──label──▶ labeled/*.parquet ──build──▶ built/{av_sft,ar_sft,rl,eval}.parquet

Every table has a ``<name>.parquet.json`` sidecar (`hubkit.data.sidecar`); column layouts are in
`hubkit.data.tables`. The entry points below load their module on first use, so that
`import hubkit.data.sidecar` does not load torch; the package name ``extract`` is the stage 0 module.
"""

from __future__ import annotations

from hubkit.lazy import lazy_exports

_EXPORTS = {
    "load_corpus": "hubkit.data.corpus",
    "ExtractConfig": "hubkit.data.extract",
    "split_table": "hubkit.data.split",
    "label_table": "hubkit.data.label",
    "build_tables": "hubkit.data.build",
    "build_from_dirs": "hubkit.data.build",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
