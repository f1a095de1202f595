"""A local Hugging Face Hub endpoint for tests, the demo and offline labs::

    with LocalHub(tmp_path) as hub:                              # creates tmp_path/access-tokens.yaml
        api = HfApi(endpoint=hub.endpoint, token=hub.token)      # explicit endpoint: no patching
        with use_endpoint(hub.endpoint):                         # transformers / peft / datasets
            model.push_to_hub("me/tiny")

Modules, each importing only those after it: client, server, connections, routes, handler, storage,
access, objects, faults, limits, errors.
"""

from hubkit.localhub.client import hub_env, use_endpoint
from hubkit.localhub.errors import LocalHubError
from hubkit.localhub.limits import Limits
from hubkit.localhub.server import LocalHub
from hubkit.localhub.storage import HubStore

__all__ = ["HubStore", "Limits", "LocalHub", "LocalHubError", "hub_env", "use_endpoint"]
