"""HTTP for registries: connections, TLS, which hosts may be spoken to in plain HTTP, retries and redirects.

Nothing here knows the distribution API or where credentials come from; it only enforces the rules that
must hold for every request: TLS is verified (system store, `SSL_CERT_FILE`, plus `--ca-file`), plain HTTP
is for loopback and `--insecure` registries only, an Authorization header never travels in plain HTTP
beyond loopback and is dropped when a redirect leaves the host, and bodies are streamed, never held whole.
Retries are for requests that are safe to repeat; the caller decides for the others (a PATCH whose
outcome is unknown must not be sent twice).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import random
import ssl
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

from .. import __version__
from ..digest import CHUNK_SIZE, Progress, ShortReadError, copy_hashed
from ..errors import InputError, OciBuilderError, Warn

USER_AGENT = f"oci-tar-builder/{__version__}"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_ERROR_BODY_MAX = 64 << 10


class RegistryError(OciBuilderError):
    """A registry (or the way to it) refused or failed a request; the push stopped, no tag points at gaps."""


class UncertainOutcome(RegistryError):
    """A request that is not safe to repeat failed in transit: the server may or may not have applied it."""


class TlsUnavailable(RegistryError):
    """The server did not speak TLS at all (a plain-HTTP registry), as opposed to failing verification."""


class ConnectionRefused(RegistryError):
    """Nothing listens on that port: retrying will not help, another port (scheme) might."""


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: the only hosts plain HTTP (and credentials over it) is fine for."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """Verify against the system store (OpenSSL reads `SSL_CERT_FILE`/`SSL_CERT_DIR`), plus `ca_file`."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except FileNotFoundError:
            raise InputError(f"--ca-file {ca_file}", "no such file", path=ca_file) from None
        except (OSError, ssl.SSLError) as exc:
            raise InputError(
                f"--ca-file {ca_file}", f"not a PEM certificate file ({exc})", path=ca_file
            ) from None
    return context


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff; `Retry-After` is honoured up to `max_delay`."""

    attempts: int = 5
    backoff: float = 0.5
    max_delay: float = 10.0

    def delay(self, failures: int, retry_after: str | None = None) -> float:
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after.strip()), self.max_delay)
        base = min(self.backoff * 2.0 ** (failures - 1), self.max_delay)
        return base * random.uniform(0.75, 1.0)


@dataclass(frozen=True)
class StreamBody:
    """`size` bytes from a stream that `open` makes afresh for every send, so a retry sends them again."""

    open: Callable[[], BinaryIO]
    size: int
    progress: Progress | None = None


Body = bytes | StreamBody


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: Message
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None else str(value)

    def describe(self) -> str:
        """`503 Service Unavailable`, plus the registry's error codes when the body carries them."""
        text = f"{self.status} {self.reason}".strip()
        detail = _error_detail(self.body)
        return f"{text} ({detail})" if detail else text

    def error_codes(self) -> set[str]:
        """The `code`s of a distribution-spec error body (`{"errors": [{"code": ...}]}`)."""
        return {str(e.get("code")) for e in _errors(self.body)}


def _errors(body: bytes) -> list[dict[str, object]]:
    try:
        value = json.loads(body)
    except ValueError:
        return []
    errors = value.get("errors") if isinstance(value, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _error_detail(body: bytes) -> str:
    errors = _errors(body)
    if errors:
        return "; ".join(f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors[:3])
    text = body[:200].decode("utf-8", "replace").strip()
    return " ".join(text.split()) if text and text.isprintable() else ""


class _SocketSink:
    """Lets copy_hashed write a request body straight into the connection."""

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self._conn = conn

    def write(self, data: bytes | memoryview) -> int:
        self._conn.send(data)
        return len(data)


@dataclass
class Transport:
    """One per push: a pool of keep-alive connections (one per origin) and the policies above."""

    tls: ssl.SSLContext = field(default_factory=tls_context)
    insecure: Collection[str] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 60.0
    warn: Warn | None = None
    _pool: dict[tuple[str, str, int], http.client.HTTPConnection] = field(default_factory=dict, repr=False)

    def plain_http_allowed(self, netloc: str) -> bool:
        host = urlsplit(f"//{netloc}").hostname or netloc
        return is_loopback(host) or netloc in self.insecure or host in self.insecure

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body | None = None,
        idempotent: bool = True,
        max_body: int = _ERROR_BODY_MAX,
        follow_redirects: bool = True,
    ) -> Response:
        """Send one request, following redirects; retry transient failures when `idempotent`.

        Non-idempotent requests are sent once: a transport failure raises UncertainOutcome, and every
        status (even 503) is returned for the caller to judge.
        """
        failures = 0
        while True:
            try:
                response = self._follow(method, url, dict(headers or {}), body, max_body, follow_redirects)
            except (OSError, http.client.HTTPException) as exc:
                fatal = _fatal_reason(exc, url)
                if fatal is not None:
                    raise fatal from None
                if not idempotent:
                    raise UncertainOutcome(
                        _where(method, url), f"connection failed: {_exc_text(exc)}"
                    ) from None
                failures += 1
                if failures >= self.retry.attempts:
                    raise RegistryError(
                        _where(method, url), f"{_exc_text(exc)} (gave up after {failures} attempts)"
                    ) from None
                self._pause(failures, None, f"{_where(method, url)}: {_exc_text(exc)}")
                continue
            if not idempotent or response.status not in RETRY_STATUSES:
                return response
            failures += 1
            if failures >= self.retry.attempts:
                return response
            self._pause(
                failures, response.header("Retry-After"), f"{_where(method, url)}: {response.describe()}"
            )

    def _pause(self, failures: int, retry_after: str | None, what: str) -> None:
        delay = self.retry.delay(failures, retry_after)
        if self.warn:
            self.warn(f"{what}; retrying in {delay:.1f}s ({failures}/{self.retry.attempts - 1})")
        time.sleep(delay)

    def _follow(
        self, method: str, url: str, headers: dict[str, str], body: Body | None, max_body: int, follow: bool
    ) -> Response:
        for _ in range(_MAX_REDIRECTS + 1):
            response = self._send(method, url, headers, body, max_body)
            location = response.header("Location")
            if not follow or response.status not in _REDIRECTS or not location:
                return response
            if method not in ("GET", "HEAD") and response.status not in (307, 308):
                return response  # a 301/302/303 to a PUT or PATCH is an answer, not a redirect to follow
            target = urljoin(url, location)
            if origin(target) != origin(url):
                # Registries send blob traffic to storage backends with signed URLs: our token stays home.
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = target
        raise RegistryError(_where(method, url), f"more than {_MAX_REDIRECTS} redirects")

    def check_url(self, url: str, *, with_credentials: bool) -> None:
        """Raise unless the URL's scheme is allowed for its host (and for credentials, when sent)."""
        parts = urlsplit(url)
        if parts.scheme == "https":
            return
        if parts.scheme != "http":
            raise RegistryError(url, f"unsupported URL scheme {parts.scheme!r}")
        host = parts.hostname or ""
        if not self.plain_http_allowed(parts.netloc):
            raise RegistryError(
                parts.netloc, "refusing plain HTTP to a remote host (name it with --insecure to allow it)"
            )
        if with_credentials and not is_loopback(host):
            raise RegistryError(
                parts.netloc, "refusing to send credentials over plain HTTP to a host that is not loopback"
            )

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: Body | None, max_body: int
    ) -> Response:
        self.check_url(url, with_credentials=any(k.lower() == "authorization" for k in headers))
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        conn = self._pool.get(key)
        if conn is None:
            conn = self._connect(*key)
            self._pool[key] = conn
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            conn.putheader("User-Agent", USER_AGENT)
            for name, value in headers.items():
                conn.putheader(name, value)
            size = len(body) if isinstance(body, bytes) else body.size if body is not None else 0
            if body is not None or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(size))
            conn.endheaders()
            if isinstance(body, bytes):
                conn.send(body)
            elif body is not None:
                self._stream(conn, body)
            resp = conn.getresponse()
            data = resp.read(max_body + 1)  # b"" for HEAD; reading to the end frees the connection
            if len(data) > max_body or resp.will_close or not resp.isclosed():
                self._drop(key)
        except BaseException:
            self._drop(key)
            raise
        return Response(resp.status, resp.reason, resp.msg, data[:max_body], url)

    def _stream(self, conn: http.client.HTTPConnection, body: StreamBody) -> None:
        with body.open() as src:
            try:
                copy_hashed(src, _SocketSink(conn), body.size, progress=body.progress)  # type: ignore[arg-type]
            except ShortReadError as exc:
                raise InputError("archive", f"a blob changed while it was pushed: {exc}") from None

    def _connect(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=self.tls, blocksize=CHUNK_SIZE
            )
        return http.client.HTTPConnection(host, port, timeout=self.timeout, blocksize=CHUNK_SIZE)

    def _drop(self, key: tuple[str, str, int]) -> None:
        conn = self._pool.pop(key, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for key in list(self._pool):
            self._drop(key)


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _where(method: str, url: str) -> str:
    parts = urlsplit(url)
    return f"{method} {parts.scheme}://{parts.netloc}{parts.path}"


def _exc_text(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "connection closed without a response"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, BrokenPipeError):
        return "connection closed while sending"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _fatal_reason(exc: BaseException, url: str) -> RegistryError | None:
    """Failures that a retry cannot fix, as the error to raise; None for transient ones."""
    netloc = urlsplit(url).netloc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return RegistryError(
            netloc,
            f"TLS certificate not trusted ({exc.verify_message}): trust its CA with --ca-file or "
            "SSL_CERT_FILE",
        )
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return TlsUnavailable(
            netloc,
            f"TLS handshake failed ({exc.reason or exc}); a registry that serves plain HTTP must be named "
            "with --insecure",
        )
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionRefused(
            netloc, "connection refused: is the registry running, and is the port right?"
        )
    if isinstance(exc, OSError) and type(exc).__name__ == "gaierror":
        return RegistryError(netloc, f"cannot resolve the host name ({exc.strerror or exc})")
    return None
