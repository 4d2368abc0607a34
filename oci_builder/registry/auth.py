"""Who we are to a registry: where credentials come from, and the Basic and Bearer challenge flows.

Kept apart from the transport (as oras-py does) so the HTTP rules hold whatever the auth scheme, and apart
from the distribution client so the same flows serve any request. Credentials are looked up once per
registry: explicit ones (`--username`/`--password-stdin`, the Action's inputs) first, then docker's
config.json (`credHelpers[host]`, then `credsStore`, then `auths[host]`), as docker itself reads it.
Secrets never reach a message or a repr.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..errors import InputError
from .transport import RegistryError, Response, Transport

DOCKER_HUB = "docker.io"
_DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_ALIASES = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)
IDENTITY_TOKEN_USER = "<token>"
"""What credential helpers return as the user name when the secret is an OAuth2 refresh token."""

_HELPER_TIMEOUT = 60
_TOKEN_LIFETIME_DEFAULT = 60
_TOKEN_MARGIN = 10
_TOKEN_BODY_MAX = 1 << 20


@dataclass(frozen=True)
class Credential:
    username: str
    password: str = field(repr=False)

    @property
    def is_identity_token(self) -> bool:
        return self.username == IDENTITY_TOKEN_USER


def docker_config_path(env: Mapping[str, str] | None = None) -> Path:
    """`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, as the docker CLI looks for it."""
    environ = os.environ if env is None else env
    if environ.get("DOCKER_CONFIG"):
        return Path(environ["DOCKER_CONFIG"]) / "config.json"
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    return home / ".docker" / "config.json"


def _config_host(key: str) -> str:
    """A config.json key (`ghcr.io`, `https://ghcr.io/v2/`, docker's index URL) as a registry host."""
    host = urlsplit(key if "://" in key else f"//{key}").netloc.lower() or key.lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


class CredentialStore:
    """Finds the credential for a registry host (Reference.registry: `docker.io` for Docker Hub)."""

    def __init__(
        self, explicit: Mapping[str, Credential] | None = None, config_path: Path | None = None
    ) -> None:
        self._explicit = {_config_host(k): v for k, v in (explicit or {}).items()}
        self.config_path = config_path if config_path is not None else docker_config_path()
        self._config: dict[str, Any] | None = None
        self._found: dict[str, tuple[Credential | None, str]] = {}

    def get(self, registry: str) -> Credential | None:
        return self.lookup(registry)[0]

    def lookup(self, registry: str) -> tuple[Credential | None, str]:
        """The credential and a phrase saying where it came from (for messages), once per registry."""
        host = _config_host(registry)
        if host not in self._found:
            self._found[host] = self._find(host)
        return self._found[host]

    def _find(self, host: str) -> tuple[Credential | None, str]:
        if host in self._explicit:
            return self._explicit[host], "the given user name and password"
        config = self._load()
        helpers = config.get("credHelpers")
        helper = helpers.get(_matching_key(helpers, host) or "") if isinstance(helpers, dict) else None
        store = config.get("credsStore")
        for name in (helper, store):
            if isinstance(name, str) and name:
                credential = self._from_helper(name, host)
                if credential is not None:
                    return credential, f"docker-credential-{name}"
        auths = config.get("auths")
        key = _matching_key(auths, host) if isinstance(auths, dict) else None
        if key is not None and isinstance(auths, dict):
            credential = self._from_auth_entry(key, auths[key])
            if credential is not None:
                return credential, f"{self.config_path} (auths)"
        return None, ""

    def _load(self) -> dict[str, Any]:
        if self._config is None:
            try:
                text = self.config_path.read_text(encoding="utf-8")
            except FileNotFoundError:
                text = "{}"
            except OSError as exc:
                raise InputError(
                    str(self.config_path), exc.strerror or str(exc), path=self.config_path
                ) from None
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise InputError(
                    str(self.config_path), f"not valid JSON ({exc})", path=self.config_path
                ) from None
            if not isinstance(value, dict):
                raise InputError(str(self.config_path), "must hold a JSON object", path=self.config_path)
            self._config = value
        return self._config

    def _from_auth_entry(self, key: str, entry: object) -> Credential | None:
        subject = f"{self.config_path}: auths[{key!r}]"
        if not isinstance(entry, dict):
            raise InputError(subject, "must be an object", path=self.config_path)
        if isinstance(entry.get("identitytoken"), str) and entry["identitytoken"]:
            return Credential(IDENTITY_TOKEN_USER, entry["identitytoken"])
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise InputError(
                    subject, "'auth' is not base64 of USER:PASSWORD", path=self.config_path
                ) from None
            if not sep:
                raise InputError(subject, "'auth' is not base64 of USER:PASSWORD", path=self.config_path)
            return Credential(user, password)
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credential(entry["username"], entry["password"])
        return None

    def _from_helper(self, name: str, host: str) -> Credential | None:
        program = f"docker-credential-{name}"
        server = _DOCKER_HUB_KEY if host == DOCKER_HUB else host
        subject = f"{program} (from {self.config_path})"
        try:
            proc = subprocess.run(
                [program, "get"],
                input=server,
                capture_output=True,
                text=True,
                timeout=_HELPER_TIMEOUT,
                check=False,
            )
        except FileNotFoundError:
            raise InputError(subject, "credential helper not found on PATH", path=self.config_path) from None
        except subprocess.TimeoutExpired:
            raise InputError(
                subject, f"gave no answer in {_HELPER_TIMEOUT}s", path=self.config_path
            ) from None
        if proc.returncode != 0:
            said = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
            first = said[0][:200] if said else f"exit status {proc.returncode}"
            if "credentials not found" in first.lower():
                return None
            raise InputError(subject, f"failed for {server}: {first}", path=self.config_path)
        try:
            answer = json.loads(proc.stdout)
            username, secret = answer["Username"], answer["Secret"]
        except (ValueError, KeyError, TypeError):
            raise InputError(subject, "did not print the expected JSON", path=self.config_path) from None
        if not isinstance(username, str) or not isinstance(secret, str) or not secret:
            return None
        return Credential(username, secret)


def _matching_key(entries: Mapping[str, object], host: str) -> str | None:
    for key in entries:
        if _config_host(key) == host:
            return key
    return None


# ---------------------------------------------------------------------------------------------------
# Challenges (RFC 7235) and tokens (the distribution token spec)

_TOKEN_CHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME_OR_KEY = re.compile(rf"[\s,]*({_TOKEN_CHARS})")
_PARAM_VALUE = re.compile(rf'\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN_CHARS}))')


@dataclass(frozen=True)
class Challenge:
    scheme: str
    """Lowercase: `basic`, `bearer`, ..."""
    params: Mapping[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """`Bearer realm="...",service="...",scope="..."` (possibly several challenges) into parts."""
    challenges: list[Challenge] = []
    pos = 0
    while match := _SCHEME_OR_KEY.match(header, pos):
        word, pos = match.group(1), match.end()
        value = _PARAM_VALUE.match(header, pos)
        if value is None or not challenges:
            challenges.append(Challenge(word.lower(), {}))
            continue
        pos = value.end()
        quoted, plain = value.group(1), value.group(2)
        text = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else plain
        params = dict(challenges[-1].params)
        params[word.lower()] = text
        challenges[-1] = Challenge(challenges[-1].scheme, params)
    return challenges


def repository_scope(repository: str, actions: str = "pull,push") -> str:
    return f"repository:{repository}:{actions}"


class Authorizer:
    """The Authorization header for one registry: Basic, or Bearer tokens fetched and reused per scope."""

    def __init__(self, registry: str, credentials: CredentialStore, transport: Transport) -> None:
        self.registry = registry
        self._credentials = credentials
        self._transport = transport
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}

    def authorization(self, scopes: tuple[str, ...]) -> str | None:
        if self._challenge is None:
            return None
        if self._challenge.scheme == "basic":
            credential = self._credential()
            if credential is None or credential.is_identity_token:
                return None
            raw = f"{credential.username}:{credential.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        key = tuple(sorted(scopes))
        cached = self._tokens.get(key)
        if cached is None or cached[1] <= time.monotonic():
            cached = self._fetch_token(key)
            self._tokens[key] = cached
        return f"Bearer {cached[0]}"

    def unauthorized(self, response: Response, sent: str | None) -> None:
        """Learn the challenge from a 401 so that one retry may succeed; raise when none can."""
        challenges = parse_challenges(response.header("WWW-Authenticate") or "")
        challenge = next((c for c in challenges if c.scheme == "bearer"), None) or next(
            (c for c in challenges if c.scheme == "basic"), None
        )
        if challenge is None:
            raise RegistryError(
                self.registry, f"authentication required, but no usable challenge ({response.describe()})"
            )
        self._challenge = challenge
        if challenge.scheme == "basic":
            if self._credential() is None:
                raise self._no_credentials()
            if sent is not None and sent.startswith("Basic "):
                raise self.failure(response, ())
        else:
            self._tokens = {k: v for k, v in self._tokens.items() if f"Bearer {v[0]}" != sent}

    def failure(self, response: Response, scopes: tuple[str, ...]) -> RegistryError:
        """The error for a request still refused (401 or 403) with the best credentials we have."""
        credential, source = self._credentials.lookup(self.registry)
        who = (
            f"user {credential.username!r} (from {source})"
            if credential is not None
            else f"anonymous access (no credentials for this registry in {self._credentials.config_path})"
        )
        challenge = next(iter(parse_challenges(response.header("WWW-Authenticate") or "")), None)
        if response.status == 403 or (
            challenge is not None and challenge.params.get("error") == "insufficient_scope"
        ):
            wanted = f" (wanted {' '.join(scopes)})" if scopes else ""
            return RegistryError(self.registry, f"access denied for {who}{wanted}: {response.describe()}")
        return RegistryError(self.registry, f"authentication failed for {who}: {response.describe()}")

    def _credential(self) -> Credential | None:
        return self._credentials.get(self.registry)

    def _no_credentials(self) -> RegistryError:
        return RegistryError(
            self.registry,
            "authentication required and no credentials found: give --username with --password-stdin, or add "
            f"them to {self._credentials.config_path}",
        )

    def _fetch_token(self, scopes: tuple[str, ...]) -> tuple[str, float]:
        assert self._challenge is not None
        realm = self._challenge.params.get("realm")
        if not realm:
            raise RegistryError(self.registry, "the Bearer challenge names no token realm")
        service = self._challenge.params.get("service")
        credential = self._credential()
        self._transport.check_url(realm, with_credentials=credential is not None)
        headers = {"Accept": "application/json"}
        if credential is not None and credential.is_identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credential.password,
                "client_id": "oci-tar-builder",
            }
            if service:
                form["service"] = service
            if scopes:
                form["scope"] = " ".join(scopes)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = self._transport.request(
                "POST",
                realm,
                headers=headers,
                body=urlencode(form).encode(),
                max_body=_TOKEN_BODY_MAX,
                follow_redirects=False,  # the refresh token is in the body: it goes to the realm or nowhere
            )
        else:
            query = ([("service", service)] if service else []) + [("scope", s) for s in scopes]
            if credential is not None:
                raw = f"{credential.username}:{credential.password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
            url = realm + ("&" if "?" in realm else "?") + urlencode(query) if query else realm
            response = self._transport.request("GET", url, headers=headers, max_body=_TOKEN_BODY_MAX)
        host = urlsplit(realm).netloc
        if response.status in (401, 403):
            if credential is None:
                raise self._no_credentials()
            _, source = self._credentials.lookup(self.registry)
            raise RegistryError(
                self.registry,
                f"authentication failed: the token server {host} rejected the credentials from {source} "
                f"(user {credential.username!r})",
            )
        if response.status != 200:
            raise RegistryError(self.registry, f"the token server {host} answered {response.describe()}")
        try:
            answer = json.loads(response.body)
            token = answer.get("token") or answer.get("access_token")
            lifetime = int(answer.get("expires_in") or _TOKEN_LIFETIME_DEFAULT)
        except (ValueError, AttributeError, TypeError):
            raise RegistryError(
                self.registry, f"the token server {host} did not answer with a token"
            ) from None
        if not isinstance(token, str) or not token:
            raise RegistryError(self.registry, f"the token server {host} did not answer with a token")
        return token, time.monotonic() + max(lifetime - _TOKEN_MARGIN, 0)
