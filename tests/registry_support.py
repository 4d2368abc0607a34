"""Helpers for the push tests: archives to push, the command as users run it, and skopeo's reading back.

skopeo is the independent reader: it fetches what we pushed with its own client, so a digest or a byte it
agrees with is one the registry really serves.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realtools import Registry, skopeo
from verifyhelp import assert_verifies

from oci_builder import BuildRequest, Format, build, plan_image
from oci_builder.builder import BuiltImage


@dataclass(frozen=True)
class Pushable:
    """An archive we built, the image in it, and the bytes of each layer as they went in."""

    path: Path
    image: BuiltImage
    layer_bytes: dict[str, bytes]


def make_archive(
    tmp_path: Path,
    wasm: Path,
    *,
    repo: str | None = None,
    name: str = "app",
    tags: Sequence[str] = ("v1",),
    big_layer: int = 0,
    seed: int = 0,
    fmt: Format = Format.IMAGE,
) -> Pushable:
    """One image: the wasm module as layer, plus a random layer of `big_layer` bytes when asked."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    layers: list[str] = []
    files = {wasm.name: wasm.read_bytes()}
    if big_layer:
        data = random.Random(seed).randbytes(big_layer)
        (tmp_path / "big.bin").write_bytes(data)
        layers.append(f"application/octet-stream={tmp_path / 'big.bin'}")
        files["big.bin"] = data
    plan = plan_image(
        BuildRequest(name=name, repo=repo, tags=tags, modules=[str(wasm)], layers=layers, format=fmt)
    )
    path = tmp_path / f"{name}-{seed}.tar"
    result = build([plan], path)
    assert_verifies(path)
    (image,) = result.images
    by_digest = {_sha256(data): data for data in files.values()}
    return Pushable(path, image, {layer.digest: by_digest[layer.digest] for layer in image.layers})


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cli(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """`oci-tar-builder ARGS` in a subprocess, with a private DOCKER_CONFIG unless `env` gives one."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SOURCE_DATE_EPOCH")}
    full_env.setdefault("DOCKER_CONFIG", "/nonexistent-docker-config")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "oci_builder", *args],
        input=stdin,
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 1, one `error:` line naming the problem, no traceback, nothing on stdout."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("oci-tar-builder: error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert "pushed " not in result.stdout


def raw_manifest(registry: Registry, reference: str) -> bytes:
    """What the registry serves for REFERENCE, fetched by skopeo."""
    # `inspect` takes copy's --src-* flags without the prefix.
    flags = [a.replace("--src-", "--") for a in registry.skopeo_tls_args("src")]
    proc = subprocess.run(
        ["skopeo", "inspect", "--raw", *flags, f"docker://{reference}"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def remote_digest(registry: Registry, reference: str) -> str:
    return _sha256(raw_manifest(registry, reference))


def remote_json(registry: Registry, reference: str) -> Any:
    return json.loads(raw_manifest(registry, reference))


def pull_to_dir(registry: Registry, reference: str, dest: Path) -> Path:
    """skopeo copy docker://REFERENCE dir:DEST: every blob as a file named by its hex digest."""
    skopeo("copy", *registry.skopeo_tls_args("src"), f"docker://{reference}", f"dir:{dest}")
    return dest


def upload_starts(registry: Registry, repository: str) -> int:
    """Upload sessions opened in REPOSITORY, counted in the registry's access log."""
    needle = f'"POST /v2/{repository}/blobs/uploads/'
    return sum(1 for line in registry.log.read_text(errors="replace").splitlines() if needle in line)


def docker_config(directory: Path, config: Mapping[str, Any]) -> dict[str, str]:
    """Write DIRECTORY/config.json and return the environment that points docker clients at it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(directory)}
