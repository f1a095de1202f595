"""Export NLA checkpoints to layouts other tools load without hubkit (`hubkit.export.reference`)."""

from hubkit.export.reference import ExportReport, export_reference

FORMATS = ("reference",)

__all__ = ["FORMATS", "ExportReport", "export_reference"]
