"""The Hub, seen from hubkit: where checkpoints come from and how releases get there.

* :mod:`hubkit.hub.resolving` — a local folder or a repo at a revision and subfolder, downloaded
  (used by the core: verbalizer, reconstructor, pair, check);
* :mod:`hubkit.hub.remote` — what a repo holds at a revision and whether a local file is the same
  content (the one comparison used by pushing, tagging and verifying);
* :mod:`hubkit.hub.publishing` — one commit per folder, tags, remote sha256s (used by release);
* :mod:`hubkit.hub.redaction` — tokens kept out of logs and error messages.

The names below keep ``from hubkit import hub; hub.resolve(...)`` call sites working.
"""

from hubkit.hub.publishing import KEEP_REMOTE, PushResult, ensure_tag, push_folder, remote_sha256s
from hubkit.hub.remote import remote_files
from hubkit.hub.resolving import resolve

__all__ = [
    "KEEP_REMOTE",
    "PushResult",
    "ensure_tag",
    "push_folder",
    "remote_files",
    "remote_sha256s",
    "resolve",
]
