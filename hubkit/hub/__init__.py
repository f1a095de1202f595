"""The Hub, seen from hubkit: `resolving` (checkpoints in), `remote` (what a repo holds, and whether a
local file is the same content), `publishing` (releases out), `redaction` (tokens kept out of logs).
"""

from hubkit.hub.publishing import PushResult, push_folder, remote_sha256s
from hubkit.hub.remote import remote_files
from hubkit.hub.resolving import resolve

__all__ = ["PushResult", "push_folder", "remote_files", "remote_sha256s", "resolve"]
