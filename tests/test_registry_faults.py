"""Pushing through a faulty network: a small proxy in front of the real registry injects the faults.

The proxy answers 503 to some requests (the registry never sees them) and drops the connection after
forwarding others (the registry applied them; the client never hears so), as chosen by a seeded RNG or
by an explicit schedule. It also plays a storage backend for the redirect test. What we pushed is always
read back from the registry itself, past the proxy, with skopeo.
"""

from __future__ import annotations

import base64
import http.client
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from realtools import Registry
from registry_support import (
    Pushable,
    assert_clean_failure,
    cli,
    docker_config,
    make_archive,
    pull_to_dir,
    remote_digest,
)

from oci_builder.registry import RetryPolicy, push_archive

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}
_UNAVAILABLE = b'{"errors":[{"code":"UNAVAILABLE","message":"injected by the test proxy"}]}'
FAST_RETRY = RetryPolicy(attempts=6, backoff=0.02, max_delay=0.2)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    fate: str


Rule = Callable[[str, str, int], str | None]
"""(method, path, how many requests with this method came before) -> a fate, or None to let the RNG pick."""


@dataclass
class FaultProxy:
    """A threaded HTTP/1.1 proxy on 127.0.0.1 in front of `upstream`; every request is recorded in `seen`."""

    upstream: Registry
    seed: int = 0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    max_drops: int = 0
    rule: Rule | None = None
    redirect_blobs_to: str | None = None
    """Answer blob GET/HEAD with a 307 to this origin, as registries do to send clients to storage."""
    sign_requests: bool = False
    """Add the upstream's credentials to requests that come without (a storage backend's signed URL)."""
    seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._drops = 0
        self._counts: dict[str, int] = {}
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def decide(self, method: str, path: str, headers: dict[str, str]) -> str:
        with self._lock:
            count = self._counts.get(method, 0)
            self._counts[method] = count + 1
            fate = self.rule(method, path, count) if self.rule else None
            if fate is None:
                roll = self._rng.random()
                fate = "forward"
                if self.redirect_blobs_to and method in ("GET", "HEAD") and "/blobs/sha256:" in path:
                    fate = "redirect"
                elif roll < self.error_rate:
                    fate = "503"
                elif roll < self.error_rate + self.drop_rate and self._drops < self.max_drops:
                    fate = "drop"
            if fate == "drop":
                self._drops += 1
            self.seen.append(Seen(method, path, headers, fate))
            return fate

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        up = self.upstream
        conn: http.client.HTTPConnection
        if up.tls:
            conn = http.client.HTTPSConnection("127.0.0.1", up.port, context=up.ssl_context(), timeout=60)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=60)
        out = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
        out["X-Forwarded-Proto"] = "http"  # the registry builds upload Locations back to us, in plain HTTP
        if self.sign_requests and "authorization" not in {k.lower() for k in out} and up.user:
            token = base64.b64encode(f"{up.user}:{up.password}".encode()).decode()
            out["Authorization"] = f"Basic {token}"
        try:
            conn.request(
                method, path, body=body if body or method in ("POST", "PUT", "PATCH") else None, headers=out
            )
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()

    def count(self, method: str, fragment: str = "") -> int:
        return sum(1 for s in self.seen if s.method == method and fragment in s.path)

    def fates(self, fate: str) -> list[Seen]:
        return [s for s in self.seen if s.fate == fate]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FaultProxy

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _handle(self) -> None:
        proxy = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = dict(self.headers.items())
        fate = proxy.decide(self.command, self.path, headers)
        if fate == "503":
            self._reply(503, "Service Unavailable", [("Content-Type", "application/json")], _UNAVAILABLE)
            return
        if fate == "redirect":
            self._reply(
                307, "Temporary Redirect", [("Location", f"{proxy.redirect_blobs_to}{self.path}")], b""
            )
            return
        status, reason, upstream_headers, data = proxy.forward(self.command, self.path, headers, body)
        if fate == "drop":
            self.close_connection = True  # the registry applied it; the client never hears
            return
        self._reply(status, reason, upstream_headers, data)

    def _reply(self, status: int, reason: str, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response_only(status, reason)
        length = str(len(data))
        for name, value in headers:
            if name.lower() in _HOP_BY_HOP:
                continue
            if name.lower() == "content-length":
                length = value if self.command == "HEAD" else length
                continue
            self.send_header(name, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@pytest.fixture
def proxies() -> Iterator[list[FaultProxy]]:
    made: list[FaultProxy] = []
    yield made
    for proxy in made:
        proxy.close()


def _intact(registry: Registry, reference: str, pushable: Pushable, tmp_path: Path) -> None:
    assert remote_digest(registry, reference) == pushable.image.manifest.digest
    pulled = pull_to_dir(registry, reference, tmp_path / "pulled")
    for digest, data in pushable.layer_bytes.items():
        assert (pulled / digest.split(":")[1]).read_bytes() == data


def test_push_through_503s_and_dropped_connections(
    tmp_path: Path, registry: Registry, hello_wasm: Path, proxies: list[FaultProxy]
) -> None:
    proxy = FaultProxy(registry, seed=20240601, error_rate=0.2, drop_rate=0.1, max_drops=4)
    proxies.append(proxy)
    pushable = make_archive(tmp_path, hello_wasm, big_layer=40 << 20, seed=21)
    warnings: list[str] = []
    pushed = push_archive(
        pushable.path,
        [f"{proxy.host}/faults/rng:v1"],
        chunk_size=4 << 20,
        retry=FAST_RETRY,
        warn=warnings.append,
    )
    assert [p.digest for p in pushed] == [pushable.image.manifest.digest]
    _intact(registry, f"{registry.host}/faults/rng:v1", pushable, tmp_path)
    assert len(proxy.fates("503")) >= 5, "the seed should make the proxy inject 503s"
    assert len(proxy.fates("drop")) == 4, "the seed should make the proxy drop connections"
    assert proxy.count("PATCH") >= 10  # 40 MiB in 4 MiB chunks, plus the ones that were repeated
    assert warnings

    # Unchanged image, same faults: no upload is started, and the manifest is put again.
    before = len(proxy.seen)
    again = push_archive(pushable.path, [f"{proxy.host}/faults/rng:v1"], retry=FAST_RETRY)
    assert again == pushed
    second = proxy.seen[before:]
    assert not [s for s in second if s.method == "POST" and "/blobs/uploads/" in s.path]
    assert [s.method for s in second if s.fate == "forward" and "/manifests/" in s.path] == ["PUT"]


def _schedule(**fates: dict[int, str]) -> Callable[[str, str, int], str | None]:
    def rule(method: str, path: str, count: int) -> str | None:
        return fates.get(method, {}).get(count, "forward")

    return rule


def test_a_patch_lost_after_the_registry_applied_it_restarts_the_upload_cleanly(
    tmp_path: Path, registry: Registry, hello_wasm: Path, proxies: list[FaultProxy]
) -> None:
    # The first PATCH is refused (503: resume at the same offset); the third is applied but its answer
    # lost: sending it again would store its bytes twice, so the session is asked for and restarted.
    proxy = FaultProxy(registry, rule=_schedule(PATCH={0: "503", 2: "drop"}))
    proxies.append(proxy)
    pushable = make_archive(tmp_path, hello_wasm, big_layer=10 << 20, seed=22)
    warnings: list[str] = []
    push_archive(
        pushable.path,
        [f"{proxy.host}/faults/schedule:v1"],
        chunk_size=3 << 20,
        retry=FAST_RETRY,
        warn=warnings.append,
    )
    _intact(registry, f"{registry.host}/faults/schedule:v1", pushable, tmp_path)
    assert any("resuming at byte 0" in w for w in warnings), warnings
    assert any("starting over" in w for w in warnings), warnings
    big_uploads = [s for s in proxy.seen if s.method == "POST" and "/blobs/uploads/" in s.path]
    assert len(big_uploads) == 4  # config, wasm layer, big layer, and the big layer once more


def test_a_push_that_keeps_failing_stops_with_a_clear_error_and_no_manifest(
    tmp_path: Path, registry: Registry, hello_wasm: Path, proxies: list[FaultProxy]
) -> None:
    def refuse_uploads(method: str, path: str, count: int) -> str | None:
        return "503" if method == "PUT" and "/blobs/uploads/" in path else "forward"

    proxy = FaultProxy(registry, rule=refuse_uploads)
    proxies.append(proxy)
    pushable = make_archive(tmp_path, hello_wasm, seed=23)
    result = cli(["push", str(pushable.path), f"{proxy.host}/faults/down:v1"])
    assert_clean_failure(result, "upload of sha256:", "503")
    assert proxy.count("PUT", "/manifests/") == 0
    status, _, _ = registry.request("/v2/faults/down/manifests/v1", method="HEAD")
    assert status == 404


def test_credentials_stay_home_when_blob_requests_are_redirected(
    tmp_path: Path, tls_registry: Registry, hello_wasm: Path, proxies: list[FaultProxy]
) -> None:
    storage = FaultProxy(tls_registry, sign_requests=True)
    proxies.append(storage)
    front = FaultProxy(tls_registry, redirect_blobs_to=f"http://localhost:{storage.port}")
    proxies.append(front)
    assert tls_registry.user is not None and tls_registry.password is not None
    pushable = make_archive(tmp_path, hello_wasm, seed=24)
    ref = f"{front.host}/redirected/app:v1"
    secret = base64.b64encode(f"{tls_registry.user}:{tls_registry.password}".encode()).decode()
    env = docker_config(tmp_path / "docker", {"auths": {front.host: {"auth": secret}}})
    result = cli(["push", str(pushable.path), ref], env=env)
    assert result.returncode == 0, result.stderr
    assert storage.seen, "blob requests should have been redirected to the storage proxy"
    assert all("authorization" not in {k.lower() for k in s.headers} for s in storage.seen)
    authorized = [s for s in front.seen if "authorization" in {k.lower() for k in s.headers}]
    assert len(authorized) >= len(front.seen) - 1  # all but the first, anonymous, ping
    assert (
        remote_digest(tls_registry, f"{tls_registry.host}/redirected/app:v1")
        == pushable.image.manifest.digest
    )
