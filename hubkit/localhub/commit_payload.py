"""The NDJSON body of a Hub commit: a header line, then one line per operation.

LFS operations must point at objects the caller may use (uploaded by it, or held by a repo it
can read); regular file contents are stored (content-addressed, so harmless) while parsing,
before the commit is applied.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from hubkit.localhub.errors import BadRequest
from hubkit.localhub.objects import AddFile, DeleteFile, DeleteFolder, Operation, lfs_entry
from hubkit.localhub.storage import HubStore


def text_field(value: dict[str, Any], key: str) -> str:
    """``value[key]`` when it is a string (absent: empty); BadRequest otherwise."""
    item = value.get(key, "")
    if not isinstance(item, str):
        raise BadRequest(f"field {key!r} must be a string")
    return item


def parse_commit(
    store: HubStore, lines: list[bytes], lfs_available: Callable[[str], bool]
) -> tuple[dict[str, Any], list[Operation]]:
    """Header and operations of an NDJSON commit; LFS pointers are checked before anything is stored."""
    items = []
    for raw in lines:
        if raw.strip():
            try:
                items.append(json.loads(raw))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BadRequest(f"commit payload line is not JSON: {exc}") from exc
    if not items or not all(isinstance(i, dict) for i in items) or items[0].get("key") != "header":
        raise BadRequest("commit payload must be JSON objects starting with a 'header' line")
    header = items[0].get("value") or {}
    if not isinstance(header, dict) or not isinstance(header.get("summary"), str) or not header["summary"]:
        raise BadRequest("commit message (header.summary) must be a non-empty string")
    pending = [
        _parse_operation(store, lfs_available, item.get("key"), item.get("value") or {}) for item in items[1:]
    ]
    ops = [op if not isinstance(op, tuple) else AddFile(op[0], store.put_regular(op[1])) for op in pending]
    return header, ops


def _parse_operation(
    store: HubStore, lfs_available: Callable[[str], bool], key: Any, value: Any
) -> Operation | tuple[str, bytes]:
    """One commit line; regular content comes back as ``(path, bytes)`` to be stored later."""
    if not isinstance(value, dict):
        raise BadRequest("each commit operation's 'value' must be a JSON object")
    path = text_field(value, "path")
    if key == "file":
        return path, _file_content(path, value)
    if key == "lfsFile":
        oid = text_field(value, "oid")
        stored = store.lfs_size(oid)
        if stored is None or not lfs_available(oid):  # one answer for both: existence is not revealed
            raise BadRequest(
                f"LFS object {oid} for {path!r} was never uploaded: upload it through the LFS batch API "
                "before committing a pointer to it"
            )
        if value.get("size") is not None and value["size"] != stored:
            raise BadRequest(f"LFS object {oid} for {path!r} has {stored} bytes, not {value['size']}")
        return AddFile(path, lfs_entry(oid, stored))
    if key == "deletedFile":
        return DeleteFile(path)
    if key == "deletedFolder":
        return DeleteFolder(path)
    raise BadRequest(f"unsupported commit operation {key!r} (hubkit localhub knows file, lfsFile, deleted*)")


def _file_content(path: str, value: dict[str, Any]) -> bytes:
    content = text_field(value, "content")
    if value.get("encoding", "utf-8") != "base64":
        return content.encode()
    try:
        return base64.b64decode(content, validate=True)
    except binascii.Error as exc:
        raise BadRequest(f"content of {path!r} is not valid base64") from exc
