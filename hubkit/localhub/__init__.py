"""A local Hugging Face Hub endpoint for tests, the demo and offline labs.

``LocalHub`` serves the part of the Hub HTTP API that ``huggingface_hub`` uses (repos, LFS and
regular commits, tags, branches, trees, downloads) on 127.0.0.1, persisting under a directory,
with bearer-token access control::

    with LocalHub(tmp_path) as hub:                              # creates tmp_path/access-tokens.yaml
        api = HfApi(endpoint=hub.endpoint, token=hub.token)      # explicit endpoint: no patching
        with use_endpoint(hub.endpoint):                         # transformers / peft / datasets
            model.push_to_hub("me/tiny")

Processes started later can instead inherit ``hub_env(hub.endpoint, token)`` in their environment;
``huggingface_hub`` reads ``HF_ENDPOINT`` only when it is first imported.

Modules, each importing only those after it: ``client`` (pointing the libraries at an endpoint),
``server`` (LocalHub lifecycle), ``connections`` (sockets, workers, timeouts), ``routes`` (the
API), ``handler`` (bodies, dispatch, access checks, answers), ``storage`` (blobs, repos, refs,
commits), ``access`` (tokens, LFS upload tickets), ``objects`` (records and naming rules),
``faults``, ``limits``, ``errors``.
"""

from hubkit.localhub.access import Identity, load_token_file
from hubkit.localhub.client import hub_env, use_endpoint
from hubkit.localhub.errors import LocalHubError
from hubkit.localhub.faults import FAULT_POINTS, Faults, Stats
from hubkit.localhub.limits import Limits
from hubkit.localhub.server import LocalHub
from hubkit.localhub.storage import HubStore

__all__ = [
    "FAULT_POINTS",
    "Faults",
    "HubStore",
    "Identity",
    "Limits",
    "LocalHub",
    "LocalHubError",
    "Stats",
    "hub_env",
    "load_token_file",
    "use_endpoint",
]
