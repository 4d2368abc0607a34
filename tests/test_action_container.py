"""The Action as the runner runs it (REFERENCE.md section 2): the Dockerfile built unchanged with buildah,
then its ENTRYPOINT run with the runner's workdir, mounts, INPUT_* variables and file-command files.

Docker Hub is out of reach here, so the base image is a stand-in with the same shape, made from Debian
packages with debootstrap (REFERENCE.md section 3) and kept in buildah storage under tests/.cache/, keyed by
its package list, so only the first run pays for it. The image built from the Dockerfile is per session.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from configparser import ConfigParser
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from layout import load
from realtools import CACHE_DIR, REPO_ROOT, Registry, ToolError, require_tool, run
from test_entrypoint import action_inputs, input_variable, parse_file_command, registry_manifest

pytestmark = pytest.mark.slow

STANDIN_SUITE = "bookworm"
STANDIN_MIRROR = "http://deb.debian.org/debian"
STANDIN_PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates")
STANDIN_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
BUILDAH_CACHE = CACHE_DIR / "buildah"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
ACTION_IMAGE = "localhost/oci-tar-builder-test/action"
STALE_AFTER = 6 * 3600
"""No session runs this long: an action image older than this was left by one that was killed."""
WORKSPACE_UID = 1001
WORKSPACE = "/github/workspace"
ARTIFACT_CONFIG = "application/vnd.wasm.config.v0+json"


class Buildah:
    """buildah on a private storage root (vfs, so it works in any container), never pulling."""

    def __init__(self, root: Path) -> None:
        self.command = [
            require_tool("buildah"),
            "--root", str(root / "storage"),
            "--runroot", str(root / "run"),
            "--storage-driver", "vfs",
        ]  # fmt: skip

    def __call__(self, *args: str, timeout: float = 300) -> str:
        return run([*self.command, *args], timeout=timeout).stdout.strip()

    def has_image(self, name: str) -> bool:
        inspect = [*self.command, "inspect", "--type", "image", name]
        return subprocess.run(inspect, capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="session")
def buildah() -> Buildah:
    BUILDAH_CACHE.mkdir(parents=True, exist_ok=True)
    return Buildah(BUILDAH_CACHE)


def make_standin_base(buildah: Buildah, scratch: Path) -> str:
    """A Debian bookworm image with python3 and pip, standing in for python:3.11-slim-bookworm."""
    key = hashlib.sha256(json.dumps([STANDIN_SUITE, STANDIN_MIRROR, STANDIN_PACKAGES]).encode()).hexdigest()
    name = f"localhost/oci-tar-builder-test/python-standin:{key[:16]}"
    with open(BUILDAH_CACHE / "standin.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be making the same image
        if buildah.has_image(name):
            return name
        rootfs = scratch / "rootfs"
        run(
            [
                require_tool("debootstrap"), "--variant=minbase", f"--include={','.join(STANDIN_PACKAGES)}",
                STANDIN_SUITE, str(rootfs), STANDIN_MIRROR,
            ],
            timeout=900,
        )  # fmt: skip
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / cache)
        container = buildah("from", "scratch")
        try:
            mountpoint = buildah("mount", container)
            run(["cp", "-a", f"{rootfs}/.", mountpoint])
            buildah("umount", container)
            env = [arg for variable in STANDIN_ENV for arg in ("--env", variable)]
            buildah("config", *env, "--cmd", "python3", container)
            buildah("commit", "--quiet", container, name)
        finally:
            buildah("rm", container)
            shutil.rmtree(rootfs)
    return name


def pip_settings_mounts(scratch: Path) -> list[str]:
    """`bud -v` arguments that give pip inside the build the settings pip has on this machine (its config
    files and PIP_* variables, merged as `pip config list` shows them), the CA bundle, and the files and
    directories those settings name (a constraints file, wheel directories). Local file:// indexes are
    left out: their pages link to files anywhere on this disk, and the network index serves the build."""
    files: dict[tuple[str, str], str] = {}
    variables: dict[tuple[str, str], str] = {}
    for line in run([sys.executable, "-m", "pip", "config", "list"]).stdout.splitlines():
        key, _, quoted = line.partition("=")
        section, _, option = key.rpartition(".")
        value: str = ast.literal_eval(quoted)
        if option in ("index-url", "extra-index-url"):
            value = " ".join(url for url in value.split() if not url.startswith("file:"))
        if section == ":env:":
            variables["global", option] = value
        else:
            files[section, option] = value
    config = ConfigParser()
    for (section, option), value in {**files, **variables}.items():  # variables win, as in pip
        if value:
            if not config.has_section(section):
                config.add_section(section)
            config.set(section, option, value)
    merged = scratch / "pip.conf"
    with open(merged, "w") as f:
        config.write(f)
    named = {
        Path(word)
        for section in config.sections()
        for _, value in config.items(section)
        for word in value.split()
        if word.startswith("/") and Path(word).exists()
    }
    mounts = [f"{merged}:/etc/pip.conf:ro", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    mounts += [f"{path}:{path}:ro" for path in sorted(named - {CA_BUNDLE})]
    return [arg for mount in mounts for arg in ("-v", mount)]


def remove_stale_action_images(buildah: Buildah) -> None:
    """Each takes hundreds of MB under vfs; `rmi --force` also removes the container made from it."""
    for image in json.loads(buildah("images", "--json") or "[]"):
        if time.time() - image["created"] > STALE_AFTER:
            for name in image.get("names") or []:
                if name.startswith(f"{ACTION_IMAGE}:"):
                    buildah("rmi", "--force", name)


@pytest.fixture(scope="session")
def action_image(buildah: Buildah, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Dockerfile, unchanged, built from the stand-in base; removed at the end of the session."""
    scratch = tmp_path_factory.mktemp("action-image")
    try:
        base = make_standin_base(buildah, scratch)
    except ToolError as exc:
        pytest.fail(f"cannot make the stand-in base image: {exc}", pytrace=False)
    remove_stale_action_images(buildah)
    name = f"{ACTION_IMAGE}:{uuid.uuid4().hex[:12]}"
    try:
        buildah(
            "bud", "--isolation", "chroot", "--pull=never", "--build-arg", f"BASE_IMAGE={base}",
            *pip_settings_mounts(scratch), "-f", str(REPO_ROOT / "Dockerfile"), "-t", name, str(REPO_ROOT),
            timeout=900,
        )  # fmt: skip
    except ToolError as exc:
        pytest.fail(f"the Dockerfile does not build: {exc}", pytrace=False)
    try:
        yield name
    finally:
        buildah("rmi", name)


@pytest.fixture(scope="session")
def image_config(buildah: Buildah, action_image: str) -> dict[str, Any]:
    inspected = json.loads(buildah("inspect", "--type", "image", action_image))
    config: dict[str, Any] = inspected["OCIv1"]["config"]
    return config


@dataclass
class ContainerRun:
    status: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str


class Runner:
    """The runner's side of a docker action: the directories it mounts and the variables it passes."""

    def __init__(self, buildah: Buildah, container: str, entrypoint: list[str], root: Path) -> None:
        self.buildah = buildah
        self.container = container
        self.entrypoint = entrypoint
        self.workspace = root / "workspace"
        self.file_commands = root / "_runner_file_commands"
        self.home = root / "_github_home"
        self.workflow = root / "_github_workflow"
        for directory in (self.workspace, self.file_commands, self.home, self.workflow):
            directory.mkdir()
        os.chown(self.workspace, WORKSPACE_UID, WORKSPACE_UID)
        self.output_name = f"set_output_{uuid.uuid4()}"
        self.summary_name = f"step_summary_{uuid.uuid4()}"

    def context(self) -> dict[str, str]:
        return {
            "HOME": "/github/home",
            "GITHUB_WORKSPACE": WORKSPACE,
            "GITHUB_OUTPUT": f"/github/file_commands/{self.output_name}",
            "GITHUB_STEP_SUMMARY": f"/github/file_commands/{self.summary_name}",
            "GITHUB_REPOSITORY": "octo-org/hello",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
            "GITHUB_ACTIONS": "true",
            "CI": "true",
        }

    def run(self, inputs: dict[str, str], *, as_runner: bool = True) -> ContainerRun:
        """`as_runner`: every declared input (given, else its default) and the GitHub context, as the
        runner passes them; otherwise only `inputs`, as in a local `docker run -e INPUT_...`."""
        output_file = self.file_commands / self.output_name
        summary_file = self.file_commands / self.summary_name
        output_file.write_text("")
        summary_file.write_text("")
        env: dict[str, str] = {}
        if as_runner:
            env.update(self.context())
            for name, spec in action_inputs().items():
                env[input_variable(name)] = inputs.get(name, str(spec.get("default", "")))
        else:
            env.update({input_variable(name): value for name, value in inputs.items()})
        proc = subprocess.run(
            [
                *self.buildah.command, "run", "--isolation", "chroot", "--workingdir", WORKSPACE,
                "-v", f"{self.workspace}:{WORKSPACE}",
                "-v", f"{self.home}:/github/home",
                "-v", f"{self.workflow}:/github/workflow",
                "-v", f"{self.file_commands}:/github/file_commands",
                *(arg for key, value in env.items() for arg in ("-e", f"{key}={value}")),
                self.container, "--", *self.entrypoint,
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        return ContainerRun(
            proc.returncode,
            proc.stdout,
            proc.stderr,
            parse_file_command(output_file.read_text()),
            summary_file.read_text(),
        )


@pytest.fixture(scope="session")
def action_container(buildah: Buildah, action_image: str) -> Iterator[str]:
    """One container for every run: with vfs each new one is a full copy of the image (~10 s here), and
    the entrypoint writes only to the mounted directories, which each test makes afresh."""
    container = buildah("from", "--pull=never", "--quiet", action_image)
    try:
        yield container
    finally:
        buildah("rm", container)


@pytest.fixture
def runner(
    buildah: Buildah, action_container: str, image_config: dict[str, Any], tmp_path: Path, hello_wasm: Path
) -> Runner:
    job = Runner(buildah, action_container, image_config["Entrypoint"], tmp_path)
    shutil.copy(hello_wasm, job.workspace / "hello.wasm")
    os.chown(job.workspace / "hello.wasm", WORKSPACE_UID, WORKSPACE_UID)
    return job


def test_image_follows_the_runner_rules(image_config: dict[str, Any]) -> None:
    entrypoint = image_config["Entrypoint"]
    assert entrypoint and all(part.startswith("/") for part in entrypoint), entrypoint
    assert not image_config.get("User"), "the runner expects root: no USER"
    assert image_config.get("WorkingDir", "") != WORKSPACE, "the runner mounts the workspace itself"


def test_action_builds_as_the_runner_runs_it(runner: Runner) -> None:
    result = runner.run(
        {
            "name": "hello",
            "repo": "ghcr.io/octo-org",
            "tag": "v1",
            "tags": "edge",
            "module": "hello.wasm",
            "output": "dist/images/",
            "labels": "team=runtime",
            "annotations": "x.y=z",
            "created": "2024-01-02T03:04:05Z",
        }
    )
    assert result.status == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr

    path = result.outputs["path"]
    assert path == "dist/images/hello.tar"
    archive = runner.workspace / path
    assert archive.is_file()
    for owned in (archive, runner.workspace / "dist", runner.workspace / "dist/images"):
        info = owned.stat()
        assert (info.st_uid, info.st_gid) == (WORKSPACE_UID, WORKSPACE_UID), owned

    layout = load(archive)
    assert {entry["digest"] for entry in layout.index["manifests"]} == {result.outputs["digest"]}
    assert result.outputs["image"] == "ghcr.io/octo-org/hello:v1"
    manifest = layout.manifest()
    assert result.outputs["config-digest"] == manifest["config"]["digest"]
    assert manifest["annotations"]["x.y"] == "z"
    assert manifest["annotations"]["org.opencontainers.image.created"] == "2024-01-02T03:04:05Z"
    assert manifest["annotations"]["org.opencontainers.image.source"] == "https://github.com/octo-org/hello"
    assert layout.config()["config"]["Labels"]["team"] == "runtime"
    assert f"`{result.outputs['digest']}`" in result.summary
    assert "::group::" in result.stdout and "::endgroup::" in result.stdout


def test_as_artifact_true_yields_the_artifact(runner: Runner) -> None:
    result = runner.run({"name": "hello", "module": "hello.wasm", "as-artifact": "true"})
    assert result.status == 0, result.stdout + result.stderr
    manifest = load(runner.workspace / result.outputs["path"]).manifest()
    assert manifest["config"]["mediaType"] == ARTIFACT_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/wasm"]


def test_missing_module_fails_with_an_error_line(runner: Runner) -> None:
    result = runner.run({"name": "hello", "module": "missing.wasm"})
    assert result.status == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("::error")]
    assert errors == ["::error file=missing.wasm::module missing.wasm: no such file"]
    assert "Traceback" not in result.stdout + result.stderr
    assert result.outputs == {}
    assert sorted(p.name for p in runner.workspace.iterdir()) == ["hello.wasm"]


def test_push_from_the_container(runner: Runner, registry: Registry) -> None:
    """The image holds all that pushing needs (the registry client is standard library only)."""
    result = runner.run({"name": "hello", "repo": registry.host, "module": "hello.wasm", "push": "true"})
    assert result.status == 0, result.stdout + result.stderr
    digest = result.outputs["digest"]
    assert json.loads(result.outputs["metadata"])["pushed"] == [f"{registry.host}/hello:latest@{digest}"]
    assert "sha256:" + hashlib.sha256(registry_manifest(registry, "hello", "latest")).hexdigest() == digest


def test_local_docker_run_with_two_inputs_behaves_as_the_runner(runner: Runner) -> None:
    """README's local `docker run -v "$PWD:/github/workspace" -w /github/workspace -e INPUT_NAME=...
    -e INPUT_MODULE=...`: no GitHub context, no other inputs, no GITHUB_OUTPUT (outputs go to the log)."""
    result = runner.run({"name": "hello", "module": "hello.wasm"}, as_runner=False)
    assert result.status == 0, result.stdout + result.stderr
    archive = runner.workspace / "oci" / "hello.tar"
    assert archive.stat().st_uid == WORKSPACE_UID
    digest = load(archive).index["manifests"][0]["digest"]
    assert f"::set-output name=digest::{digest}" in result.stdout.splitlines()
