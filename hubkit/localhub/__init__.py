"""A local Hugging Face Hub endpoint for tests, the demo and offline labs.

``LocalHub`` serves the part of the Hub HTTP API that ``huggingface_hub`` uses (repos, LFS and
regular commits, tags, branches, trees, downloads) on 127.0.0.1, persisting under a directory::

    with LocalHub(tmp_path) as hub:
        api = HfApi(endpoint=hub.endpoint, token="hf_local")   # explicit endpoint: no patching
        with use_endpoint(hub.endpoint, token="hf_local"):      # transformers / peft / datasets
            model.push_to_hub("me/tiny")

Processes started later can instead inherit ``hub_env(hub.endpoint)`` in their environment;
``huggingface_hub`` reads ``HF_ENDPOINT`` only when it is first imported.
"""

from hubkit.localhub.client import hub_env, use_endpoint
from hubkit.localhub.faults import FAULT_POINTS, Faults, Stats
from hubkit.localhub.server import LocalHub, serve
from hubkit.localhub.storage import HubStore, LocalHubError

__all__ = [
    "FAULT_POINTS",
    "Faults",
    "HubStore",
    "LocalHub",
    "LocalHubError",
    "Stats",
    "hub_env",
    "serve",
    "use_endpoint",
]
