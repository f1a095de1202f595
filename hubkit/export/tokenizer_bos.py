"""A tokenizer whose own settings reproduce an AR's BOS rule.

The reference critic tokenizes the AR prompt with ``add_special_tokens=True``, so BOS can be expressed
only through the tokenizer: the rule goes into ``tokenizer.json``'s post-processor (applied on load).
"""

from __future__ import annotations

import json
from pathlib import Path

from hubkit.errors import CheckpointError

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


def _bos_processor(bos: str, bos_id: int) -> dict:
    special = {"SpecialToken": {"id": bos, "type_id": 0}}
    return {
        "type": "TemplateProcessing",
        "single": [special, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            special,
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": bos, "type_id": 1}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }


_PLAIN = {
    "type": "TemplateProcessing",
    "single": [{"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
    "special_tokens": {},
}


def write_bos_rule(folder: Path, add_bos: bool | str, bos: str | None, bos_id: int | None) -> str:
    """Rewrite the saved tokenizer in `folder` so ``add_special_tokens=True`` follows `add_bos`; returns
    what was done (for the log). ``"tokenizer"`` leaves it as it is."""
    if add_bos == "tokenizer" or (add_bos is True and bos_id is None):
        return "tokenizer unchanged (its own rule is the AR's)"
    path = folder / TOKENIZER_JSON
    if not path.is_file():
        raise CheckpointError(
            f"{folder}: no {TOKENIZER_JSON}; the AR's BOS rule can only be written into a fast tokenizer"
        )
    body = json.loads(path.read_text())
    if add_bos is True:
        body["post_processor"] = _bos_processor(str(bos), int(bos_id))
        done = f"post-processor prepends {bos!r} (the AR was trained with BOS forced)"
    else:
        body["post_processor"] = _PLAIN
        cfg_path = folder / TOKENIZER_CONFIG
        cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        cfg["bos_token"] = None  # the reference critic asserts BOS is added whenever a bos_token is set
        cfg["add_bos_token"] = False
        cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
        done = "post-processor adds no special tokens and bos_token cleared (the AR was trained without)"
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    return done
