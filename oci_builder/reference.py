"""Image references (`[domain/]path[:tag][@digest]`), after the distribution/reference grammar.

Parsing goes piece by piece so an error says which component breaks which rule, not just "invalid
reference format". The domain is recognised as docker does: the first component names a registry when it
holds a '.' or a ':', is 'localhost', or has an uppercase letter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .digest import digest_problem

NAME_MAX = 255

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"


class ReferenceError(ValueError):
    """A reference, or one of its parts, is outside the grammar; the message says where."""


@dataclass(frozen=True)
class Reference:
    domain: str | None
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository name as written: `domain/path`, or `path` alone."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def registry(self) -> str:
        """The registry host to talk to; docker's default when the name has none."""
        return self.domain or DEFAULT_REGISTRY

    @property
    def repository(self) -> str:
        """The repository path on the registry (`library/` prefixed on Docker Hub, as docker does)."""
        if self.domain is None and "/" not in self.path:
            return f"library/{self.path}"
        return self.path

    @property
    def canonical(self) -> str:
        """What the reference names, as a registry resolves it: `x:1` and `docker.io/library/x:1` agree."""
        return f"{self.registry}/{self.repository}:{self.tag or DEFAULT_TAG}"

    def with_tag(self, tag: str) -> Reference:
        check_tag(tag)
        return Reference(self.domain, self.path, tag, None)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def check_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        if not tag:
            raise ReferenceError("tag is empty")
        if len(tag) > 128:
            raise ReferenceError(f"tag {tag!r} is longer than 128 characters")
        raise ReferenceError(
            f"tag {tag!r} is not valid: it must start with a letter, digit or '_' and hold only "
            "letters, digits, '_', '.' and '-'"
        )
    return tag


def _check_path_component(component: str) -> None:
    if _PATH_COMPONENT.fullmatch(component):
        return
    if not component:
        raise ReferenceError("empty path component (a '//' or a leading or trailing '/')")
    if component.lower() != component and _PATH_COMPONENT.fullmatch(component.lower()):
        raise ReferenceError(f"path component {component!r} must be lowercase")
    raise ReferenceError(
        f"path component {component!r} is not valid: components are lowercase letters and digits, "
        "separated by '.', '_', '__' or dashes, and start and end with a letter or digit"
    )


def _is_domain(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost" or component.lower() != component


def parse_name(name: str) -> Reference:
    """Parse a repository name (no tag, no digest)."""
    if not name:
        raise ReferenceError("name is empty")
    if any(c.isspace() for c in name):
        raise ReferenceError(f"{name!r} contains whitespace")
    first, sep, rest = name.partition("/")
    domain: str | None = None
    path = name
    if sep and _is_domain(first):
        if not _DOMAIN.fullmatch(first):
            raise ReferenceError(f"registry {first!r} is not a valid host[:port]")
        domain, path = first, rest
    for component in path.split("/"):
        _check_path_component(component)
    if len(name) > NAME_MAX:
        raise ReferenceError(f"name is {len(name)} characters long; the limit is {NAME_MAX}")
    return Reference(domain, path)


def check_prefix(prefix: str) -> None:
    """A repository prefix (runwasi's --repo): a registry alone, like `localhost:5000`, or a name."""
    if "/" not in prefix and _is_domain(prefix):
        if any(c.isspace() for c in prefix):
            raise ReferenceError(f"{prefix!r} contains whitespace")
        if not _DOMAIN.fullmatch(prefix):
            raise ReferenceError(f"registry {prefix!r} is not a valid host[:port]")
        return
    parse_name(prefix)


def parse_reference(text: str) -> Reference:
    """Parse `name[:tag][@digest]`."""
    rest, at, digest = text.partition("@")
    if at:
        problem = digest_problem(digest)
        if problem:
            raise ReferenceError(problem)
    # A ':' after the last '/' starts the tag; one before it belongs to a registry port.
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag: str | None = None
    if colon > slash:
        rest, tag = rest[:colon], check_tag(rest[colon + 1 :])
    ref = parse_name(rest)
    return Reference(ref.domain, ref.path, tag, digest or None)
