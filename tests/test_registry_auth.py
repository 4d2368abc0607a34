"""Where credentials come from, how challenges read, and which URLs may carry them (no registry needed).

Credential helpers are real programs (small shell scripts on PATH), run the way docker runs them.
"""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from oci_builder.errors import InputError
from oci_builder.registry.auth import Credential, CredentialStore, docker_config_path, parse_challenges
from oci_builder.registry.transport import RegistryError, Transport, is_loopback, tls_context


def _config(tmp_path: Path, value: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(value))
    return path


def _auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def _helper(bin_dir: Path, name: str, answers: dict[str, tuple[str, str]]) -> None:
    """docker-credential-NAME: prints the JSON for a known server on `get`, else 'credentials not found'."""
    bin_dir.mkdir(exist_ok=True)
    cases = "".join(
        f"  '{server}') echo '{json.dumps({'ServerURL': server, 'Username': u, 'Secret': p})}'; exit 0;;\n"
        for server, (u, p) in answers.items()
    )
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(
        f'#!/bin/sh\n[ "$1" = get ] || exit 2\nserver=$(cat)\ncase "$server" in\n{cases}esac\n'
        "echo 'credentials not found in native keychain'; exit 1\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("key", ["ghcr.io", "https://ghcr.io", "https://ghcr.io/v2/", "http://GHCR.io/"])
def test_auths_keys_match_in_every_form_docker_writes(tmp_path: Path, key: str) -> None:
    store = CredentialStore(config_path=_config(tmp_path, {"auths": {key: _auth("me", "pw")}}))
    assert store.get("ghcr.io") == Credential("me", "pw")
    assert store.get("quay.io") is None


def test_docker_hub_is_found_under_its_index_url(tmp_path: Path) -> None:
    path = _config(tmp_path, {"auths": {"https://index.docker.io/v1/": _auth("hub", "pw")}})
    assert CredentialStore(config_path=path).get("docker.io") == Credential("hub", "pw")


def test_explicit_credentials_win_over_the_config(tmp_path: Path) -> None:
    path = _config(tmp_path, {"auths": {"ghcr.io": _auth("config", "pw")}})
    store = CredentialStore({"ghcr.io": Credential("given", "secret")}, path)
    assert store.lookup("ghcr.io") == (Credential("given", "secret"), "the given user name and password")


def test_cred_helpers_then_creds_store_then_auths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    _helper(bin_dir, "specific", {"a.example": ("from-helper", "1")})
    _helper(bin_dir, "store", {"b.example": ("from-store", "2"), "a.example": ("store-for-a", "x")})
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    config = {
        "credHelpers": {"a.example": "specific", "c.example": "specific"},
        "credsStore": "store",
        "auths": {"c.example": _auth("from-auths", "3"), "b.example": _auth("shadowed", "x")},
    }
    store = CredentialStore(config_path=_config(tmp_path, config))
    assert store.lookup("a.example") == (Credential("from-helper", "1"), "docker-credential-specific")
    assert store.lookup("b.example") == (Credential("from-store", "2"), "docker-credential-store")
    credential, source = store.lookup("c.example")  # neither helper knows it: auths has it
    assert credential == Credential("from-auths", "3") and "auths" in source
    assert store.get("d.example") is None


def test_a_missing_credential_helper_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    store = CredentialStore(config_path=_config(tmp_path, {"credsStore": "nowhere"}))
    with pytest.raises(InputError, match=r"docker-credential-nowhere.*not found"):
        store.get("ghcr.io")


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must hold a JSON object"),
        (json.dumps({"auths": {"ghcr.io": {"auth": "bm9jb2xvbg=="}}}), "base64 of USER:PASSWORD"),
        (json.dumps({"auths": {"ghcr.io": {"auth": "***"}}}), "base64 of USER:PASSWORD"),
    ],
)
def test_a_broken_config_is_named_with_what_is_wrong(tmp_path: Path, config: str, problem: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(config)
    with pytest.raises(InputError, match=problem) as caught:
        CredentialStore(config_path=path).get("ghcr.io")
    assert str(path) in str(caught.value)


def test_config_path_follows_docker_config_then_home(tmp_path: Path) -> None:
    assert docker_config_path({"DOCKER_CONFIG": "/x", "HOME": "/h"}) == Path("/x/config.json")
    assert docker_config_path({"HOME": "/h"}) == Path("/h/.docker/config.json")


def test_secrets_stay_out_of_reprs() -> None:
    assert "hunter2" not in repr(Credential("me", "hunter2"))


def test_challenges_parse_quoted_commas_and_several_schemes() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull,push",error="insufficient_scope", Basic realm="x \\"y\\""'
    )
    bearer, basic = parse_challenges(header)
    assert bearer.scheme == "bearer"
    assert dict(bearer.params) == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
        "error": "insufficient_scope",
    }
    assert basic.scheme == "basic" and basic.params == {"realm": 'x "y"'}
    assert parse_challenges("") == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("127.8.9.10", True), ("[::1]", True), ("::1", True),
     ("10.0.0.1", False), ("ghcr.io", False), ("localhost.example", False), ("128.0.0.1", False)],
)  # fmt: skip
def test_loopback_is_localhost_127_slash_8_and_ipv6_one(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_plain_http_is_for_loopback_and_insecure_hosts_and_credentials_stay_on_loopback() -> None:
    transport = Transport(insecure={"registry.internal:5000"})
    transport.check_url("http://127.0.0.1:5000/v2/", with_credentials=True)
    transport.check_url("http://localhost/v2/", with_credentials=True)
    transport.check_url("https://ghcr.io/v2/", with_credentials=True)
    transport.check_url("http://registry.internal:5000/v2/", with_credentials=False)
    with pytest.raises(RegistryError, match="credentials over plain HTTP"):
        transport.check_url("http://registry.internal:5000/v2/", with_credentials=True)
    with pytest.raises(RegistryError, match="--insecure"):
        transport.check_url("http://ghcr.io/v2/", with_credentials=False)
    with pytest.raises(RegistryError, match="scheme"):
        transport.check_url("ftp://ghcr.io/v2/", with_credentials=False)


def test_a_ca_file_that_is_not_a_certificate_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(InputError, match="--ca-file"):
        tls_context(bad)
