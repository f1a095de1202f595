"""Point the real Hub clients (huggingface_hub, transformers, peft, datasets) at a local endpoint.

``huggingface_hub`` reads ``HF_ENDPOINT`` once, at import, into module globals (and ``datasets`` and
transformers copy it): a new process takes :func:`hub_env` in its environment; this process uses
``with use_endpoint(...)``, which patches those globals for the block.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from hubkit.localhub.server import running_hub

_DEFAULT_ENDPOINT = "https://huggingface.co"
_URLS = ("ENDPOINT", "HF_ENDPOINT", "HUGGINGFACE_CO_URL_TEMPLATE", "HUB_DATASETS_URL")


def hub_env(endpoint: str, token: str | None = None) -> dict[str, str]:
    """Environment that makes a fresh process use ``endpoint`` (set before it imports huggingface_hub)."""
    env = {
        "HF_ENDPOINT": endpoint.rstrip("/"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    return env if token is None else {**env, "HF_TOKEN": token}


def _token_for(endpoint: str, token: str | None) -> str | None:
    """The token to use against `endpoint`: an in-process LocalHub's own, or `token` made known to it."""
    hub = running_hub(endpoint)
    if hub is None or hub.token_file is not None:
        return token
    if token is None:
        return hub.token
    hub.add_token(token)
    return token


def _module_values(endpoint: str) -> dict[str, dict[str, Any]]:
    """Module globals that hold the endpoint or switch the Hub off, as they should be for ``endpoint``."""
    from huggingface_hub import constants

    return {
        "huggingface_hub.constants": {
            "ENDPOINT": endpoint,
            "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_URL_HOSTS": constants.HF_URL_HOSTS | {(urlsplit(endpoint).hostname or "").lower()},
            "HF_HUB_DISABLE_XET": True,
            "HF_HUB_OFFLINE": False,
            "HF_HUB_DISABLE_TELEMETRY": True,
        },
        "datasets.config": {
            "HF_ENDPOINT": endpoint,
            "HUB_DATASETS_URL": endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}",
            "HF_HUB_OFFLINE": False,
            "HF_DATASETS_OFFLINE": False,
        },
    }


def _reset_cached_clients(endpoint: str) -> None:
    """Re-point the ``HfApi`` objects the libraries created at import time or lazily."""
    from huggingface_hub import hf_api

    hf_api.api.endpoint = endpoint
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None and hasattr(transformers_hub, "_hf_api"):
        transformers_hub._hf_api = None  # rebuilt on next use from constants.ENDPOINT


@contextmanager
def use_endpoint(endpoint: str, token: str | None = None) -> Iterator[str]:
    """Make huggingface_hub, transformers, peft and datasets talk to ``endpoint`` inside the block.

    Patches the module globals and the environment, restoring both on exit; ``token`` becomes
    ``HF_TOKEN`` (None: the in-process server's local token). Not thread-safe.
    """
    from huggingface_hub import hf_api

    endpoint = endpoint.rstrip("/")
    env = hub_env(endpoint, _token_for(endpoint, token))
    saved_env = {k: os.environ.get(k) for k in env}
    original_api_endpoint = hf_api.api.endpoint
    os.environ.update(env)
    saved: dict[tuple[str, str], Any] = {}
    for module_name, attrs in _module_values(endpoint).items():
        module = sys.modules.get(module_name)
        for attr, value in attrs.items() if module is not None else ():
            saved[(module_name, attr)] = getattr(module, attr)
            setattr(module, attr, value)
    _reset_cached_clients(endpoint)
    try:
        yield endpoint
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        outside = _module_values(os.environ.get("HF_ENDPOINT", _DEFAULT_ENDPOINT).rstrip("/"))
        for module_name, attrs in outside.items():
            module = sys.modules.get(module_name)
            for attr in attrs if module is not None else ():
                if (module_name, attr) in saved:
                    setattr(module, attr, saved[(module_name, attr)])
                elif attr in _URLS:
                    setattr(module, attr, attrs[attr])
        _reset_cached_clients(original_api_endpoint)
