"""hubkit's own schema: the record under ``hubkit:`` (current files) or at the top level (older ones).

When a file carries both, the reference keys beside the record must agree with it: a hand edit of
one and not the other would make the reference tools compute something else than hubkit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubkit import constants as C
from hubkit.errors import MetaError
from hubkit.meta.record import HUBKIT_KEY
from hubkit.meta.registry import register


def _detect(d: dict[str, Any]) -> bool:
    record = d.get(HUBKIT_KEY)
    if isinstance(record, dict):
        return True
    return str(d.get("schema", "")).startswith("hubkit.nla/")


@register("hubkit", priority=10, detect=_detect, scale_field="injection.scale")
def read_hubkit(data: dict[str, Any], where: str, folder: Path | None) -> tuple[dict[str, Any], list[str]]:
    record = data.pop(HUBKIT_KEY, None)
    if record is None:
        record = data
    elif "schema" in data:
        raise MetaError(f"{where}: field `schema` belongs under `{HUBKIT_KEY}:`, not beside it; keep one")
    if record.get("schema") != C.SCHEMA_VERSION:
        raise MetaError(
            f"{where}: field `schema` is {record.get('schema')!r}; this hubkit reads {C.SCHEMA_VERSION!r}"
        )
    if record is not data and data:
        from hubkit.meta.reference_keys import check_reference_keys

        check_reference_keys(data, record, where)
    return record, []
