"""The client side of the OCI distribution spec v1.1 that a push needs: blobs and manifests of one registry.

A blob is looked for (HEAD), mounted from another repository when we know it is there, or uploaded:
POST then one PUT for a small blob, POST then PATCH chunks then PUT for a large one, streamed from its
source. An upload whose outcome became unknown is never blindly repeated: the session's state is asked for
(GET) and the upload resumes where the registry says it stands, or the session is dropped and the upload
starts over; a blob that landed is found by HEAD. Every digest the registry reports must equal ours.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote, urljoin, urlsplit

from ..digest import Progress, copy_hashed, sha256_digest
from ..errors import InputError, Warn
from ..spec import Descriptor
from .auth import DOCKER_HUB, Authorizer, CredentialStore, repository_scope
from .transport import (
    RETRY_STATUSES,
    Body,
    ConnectionRefused,
    RegistryError,
    Response,
    StreamBody,
    TlsUnavailable,
    Transport,
    UncertainOutcome,
    origin,
)

DEFAULT_CHUNK_SIZE = 16 << 20
"""Blobs up to this size go in one PUT; larger ones in PATCH chunks of this size (or the registry's min)."""
MANIFEST_MAX = 4 << 20
_DOCKER_HUB_API = "registry-1.docker.io"
_SESSION_LOST = frozenset({"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID", "SIZE_INVALID"})

BlobOpener = Callable[[], BinaryIO]
"""Opens a fresh seekable stream on a blob's bytes, at its start."""


class _Interrupted(Exception):
    """An upload request failed in a way that may pass: the session's state must be asked for, unless
    `restart` says the session is spoiled (its bytes do not hash to our digest) and must be dropped."""

    def __init__(self, message: str, *, restart: bool = False) -> None:
        super().__init__(message)
        self.restart = restart


class _Window(io.RawIOBase):
    """`length` bytes of a seekable stream from `offset`: the body of one PATCH."""

    def __init__(self, src: BinaryIO, offset: int, length: int) -> None:
        super().__init__()
        src.seek(offset)
        self._src = src
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left)
        if n == 0:
            return 0
        got = self._src.readinto(memoryview(buffer)[:n])  # type: ignore[attr-defined]
        self._left -= got or 0
        return got or 0

    def close(self) -> None:
        self._src.close()
        super().close()


class _SentBytes:
    """Reports bytes as they are sent, and takes them back when an upload rewinds."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self.position = 0

    def __call__(self, n: int) -> None:
        self.position += n
        if self._progress:
            self._progress(n)

    def rewind(self, offset: int) -> None:
        if self._progress and offset != self.position:
            self._progress(offset - self.position)
        self.position = offset


@dataclass(frozen=True)
class Mounted:
    """The registry linked the blob from the other repository: nothing to upload."""


@dataclass(frozen=True)
class Session:
    """An open upload: where to send the next request, and the registry's smallest chunk."""

    location: str
    min_chunk: int = 0


class RegistryClient:
    """Requests to one registry, authorized per repository scope; the scheme is found by pinging /v2/."""

    def __init__(
        self,
        registry: str,
        transport: Transport,
        credentials: CredentialStore,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        warn: Warn | None = None,
    ) -> None:
        self.registry = registry
        self.host = _DOCKER_HUB_API if registry == DOCKER_HUB else registry
        self.chunk_size = chunk_size
        self._transport = transport
        self._auth = Authorizer(registry, credentials, transport)
        self._warn = warn
        self._base: str | None = None

    # -- plumbing ---------------------------------------------------------------------------------

    def base_url(self) -> str:
        """`https://host` or, for loopback and --insecure hosts that do not speak TLS, `http://host`."""
        if self._base is None:
            self._base = self._ping()
        return self._base

    def _ping(self) -> str:
        schemes = ["https", "http"] if self._transport.plain_http_allowed(self.host) else ["https"]
        for scheme in schemes:
            base = f"{scheme}://{self.host}"
            try:
                response = self._transport.request("GET", f"{base}/v2/")
            except (TlsUnavailable, ConnectionRefused) as exc:
                # A plain-HTTP registry fails the TLS handshake; with no port, https and http ports differ.
                port_given = urlsplit(f"//{self.host}").port is not None
                if scheme == schemes[-1] or (isinstance(exc, ConnectionRefused) and port_given):
                    raise
                continue
            if response.status == 401:
                self._auth.unauthorized(response, None)
            elif response.status != 200:
                raise RegistryError(
                    self.host, f"GET /v2/ answered {response.describe()}: not an OCI registry?"
                )
            return base
        raise AssertionError("unreachable")

    def _request(
        self,
        method: str,
        target: str,
        scopes: tuple[str, ...],
        *,
        headers: Mapping[str, str] | None = None,
        body: Body | None = None,
        idempotent: bool = True,
        max_body: int = 64 << 10,
    ) -> Response:
        """One request with the Authorization for `scopes`; a 401 is answered once, per its challenge."""
        base = self.base_url()
        url = urljoin(base, target)
        home = origin(url) == origin(base)
        for attempt in (1, 2):
            sent = self._auth.authorization(scopes) if home else None
            request_headers = dict(headers or {})
            if sent is not None:
                request_headers["Authorization"] = sent
            response = self._transport.request(
                method, url, headers=request_headers, body=body, idempotent=idempotent, max_body=max_body
            )
            if response.status == 401 and home:
                if attempt == 2:
                    raise self._auth.failure(response, scopes)
                self._auth.unauthorized(response, sent)
                continue
            if response.status == 403:
                raise self._auth.failure(response, scopes)
            return response
        raise AssertionError("unreachable")

    def _subject(self, repository: str, what: str = "") -> str:
        return f"{self.registry}/{repository}{what}"

    # -- blobs ------------------------------------------------------------------------------------

    def blob_exists(self, repository: str, descriptor: Descriptor) -> bool:
        response = self._request("HEAD", f"/v2/{repository}/blobs/{descriptor.digest}", _scopes(repository))
        if response.status == 404:
            return False
        if response.status != 200:
            raise RegistryError(
                self._subject(repository), f"HEAD blob {descriptor.digest}: {response.describe()}"
            )
        reported = response.header("Docker-Content-Digest")
        if reported is not None and reported != descriptor.digest:
            raise RegistryError(
                self._subject(repository),
                f"asked for blob {descriptor.digest}, the registry answered {reported}",
            )
        return True

    def mount_blob(self, repository: str, descriptor: Descriptor, source: str) -> Mounted | Session:
        """Cross-repository mount; a registry that declines opens an upload session instead (202)."""
        query = f"mount={quote(descriptor.digest)}&from={quote(source)}"
        response = self._request(
            "POST",
            f"/v2/{repository}/blobs/uploads/?{query}",
            (*_scopes(repository), repository_scope(source, "pull")),
        )
        if response.status == 201:
            self._check_digest(repository, descriptor, response)
            return Mounted()
        if response.status == 202:
            return self._session(repository, response)
        raise RegistryError(self._subject(repository), f"mount of {descriptor.digest}: {response.describe()}")

    def upload_blob(
        self,
        repository: str,
        descriptor: Descriptor,
        opener: BlobOpener,
        *,
        session: Session | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Upload a blob the registry lacks; returns once the registry holds it under our digest."""
        sent = _SentBytes(progress)
        attempts = self._transport.retry.attempts
        failures = restarts = 0
        offset = 0
        while True:
            end = offset
            try:
                if session is None:
                    session, offset = self.start_upload(repository), 0
                    sent.rewind(0)
                chunk = max(self.chunk_size, session.min_chunk)
                if descriptor.size <= chunk:
                    end = descriptor.size
                    self._finish(repository, descriptor, session, opener, sent, whole=True)
                    return
                while offset < descriptor.size:
                    end = min(offset + chunk, descriptor.size)
                    session = self._patch(repository, session, opener, offset, end, sent)
                    offset, failures = end, 0
                self._finish(repository, descriptor, session, opener, sent, whole=False)
                return
            except _Interrupted as exc:
                failures += 1
                if failures >= attempts or restarts >= attempts:
                    raise RegistryError(
                        self._subject(repository), f"upload of {descriptor.digest} failed: {exc}"
                    ) from None
                if self.blob_exists(repository, descriptor):
                    return  # the last request landed after all
                resumed = None
                if session is not None and not exc.restart:
                    resumed = self._resume(repository, session, offset, end)
                if resumed is None:
                    restarts += 1
                    self._cancel(repository, session)
                    session, offset = None, 0
                else:
                    session, offset = resumed
                sent.rewind(offset)
                delay = self._transport.retry.delay(failures)
                if self._warn:
                    where = "starting over" if resumed is None else f"resuming at byte {offset}"
                    self._warn(f"upload of {descriptor.digest}: {exc}; {where} in {delay:.1f}s")
                time.sleep(delay)

    def start_upload(self, repository: str) -> Session:
        # Safe to repeat: a lost answer only leaves an unused session behind for the registry to expire.
        response = self._request("POST", f"/v2/{repository}/blobs/uploads/", _scopes(repository))
        if response.status != 202:
            raise RegistryError(self._subject(repository), f"cannot start an upload: {response.describe()}")
        return self._session(repository, response)

    def _session(self, repository: str, response: Response) -> Session:
        location = response.header("Location")
        if not location:
            raise RegistryError(self._subject(repository), "the registry opened an upload without a Location")
        minimum = response.header("OCI-Chunk-Min-Length") or ""
        return Session(urljoin(response.url, location), int(minimum) if minimum.isdigit() else 0)

    def _patch(
        self, repository: str, session: Session, opener: BlobOpener, start: int, end: int, sent: _SentBytes
    ) -> Session:
        response = self._upload_request(
            "PATCH",
            session.location,
            repository,
            {"Content-Type": "application/octet-stream", "Content-Range": f"{start}-{end - 1}"},
            StreamBody(lambda: _open_window(opener, start, end - start), end - start, sent),
        )
        if response.status != 202:
            raise self._upload_failure(repository, response)
        stored = _stored_bytes(response.header("Range"), start)
        if stored != end:
            raise _Interrupted(f"the registry holds {stored} bytes after a PATCH up to {end}")
        return self._next(session, response)

    def _finish(
        self,
        repository: str,
        descriptor: Descriptor,
        session: Session,
        opener: BlobOpener,
        sent: _SentBytes,
        *,
        whole: bool,
    ) -> None:
        """The closing PUT with our digest, carrying the whole blob when it was not sent in chunks."""
        query = "&" if urlsplit(session.location).query else "?"
        url = f"{session.location}{query}digest={quote(descriptor.digest)}"
        body: Body = StreamBody(opener, descriptor.size, sent) if whole else b""
        headers = {"Content-Type": "application/octet-stream"}
        response = self._upload_request("PUT", url, repository, headers, body)
        if response.status == 400 and "DIGEST_INVALID" in response.error_codes():
            self._check_source(descriptor, opener)
            raise _Interrupted("the uploaded bytes did not match the digest", restart=True)
        if response.status != 201:
            raise self._upload_failure(repository, response)
        self._check_digest(repository, descriptor, response)

    def _upload_request(
        self, method: str, url: str, repository: str, headers: Mapping[str, str], body: Body
    ) -> Response:
        try:
            return self._request(
                method, url, _scopes(repository), headers=headers, body=body, idempotent=False
            )
        except UncertainOutcome as exc:
            raise _Interrupted(exc.problem) from None

    def _upload_failure(self, repository: str, response: Response) -> Exception:
        """A status that a fresh try may cure is an interruption; anything else is final."""
        if (
            response.status in RETRY_STATUSES
            or response.status == 416
            or response.error_codes() & _SESSION_LOST
        ):
            return _Interrupted(response.describe())
        return RegistryError(self._subject(repository), f"upload refused: {response.describe()}")

    def _check_source(self, descriptor: Descriptor, opener: BlobOpener) -> None:
        """After DIGEST_INVALID: tell a corrupt archive (final) from a garbled session (start over)."""
        with opener() as src:
            actual = "sha256:" + copy_hashed(src, None, descriptor.size).hexdigest()
        if actual != descriptor.digest:
            raise InputError(f"blob {descriptor.digest}", f"the archive holds bytes whose digest is {actual}")

    def _resume(
        self, repository: str, session: Session, confirmed: int, attempted: int
    ) -> tuple[Session, int] | None:
        """Ask where the session stands: resume if it holds between what was confirmed and what was sent."""
        try:
            response = self._request("GET", session.location, _scopes(repository))
        except RegistryError:
            return None
        if response.status not in (200, 204) or response.header("Range") is None:
            return None
        stored = _stored_bytes(response.header("Range"), confirmed)
        if not confirmed <= stored <= attempted:
            return None
        return self._next(session, response), stored

    def _cancel(self, repository: str, session: Session | None) -> None:
        if session is None:
            return
        with contextlib.suppress(RegistryError):  # best effort: registries expire abandoned sessions
            self._request("DELETE", session.location, _scopes(repository), idempotent=False)

    def _next(self, session: Session, response: Response) -> Session:
        location = response.header("Location")
        return Session(urljoin(response.url, location) if location else session.location, session.min_chunk)

    def _check_digest(self, repository: str, descriptor: Descriptor, response: Response) -> None:
        reported = response.header("Docker-Content-Digest")
        if reported is None:
            if not self.blob_exists(repository, descriptor):
                raise RegistryError(
                    self._subject(repository), f"blob {descriptor.digest} is missing after its upload"
                )
        elif reported != descriptor.digest:
            raise RegistryError(
                self._subject(repository), f"the registry stored blob {descriptor.digest} as {reported}"
            )

    # -- manifests --------------------------------------------------------------------------------

    def put_manifest(self, repository: str, reference: str, media_type: str, data: bytes) -> str:
        """PUT a manifest or index by tag or digest; returns its digest, checked against the registry's."""
        ours = sha256_digest(data)
        separator = "@" if reference.startswith("sha256:") else ":"
        subject = self._subject(repository, f"{separator}{reference}")
        response = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            _scopes(repository),
            headers={"Content-Type": media_type},
            body=data,
        )
        if response.status not in (200, 201):
            raise RegistryError(subject, f"manifest refused: {response.describe()}")
        reported = response.header("Docker-Content-Digest") or self._manifest_digest(
            repository, reference, media_type
        )
        if reported != ours:
            raise RegistryError(subject, f"the registry reports manifest digest {reported}, ours is {ours}")
        return ours

    def _manifest_digest(self, repository: str, reference: str, media_type: str) -> str | None:
        response = self._request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            _scopes(repository),
            headers={"Accept": media_type},
        )
        return response.header("Docker-Content-Digest") if response.status == 200 else None


def _scopes(repository: str) -> tuple[str, ...]:
    # One scope for every request on a repository, so one token serves the whole push there.
    return (repository_scope(repository),)


def _open_window(opener: BlobOpener, offset: int, length: int) -> BinaryIO:
    return _Window(opener(), offset, length)  # type: ignore[return-value]


def _stored_bytes(range_header: str | None, confirmed: int) -> int:
    """Bytes a session holds from its `Range: 0-END` header; `0-0` means none when none were confirmed."""
    if not range_header:
        return -1
    _, _, end = range_header.replace("bytes=", "").partition("-")
    if not end.strip().isdigit():
        return -1
    last = int(end)
    return 0 if last == 0 and confirmed == 0 else last + 1
