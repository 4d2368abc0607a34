"""Bearer token auth: the real registry with distribution's `token` auth, and a small token issuer here.

The issuer signs RS256 JWTs with a key and certificate made by openssl (`openssl dgst -sha256 -sign`); the
registry trusts the certificate through `rootcertbundle` and finds it in each token's `x5c` header. The
issuer grants what an authenticated caller asks for, and counts the token requests per scope.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from realtools import Registry, require_tool, run
from registry_support import (
    assert_clean_failure,
    cli,
    docker_config,
    make_archive,
    pull_to_dir,
    remote_digest,
)

SERVICE = "oci-tar-builder-test-registry"
ISSUER = "oci-tar-builder-test-issuer"
USER, PASSWORD = "token-user", "token-password"
REFRESH_TOKEN = "refresh-" + "0" * 16


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """GET /token with Basic auth, or POST /token with an OAuth2 refresh token, answers a signed JWT."""

    def __init__(self, directory: Path) -> None:
        self.key, self.cert = directory / "issuer-key.pem", directory / "issuer-cert.pem"
        run([
            require_tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=token-issuer", "-keyout", str(self.key), "-out", str(self.cert),
        ])  # fmt: skip
        pem = self.cert.read_text().split("-----")[2]
        self._x5c = "".join(pem.split())  # the PEM body is the certificate's DER, base64
        self.requests: Counter[tuple[str, ...]] = Counter()
        self._lock = threading.Lock()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                granted = self._basic_user()
                issuer.answer(self, granted, query.get("scope", []), query.get("service", [""])[0])

            def do_POST(self) -> None:
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
                ok = form.get("grant_type") == ["refresh_token"] and form.get("refresh_token") == [
                    REFRESH_TOKEN
                ]
                scopes = " ".join(form.get("scope", [])).split()
                issuer.answer(self, "refresh-user" if ok else None, scopes, form.get("service", [""])[0])

            def _basic_user(self) -> str | None:
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return ""  # anonymous: a token that grants nothing
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                return user if (user, password) == (USER, PASSWORD) else None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def answer(
        self, handler: BaseHTTPRequestHandler, user: str | None, scopes: list[str], service: str
    ) -> None:
        with self._lock:
            self.requests[tuple(sorted(scopes))] += 1
        if user is None or service != SERVICE:
            handler.send_response(401)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        access = []
        for scope in scopes if user else []:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        body = json.dumps({"token": self.sign(user, access), "expires_in": 300}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def sign(self, user: str, access: list[dict[str, object]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": ISSUER, "sub": user, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": secrets.token_hex(8), "access": access,
        }  # fmt: skip
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            [require_tool("openssl"), "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            capture_output=True,
            check=True,
        ).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class TokenRegistry(Registry):
    """docker-registry with `auth: token` pointing at the issuer (plain HTTP on loopback)."""

    def __init__(self, workdir: Path, issuer: TokenIssuer) -> None:
        self.issuer = issuer
        super().__init__(workdir)

    def _config(self) -> str:
        config = json.loads(super()._config())
        config["auth"] = {
            "token": {
                "realm": self.issuer.realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(self.issuer.cert),
            }
        }
        return json.dumps(config, indent=2)

    def skopeo_tls_args(self, direction: str = "dest") -> list[str]:
        return [*super().skopeo_tls_args(direction), f"--{direction}-creds", f"{USER}:{PASSWORD}"]


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    directory = tmp_path_factory.mktemp("token-registry")
    issuer = TokenIssuer(directory)
    try:
        registry = TokenRegistry(directory, issuer)
        try:
            yield registry
        finally:
            registry.stop()
    finally:
        issuer.close()


def _auths(registry: Registry, entry: dict[str, str]) -> dict[str, object]:
    return {"auths": {f"http://{registry.host}/v2/": entry}}


def _basic(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_push_with_bearer_tokens_fetched_once_per_scope(
    tmp_path: Path, token_registry: TokenRegistry, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm, big_layer=1 << 20, seed=31)
    env = docker_config(tmp_path / "docker", _auths(token_registry, _basic(USER, PASSWORD)))
    first, second = f"{token_registry.host}/tok/one:v1", f"{token_registry.host}/tok/two:v1"
    token_registry.issuer.requests.clear()
    result = cli(["push", str(pushable.path), first, second], env=env)
    requested = Counter(token_registry.issuer.requests)  # before skopeo asks for its own
    assert result.returncode == 0, result.stderr
    digest = pushable.image.manifest.digest
    assert result.stdout.splitlines() == [f"pushed {first}@{digest}", f"pushed {second}@{digest}"]
    for ref in (first, second):
        assert remote_digest(token_registry, ref) == digest
    pulled = pull_to_dir(token_registry, second, tmp_path / "pulled")
    for layer, data in pushable.layer_bytes.items():
        assert (pulled / layer.split(":")[1]).read_bytes() == data
    # One token per scope, reused for every request in it; mounting into `two` needs pull on `one` too.
    assert requested == Counter(
        {
            ("repository:tok/one:pull,push",): 1,
            ("repository:tok/two:pull,push",): 1,
            ("repository:tok/one:pull", "repository:tok/two:pull,push"): 1,
        }
    )


def test_an_identity_token_is_exchanged_for_access_tokens(
    tmp_path: Path, token_registry: TokenRegistry, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm, seed=32)
    env = docker_config(tmp_path / "docker", _auths(token_registry, {"identitytoken": REFRESH_TOKEN}))
    ref = f"{token_registry.host}/tok/identity:v1"
    result = cli(["push", str(pushable.path), ref], env=env)
    assert result.returncode == 0, result.stderr
    assert remote_digest(token_registry, ref) == pushable.image.manifest.digest


def test_a_wrong_password_is_refused_by_the_token_server_cleanly(
    tmp_path: Path, token_registry: TokenRegistry, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm, seed=33)
    env = docker_config(tmp_path / "docker", _auths(token_registry, _basic(USER, "wrong-password")))
    result = cli(["push", str(pushable.path), f"{token_registry.host}/tok/wrong:v1"], env=env)
    assert_clean_failure(result, "token server", "rejected the credentials", USER)
    assert "wrong-password" not in result.stderr


def test_anonymous_tokens_grant_no_push(
    tmp_path: Path, token_registry: TokenRegistry, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm, seed=34)
    result = cli(["push", str(pushable.path), f"{token_registry.host}/tok/anonymous:v1"])
    assert_clean_failure(result, "anonymous access", "no credentials")
