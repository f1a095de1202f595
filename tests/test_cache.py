from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_cache_dir_follows_the_environment_and_matches_models(monkeypatch, tmp_path):
    from hubkit import models
    from hubkit.cache import cache_dir

    monkeypatch.setenv("HUBKIT_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" == models.cache_dir()
    monkeypatch.delenv("HUBKIT_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "hubkit" == models.cache_dir()


def test_cheap_imports_stay_cheap():
    code = (
        "import sys, hubkit.cache, hubkit.data, hubkit.data.sidecar, hubkit.data.outputs, hubkit.vectors_io;"
        "assert 'torch' not in sys.modules, 'torch'; assert 'gguf' not in sys.modules, 'gguf'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
