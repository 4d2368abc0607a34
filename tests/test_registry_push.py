"""`oci-tar-builder push` and `--push` against real registries, read back by skopeo.

Two of Debian's docker-registry: anonymous over plain HTTP, and htpasswd behind TLS with a certificate the
fixture made (trusted through --ca-file or SSL_CERT_FILE; credentials from a docker config.json the test
writes, a credential helper on PATH, or --password-stdin).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
import subprocess
from pathlib import Path

from realtools import Registry, run, skopeo
from registry_support import (
    assert_clean_failure,
    cli,
    docker_config,
    make_archive,
    pull_to_dir,
    raw_manifest,
    remote_digest,
    remote_json,
    upload_starts,
)

from oci_builder import BuildRequest, build, plan_image
from oci_builder.spec import MEDIA_TYPE_INDEX


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


# --------------------------------------------------------------------------------------------------------
# Anonymous registry over plain HTTP (loopback)


def test_push_to_a_reference_serves_our_digest_and_bytes(
    tmp_path: Path, registry: Registry, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm, big_layer=3 << 20, seed=1)
    ref = f"{registry.host}/push/explicit:v1"
    result = cli(["push", str(pushable.path), ref])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"pushed {ref}@{pushable.image.manifest.digest}"]
    assert remote_digest(registry, ref) == pushable.image.manifest.digest
    pulled = pull_to_dir(registry, ref, tmp_path / "pulled")
    for digest, data in pushable.layer_bytes.items():
        assert (pulled / _hex(digest)).read_bytes() == data
    assert len(pushable.layer_bytes) == 2


def test_push_with_no_reference_uses_the_names_the_archive_records(
    tmp_path: Path, registry: Registry, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm, repo=f"{registry.host}/recorded", tags=("a", "b"))
    result = cli(["push", str(pushable.path)])
    assert result.returncode == 0, result.stderr
    digest = pushable.image.manifest.digest
    assert result.stdout.splitlines() == [
        f"pushed {registry.host}/recorded/app:a@{digest}",
        f"pushed {registry.host}/recorded/app:b@{digest}",
    ]
    for tag in ("a", "b"):
        assert remote_digest(registry, f"{registry.host}/recorded/app:{tag}") == digest


def test_repo_flag_pushes_under_the_recorded_tags(
    tmp_path: Path, registry: Registry, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm, repo="ghcr.io/elsewhere", tags=("1.0",))
    result = cli(["push", str(pushable.path), "--repo", f"{registry.host}/retargeted"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"pushed {registry.host}/retargeted:1.0@{pushable.image.manifest.digest}"
    ]
    assert remote_digest(registry, f"{registry.host}/retargeted:1.0") == pushable.image.manifest.digest


def test_build_with_push_builds_then_pushes_every_tag(
    tmp_path: Path, registry: Registry, hello_wasm: Path
) -> None:
    shutil.copy(hello_wasm, tmp_path / "app.wasm")
    result = cli(
        [
            "-n",
            "built",
            "-r",
            f"{registry.host}/bp",
            "-t",
            "x",
            "-t",
            "y",
            "-m",
            "app.wasm",
            "-o",
            "out.tar",
            "--push",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    digest_line = next(line for line in result.stdout.splitlines() if line.startswith("digest "))
    digest = digest_line.split()[1]
    pushed = [line for line in result.stdout.splitlines() if line.startswith("pushed ")]
    assert pushed == [
        f"pushed {registry.host}/bp/built:x@{digest}",
        f"pushed {registry.host}/bp/built:y@{digest}",
    ]
    assert (tmp_path / "out.tar").is_file()
    assert remote_digest(registry, f"{registry.host}/bp/built:y") == digest


def test_build_with_push_needs_a_registry_and_writes_nothing_without_one(
    tmp_path: Path, hello_wasm: Path
) -> None:
    shutil.copy(hello_wasm, tmp_path / "app.wasm")
    result = cli(["-n", "app", "-m", "app.wasm", "-o", "out.tar", "--push"], cwd=tmp_path)
    assert result.returncode == 2
    assert "--push" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.tar").exists()


def test_a_second_push_of_the_same_image_starts_no_upload(
    tmp_path: Path, registry: Registry, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm, big_layer=2 << 20, seed=2)
    ref = f"{registry.host}/push/again:v1"
    first = cli(["push", str(pushable.path), ref])
    assert first.returncode == 0, first.stderr
    started = upload_starts(registry, "push/again")
    assert started == 3  # config, wasm layer, random layer
    second = cli(["push", str(pushable.path), ref])
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert upload_starts(registry, "push/again") == started


def test_blobs_pushed_to_one_repository_are_mounted_into_the_next(
    tmp_path: Path, registry: Registry, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm, seed=3)
    first, second = f"{registry.host}/mount/one:v1", f"{registry.host}/mount/two:v1"
    result = cli(["push", str(pushable.path), first, second])
    assert result.returncode == 0, result.stderr
    log = registry.log.read_text()
    blobs = [pushable.image.config.digest, *(layer.digest for layer in pushable.image.layers)]
    for digest in blobs:
        assert f"POST /v2/mount/two/blobs/uploads/?mount={digest.replace(':', '%3A')}&from=mount/one" in log
    assert upload_starts(registry, "mount/two") == len(blobs)  # each a mount, none a plain upload
    assert '"PATCH /v2/mount/two/' not in log and '"PUT /v2/mount/two/blobs/' not in log
    pulled = pull_to_dir(registry, second, tmp_path / "pulled")
    for digest, data in pushable.layer_bytes.items():
        assert (pulled / _hex(digest)).read_bytes() == data


def test_several_images_for_one_reference_become_an_image_index(
    tmp_path: Path, registry: Registry, core_module_wat: object
) -> None:
    assert callable(core_module_wat)
    modules = [core_module_wat(f'(module (func (export "f{i}")))', name=f"m{i}") for i in range(2)]
    plans = [
        plan_image(BuildRequest(name="multi", repo=f"{registry.host}/idx", tags=["v1"], modules=[str(m)]))
        for m in modules
    ]
    result = build(plans, tmp_path / "multi.tar")
    manifests = [image.manifest.digest for image in result.images]
    assert len(set(manifests)) == 2
    pushed = cli(["push", str(tmp_path / "multi.tar")])
    assert pushed.returncode == 0, pushed.stderr
    (line,) = pushed.stdout.splitlines()
    ref = f"{registry.host}/idx/multi:v1"
    raw = raw_manifest(registry, ref)
    assert line == f"pushed {ref}@sha256:{hashlib.sha256(raw).hexdigest()}"
    index = json.loads(raw)
    assert index["mediaType"] == MEDIA_TYPE_INDEX
    assert [m["digest"] for m in index["manifests"]] == manifests
    assert all(m["platform"] == {"architecture": "wasm", "os": "wasip1"} for m in index["manifests"])
    for digest in manifests:
        assert remote_json(registry, f"{registry.host}/idx/multi@{digest}")["schemaVersion"] == 2


def test_archives_written_by_skopeo_push_as_they_are(
    tmp_path: Path, registry: Registry, hello_wasm: Path
) -> None:
    ours = make_archive(tmp_path, hello_wasm, tags=("v1",), seed=4)
    theirs = tmp_path / "skopeo.tar"
    skopeo("copy", f"oci-archive:{ours.path}", f"oci-archive:{theirs}:v7")
    manifest = json.loads(subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{theirs}"], capture_output=True, check=True
    ).stdout)  # fmt: skip
    result = cli(["push", str(theirs), "--repo", f"{registry.host}/from/skopeo"])
    assert result.returncode == 0, result.stderr
    ref = f"{registry.host}/from/skopeo:v7"
    (line,) = result.stdout.splitlines()
    assert line == f"pushed {ref}@{remote_digest(registry, ref)}"
    assert remote_json(registry, ref) == manifest
    pulled = pull_to_dir(registry, ref, tmp_path / "pulled")
    for digest, data in ours.layer_bytes.items():
        assert (pulled / _hex(digest)).read_bytes() == data


def test_archives_written_by_buildah_push_as_they_are(
    tmp_path: Path, registry: Registry, hello_wasm: Path
) -> None:
    storage = [
        "--root",
        str(tmp_path / "root"),
        "--runroot",
        str(tmp_path / "run"),
        "--storage-driver",
        "vfs",
    ]
    buildah = ["buildah", *storage]
    container = run([*buildah, "from", "scratch"]).stdout.strip()
    run([*buildah, "copy", container, str(hello_wasm), "/hello.wasm"])
    run(
        [*buildah, "config", "--entrypoint", '["/hello.wasm"]', "--os", "wasip1", "--arch", "wasm", container]
    )
    run([*buildah, "commit", "-q", container, "localhost/made-by-buildah:v2"])
    archive = tmp_path / "buildah.tar"
    run([*buildah, "push", "localhost/made-by-buildah:v2", f"oci-archive:{archive}:v2"])
    ref = f"{registry.host}/from/buildah:v2"
    result = cli(["push", str(archive), ref])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"pushed {ref}@{remote_digest(registry, ref)}"]
    pulled = pull_to_dir(registry, ref, tmp_path / "pulled")
    layer = json.loads((pulled / "manifest.json").read_text())["layers"][0]["digest"]
    listing = run(["tar", "tf", str(pulled / _hex(layer))]).stdout.split()
    assert "hello.wasm" in [name.lstrip("./") for name in listing]


def test_an_archive_without_names_needs_a_reference(
    tmp_path: Path, registry: Registry, hello_wasm: Path
) -> None:
    ours = make_archive(tmp_path, hello_wasm, seed=5)
    theirs = tmp_path / "unnamed.tar"
    skopeo("copy", f"oci-archive:{ours.path}", f"oci-archive:{theirs}")
    result = cli(["push", str(theirs)])
    assert_clean_failure(result, "unnamed.tar", "give a REF")


def test_a_push_never_falls_back_to_docker_hub_for_a_bare_name(tmp_path: Path, hello_wasm: Path) -> None:
    ours = make_archive(tmp_path, hello_wasm, seed=6)
    theirs = tmp_path / "bare.tar"
    skopeo("copy", f"oci-archive:{ours.path}", f"oci-archive:{theirs}:app:v1")
    assert_clean_failure(cli(["push", str(theirs)]), "give a REF")


# --------------------------------------------------------------------------------------------------------
# TLS + htpasswd


def _auths(registry: Registry, password: str | None = None) -> dict[str, object]:
    secret = f"{registry.user}:{password or registry.password}".encode()
    return {"auths": {registry.host: {"auth": base64.b64encode(secret).decode()}}}


def test_tls_registry_with_config_json_credentials_and_ca_file(
    tmp_path: Path, tls_registry: Registry, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm, big_layer=1 << 20, seed=7)
    ref = f"{tls_registry.host}/secure/conf:v1"
    env = docker_config(tmp_path / "docker", _auths(tls_registry))
    result = cli(["push", "--ca-file", str(tls_registry.ca_file), str(pushable.path), ref], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"pushed {ref}@{pushable.image.manifest.digest}"]
    assert remote_digest(tls_registry, ref) == pushable.image.manifest.digest
    pulled = pull_to_dir(tls_registry, ref, tmp_path / "pulled")
    for digest, data in pushable.layer_bytes.items():
        assert (pulled / _hex(digest)).read_bytes() == data


def test_tls_registry_trusted_through_ssl_cert_file_with_password_stdin(
    tmp_path: Path, tls_registry: Registry, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm, seed=8)
    ref = f"{tls_registry.host}/secure/stdin:v1"
    assert tls_registry.user is not None and tls_registry.password is not None
    result = cli(
        ["push", "--username", tls_registry.user, "--password-stdin", str(pushable.path), ref],
        env={"SSL_CERT_FILE": str(tls_registry.ca_file)},
        stdin=tls_registry.password + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert remote_digest(tls_registry, ref) == pushable.image.manifest.digest
    assert tls_registry.password not in result.stdout + result.stderr


def test_credentials_from_a_credential_helper(
    tmp_path: Path, tls_registry: Registry, hello_wasm: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-ocitest"
    answer = json.dumps(
        {"ServerURL": tls_registry.host, "Username": tls_registry.user, "Secret": tls_registry.password}
    )
    helper.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = get ] && [ "$(cat)" = "{tls_registry.host}" ] && echo \'{answer}\' && exit 0\n'
        "echo 'credentials not found in native keychain'; exit 1\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    env = docker_config(tmp_path / "docker", {"credHelpers": {tls_registry.host: "ocitest"}})
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    env["SSL_CERT_FILE"] = str(tls_registry.ca_file)
    pushable = make_archive(tmp_path, hello_wasm, seed=9)
    ref = f"{tls_registry.host}/secure/helper:v1"
    result = cli(["push", str(pushable.path), ref], env=env)
    assert result.returncode == 0, result.stderr
    assert remote_digest(tls_registry, ref) == pushable.image.manifest.digest


def test_a_wrong_password_fails_cleanly_and_pushes_nothing(
    tmp_path: Path, tls_registry: Registry, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm, seed=10)
    ref = f"{tls_registry.host}/secure/wrong:v1"
    env = docker_config(tmp_path / "docker", _auths(tls_registry, "not-the-password"))
    result = cli(["push", "--ca-file", str(tls_registry.ca_file), str(pushable.path), ref], env=env)
    assert_clean_failure(result, tls_registry.host, "authentication failed", "tester")
    assert "not-the-password" not in result.stderr
    status, _, _ = tls_registry.request("/v2/secure/wrong/manifests/v1", method="HEAD")
    assert status == 404


def test_no_credentials_for_a_registry_that_needs_them(
    tmp_path: Path, tls_registry: Registry, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm, seed=11)
    result = cli(
        [
            "push",
            "--ca-file",
            str(tls_registry.ca_file),
            str(pushable.path),
            f"{tls_registry.host}/secure/anon:v1",
        ]
    )
    assert_clean_failure(result, "no credentials found")


def test_an_untrusted_certificate_is_refused(
    tmp_path: Path, tls_registry: Registry, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm, seed=12)
    env = docker_config(tmp_path / "docker", _auths(tls_registry))
    result = cli(["push", str(pushable.path), f"{tls_registry.host}/secure/untrusted:v1"], env=env)
    assert_clean_failure(result, "certificate", "--ca-file")


def test_username_needs_password_stdin(tmp_path: Path, hello_wasm: Path) -> None:
    pushable = make_archive(tmp_path, hello_wasm, seed=13)
    result = cli(["push", "--username", "me", str(pushable.path), "127.0.0.1:1/x:v1"])
    assert result.returncode == 2
    assert "--password-stdin" in result.stderr and "Traceback" not in result.stderr
