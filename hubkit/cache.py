"""Where hubkit keeps its cache: one definition, cheap to import (no torch, no GGUF stack).

`cache_dir()` is `$HUBKIT_CACHE`, else ``~/.cache/hubkit``; it is not created here. Prepared
models live under ``models/``, assembled GGUFs under ``gguf/``, the label cache in ``labels.sqlite``.
"""

from __future__ import annotations

import os
from pathlib import Path

from hubkit import constants as C


def cache_dir() -> Path:
    """Root of hubkit's cache: `$HUBKIT_CACHE`, else `~/.cache/hubkit` (not created here)."""
    env = os.environ.get(C.ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hubkit"
