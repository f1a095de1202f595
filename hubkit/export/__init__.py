"""Export NLA checkpoints to layouts other tools load without hubkit.

`reference`: the layout of the reference implementation's releases (full merged AV weights, a
truncated AR backbone with ``value_head.safetensors``), which its ``NLAClient`` and ``NLACritic``,
SGLang and ``vllm serve`` load. `hubkit export CHECKPOINT --format reference --out DIR` and a release
spec's ``format: reference`` use it.
"""

from hubkit.export.reference import ExportReport, export_reference

FORMATS = ("reference",)

__all__ = ["FORMATS", "ExportReport", "export_reference"]
