"""`hubkit inspect`: what an NLA says about every token of a text or chat (tokens.jsonl, transcript, page)."""

from hubkit.inspection.core import Inspection, inspect_pair

__all__ = ["Inspection", "inspect_pair"]
