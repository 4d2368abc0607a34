"""The reference grammar: what docker and distribution accept, we accept; the rest is refused precisely."""

from __future__ import annotations

import pytest

from oci_builder.reference import ReferenceError, check_tag, parse_name, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest"),
    [
        (
            "ghcr.io/containerd/runwasi/wasi-demo-oci:latest",
            "ghcr.io",
            "containerd/runwasi/wasi-demo-oci",
            "latest",
            None,
        ),
        ("localhost:5000/app:v1.2", "localhost:5000", "app", "v1.2", None),
        ("localhost/app", "localhost", "app", None, None),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b", None, None),
        ("[::1]:5000/app:x", "[::1]:5000", "app", "x", None),
        ("Registry/app", "Registry", "app", None, None),
        ("library/hello", None, "library/hello", None, None),
        ("hello", None, "hello", None, None),
        (f"ghcr.io/x/y@{DIGEST}", "ghcr.io", "x/y", None, DIGEST),
        (f"ghcr.io/x/y:1@{DIGEST}", "ghcr.io", "x/y", "1", DIGEST),
        ("a__b/c--d/e.f_g:_tag-1.0", None, "a__b/c--d/e.f_g", "_tag-1.0", None),
    ],
)
def test_parse_reference_splits_parts(
    text: str, domain: str | None, path: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ghcr.io/Containerd/app", "'Containerd' must be lowercase"),
        ("ghcr.io/a/../b", "path component '..' is not valid"),
        ("ghcr.io/a b/c", "contains whitespace"),
        ("ghcr.io//c", "empty path component"),
        ("ghcr.io/a/b/", "empty path component"),
        ("ghcr.io/-a", "path component '-a' is not valid"),
        ("ghcr.io/a_", "path component 'a_' is not valid"),
        ("ghcr.io/a___b", "path component 'a___b' is not valid"),
        ("ghcr.io/x:-bad", "tag '-bad' is not valid"),
        ("ghcr.io/x:" + "a" * 129, "longer than 128"),
        ("bad_host.io:xx/app", "registry 'bad_host.io:xx' is not a valid host"),
        ("ghcr.io/x@sha256:abc", "sha256 needs 64 lowercase hex digits"),
        ("", "name is empty"),
        ("a/" * 130 + "b", "the limit is 255"),
    ],
)
def test_parse_reference_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ReferenceError, match=None) as info:
        parse_reference(text)
    assert message in str(info.value)


def test_docker_hub_defaults() -> None:
    assert parse_name("hello").registry == "docker.io"
    assert parse_name("hello").repository == "library/hello"
    assert parse_name("me/hello").repository == "me/hello"
    assert parse_name("ghcr.io/me/hello").repository == "me/hello"
    assert parse_name("ghcr.io/me/hello").registry == "ghcr.io"


def test_with_tag_checks_the_tag() -> None:
    ref = parse_name("ghcr.io/a/b")
    assert str(ref.with_tag("v1")) == "ghcr.io/a/b:v1"
    with pytest.raises(ReferenceError):
        ref.with_tag("no spaces")


def test_tag_grammar() -> None:
    assert check_tag("a" * 128) == "a" * 128
    for bad in ("", ".x", "a/b", "a:b", "ü"):
        with pytest.raises(ReferenceError):
            check_tag(bad)


def test_digest_grammar_knows_each_registered_length() -> None:
    from oci_builder.digest import digest_problem

    assert digest_problem("sha256:" + "a" * 64) is None
    assert digest_problem("sha512:" + "a" * 128) is None
    assert "sha512 needs 128" in (digest_problem("sha512:" + "a" * 64) or "")
    assert "sha256 needs 64" in (digest_problem("sha256:" + "A" * 64) or "")
    assert "unsupported algorithm 'md5'" in (digest_problem("md5:" + "a" * 32) or "")
