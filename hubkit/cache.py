"""Where hubkit keeps its cache: `$HUBKIT_CACHE`, else ``~/.cache/hubkit`` (not created here). No torch."""

from __future__ import annotations

import os
from pathlib import Path

from hubkit import constants as C


def cache_dir() -> Path:
    env = os.environ.get(C.ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hubkit"
