"""Pushing to OCI registries (distribution spec v1.1), with the standard library only.

transport: HTTP, TLS, retries, redirects; auth: credentials and challenges; client: the distribution API
of one registry; push: an archive's images to references. The CLI and the Action call `push_archive`.
"""

from .auth import Credential
from .push import PushedRef, PushEvent, push_archive
from .transport import RegistryError, RetryPolicy

__all__ = ["Credential", "PushEvent", "PushedRef", "RegistryError", "RetryPolicy", "push_archive"]
