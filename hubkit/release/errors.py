"""Errors of the release path: a bad spec, a refused bundle, a failed push."""

from __future__ import annotations

from hubkit.errors import HubkitError


class ReleaseError(HubkitError, ValueError):
    """A release spec, bundle or push that cannot go ahead; the message names the file or field."""


class HonestyError(ReleaseError):
    """The bundle would publish a number, file or claim that its own files do not support."""


class PushError(ReleaseError):
    """A push that failed or did not verify; the remote is left as it was before the failed commit."""
