"""entrypoint.py run in-process as the runner would run it: INPUT_* variables in, GITHUB_OUTPUT and the job
summary out, errors as `::error::` lines. The container around it is tested in test_action_container.py.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from layout import Layout, load
from realtools import Registry

REPO_ROOT = Path(__file__).resolve().parent.parent
ACTION_YML = REPO_ROOT / "action.yml"
README = REPO_ROOT / "README.md"
RUNWASI_LAYER = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"
WASM_CONFIG = "application/vnd.wasm.config.v0+json"
# Workspaces are owned by someone else than the (root) process, as on a runner; without root we cannot chown.
WORKSPACE_UID = 4242 if os.geteuid() == 0 else os.geteuid()
RUNNER_TOKEN = "ghs_token-the-runner-evaluated-for-this-test"


def action_inputs() -> dict[str, dict[str, Any]]:
    """The inputs action.yml declares, read independently of entrypoint.py."""
    inputs: dict[str, dict[str, Any]] = yaml.safe_load(ACTION_YML.read_text())["inputs"]
    return inputs


def input_variable(name: str) -> str:
    """The runner's rule (REFERENCE.md section 2): upper case, spaces to '_', hyphens kept."""
    return "INPUT_" + name.replace(" ", "_").upper()


def parse_file_command(text: str) -> dict[str, str]:
    """Read a GITHUB_OUTPUT-style file: `name<<DELIMITER`, value lines, `DELIMITER`."""
    values: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        name, sep, delimiter = line.partition("<<")
        assert sep, f"not a heredoc entry: {line!r}"
        value: list[str] = []
        for value_line in lines:
            if value_line == delimiter:
                break
            value.append(value_line)
        else:
            raise AssertionError(f"no closing {delimiter!r} for {name}")
        values[name] = "\n".join(value)
    return values


def load_entrypoint() -> ModuleType:
    spec = importlib.util.spec_from_file_location("entrypoint", REPO_ROOT / "entrypoint.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it is being executed
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def entrypoint() -> ModuleType:
    return load_entrypoint()


@dataclass
class ActionRun:
    status: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith("::error")]


class Runner:
    """A fake runner: a workspace, the file-command files, and the GitHub context as environment."""

    def __init__(
        self,
        entrypoint: ModuleType,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        self.entrypoint = entrypoint
        self.monkeypatch = monkeypatch
        self.capsys = capsys
        self.workspace = tmp_path / "workspace"
        self.workspace.mkdir()
        os.chown(self.workspace, WORKSPACE_UID, WORKSPACE_UID)
        commands = tmp_path / "file_commands"
        commands.mkdir()
        self.output_file = commands / "set_output_1"
        self.summary_file = commands / "step_summary_1"
        for variable in list(os.environ):
            if variable.startswith(("INPUT_", "GITHUB_", "RUNNER_")) or variable == "SOURCE_DATE_EPOCH":
                monkeypatch.delenv(variable)
        self.context = {
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_OUTPUT": str(self.output_file),
            "GITHUB_STEP_SUMMARY": str(self.summary_file),
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": "octo-org/hello",
            "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
            "GITHUB_ACTIONS": "true",
        }

    def run(
        self, inputs: dict[str, str], *, defaults: bool = True, env: dict[str, str] | None = None
    ) -> ActionRun:
        """Run main() with INPUT_* set as the runner sets them: each declared input, given or default."""
        self.output_file.write_text("")
        self.summary_file.write_text("")
        declared = action_inputs()
        unknown = set(inputs) - set(declared)
        assert not unknown, f"inputs not in action.yml: {unknown}"
        variables = {**self.context, **(env or {})}
        for name, spec in declared.items():
            if name in inputs:
                variables[input_variable(name)] = inputs[name]
            elif defaults:
                default = str(spec.get("default", ""))
                # The runner evaluates expression defaults; this one stands for `${{ github.token }}`.
                variables[input_variable(name)] = RUNNER_TOKEN if "${{" in default else default
        before = set(os.environ)
        for key, value in variables.items():
            self.monkeypatch.setenv(key, value)
        self.capsys.readouterr()
        try:
            status = self.entrypoint.main()
        finally:
            for key in set(os.environ) - before:  # ours, and the defaults main() filled in
                del os.environ[key]
        out, err = self.capsys.readouterr()
        outputs = parse_file_command(self.output_file.read_text()) if self.output_file.exists() else {}
        summary = self.summary_file.read_text() if self.summary_file.exists() else ""
        return ActionRun(status, out, err, outputs, summary)


@pytest.fixture
def runner(
    entrypoint: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    hello_wasm: Path,
) -> Runner:
    fake = Runner(entrypoint, tmp_path, monkeypatch, capsys)
    shutil.copy(hello_wasm, fake.workspace / "hello.wasm")
    # A cwd other than the workspace proves relative paths are taken from GITHUB_WORKSPACE.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return fake


def archive_of(runner: Runner, result: ActionRun) -> Layout:
    assert result.status == 0, result.stdout + result.stderr
    path = result.outputs["path"]
    assert not Path(path).is_absolute() and ".." not in Path(path).parts, path
    return load(runner.workspace / path)


# ---------------------------------------------------------------------------------------------------------
# Outputs, summary, log


def test_outputs_describe_the_archive_written(runner: Runner) -> None:
    result = runner.run(
        {"name": "hello", "repo": "ghcr.io/octo-org", "tag": "v1", "module": "hello.wasm", "tags": "edge"}
    )
    layout = archive_of(runner, result)
    outputs = result.outputs
    assert set(outputs) == {"digest", "path", "image", "config-digest", "size", "pushed", "metadata"}
    manifest_digests = {entry["digest"] for entry in layout.index["manifests"]}
    assert manifest_digests == {outputs["digest"]}
    assert outputs["path"] == "oci/hello.tar"
    assert outputs["image"] == "ghcr.io/octo-org/hello:v1"
    manifest = layout.manifest()
    assert outputs["config-digest"] == manifest["config"]["digest"]
    assert int(outputs["size"]) == (runner.workspace / outputs["path"]).stat().st_size

    metadata = json.loads(outputs["metadata"])
    assert metadata["digest"] == outputs["digest"]
    assert metadata["path"] == outputs["path"]
    assert metadata["references"] == ["ghcr.io/octo-org/hello:v1", "ghcr.io/octo-org/hello:edge"]
    assert metadata["layers"] == manifest["layers"]
    assert metadata["config"] == manifest["config"]
    assert metadata["annotations"] == manifest["annotations"]
    assert metadata["manifest"]["platform"] == {"architecture": "wasm", "os": "wasip1"}


def test_job_summary_lists_image_digest_platform_config_and_layers(runner: Runner) -> None:
    result = runner.run({"name": "hello", "module": "hello.wasm,hello.wasm"})
    manifest = archive_of(runner, result).manifest()
    summary = result.summary
    assert "`hello:latest`" in summary
    assert f"`{result.outputs['digest']}`" in summary
    assert "`wasip1/wasm`" in summary
    rows = [line for line in summary.splitlines() if line.startswith("| ")]
    config_rows = [row for row in rows if manifest["config"]["digest"] in row]
    assert len(config_rows) == 1 and manifest["config"]["mediaType"] in config_rows[0]
    layer_rows = [row for row in rows if row.startswith("| layer ")]
    assert len(layer_rows) == len(manifest["layers"]) == 2
    for row, layer in zip(layer_rows, manifest["layers"], strict=True):
        assert layer["digest"] in row and layer["mediaType"] in row and f"{layer['size']} B" in row


def test_log_is_grouped_and_ends_with_the_result(runner: Runner) -> None:
    result = runner.run({"name": "hello", "module": "hello.wasm"})
    lines = result.stdout.splitlines()
    assert lines.count("::group::Build hello:latest") == 1
    assert lines.count("::endgroup::") == 1
    assert lines.index("::group::Build hello:latest") < lines.index("::endgroup::")
    assert result.outputs["digest"] in lines[-1] and "oci/hello.tar" in lines[-1]


# ---------------------------------------------------------------------------------------------------------
# Inputs


def test_omitted_inputs_take_their_defaults_from_action_yml(runner: Runner) -> None:
    """A local `docker run -e INPUT_NAME -e INPUT_MODULE` must build what the runner would."""
    epoch = {"SOURCE_DATE_EPOCH": "1700000000"}
    given = runner.run({"name": "hello", "module": "hello.wasm"}, env=epoch)
    bare = runner.run({"name": "hello", "module": "hello.wasm"}, defaults=False, env=epoch)
    assert bare.status == 0, bare.stdout
    assert bare.outputs == given.outputs
    assert bare.outputs["path"] == "oci/hello.tar"
    assert archive_of(runner, bare).manifest()["layers"][0]["mediaType"] == RUNWASI_LAYER


def test_hyphenated_input_as_artifact_is_read(runner: Runner) -> None:
    result = runner.run({"name": "hello", "module": "hello.wasm", "as-artifact": "true"})
    manifest = archive_of(runner, result).manifest()
    assert manifest["config"]["mediaType"] == WASM_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/wasm"]


def test_format_input_writes_the_envoy_variants(runner: Runner) -> None:
    for fmt, layer_types in (
        (
            "envoy",
            [
                "application/vnd.module.wasm.config.v1+json",
                "application/vnd.module.wasm.content.layer.v1+wasm",
            ],
        ),
        ("envoy-compat", ["application/vnd.oci.image.layer.v1.tar+gzip"]),
    ):
        result = runner.run({"name": "plugin", "module": "hello.wasm", "format": fmt, "output": f"{fmt}.tar"})
        assert result.status == 0, result.stdout
        manifest = load(runner.workspace / result.outputs["path"]).manifest()
        assert [layer["mediaType"] for layer in manifest["layers"]] == layer_types


def test_rootfs_input_writes_a_tar_layer(runner: Runner) -> None:
    result = runner.run({"name": "hello", "module": "hello.wasm", "rootfs": "True"})
    layout = archive_of(runner, result)
    assert layout.config()["config"]["Entrypoint"] == ["/hello.wasm"]


def test_modules_split_on_newlines_and_commas_in_order(runner: Runner, core_module_wat: Any) -> None:
    other = core_module_wat("(module)", name="empty")
    shutil.copy(other, runner.workspace / "empty.wasm")
    result = runner.run({"name": "multi", "module": "hello.wasm, empty.wasm\n\nhello.wasm ,empty.wasm\n"})
    layers = archive_of(runner, result).manifest()["layers"]
    sizes = [layer["size"] for layer in layers]
    hello, empty = (runner.workspace / "hello.wasm").stat().st_size, other.stat().st_size
    assert sizes == [hello, empty, hello, empty]


def test_components_layers_labels_and_annotations(runner: Runner, core_module_wat: Any) -> None:
    components = runner.workspace / "wasm"
    components.mkdir()
    shutil.copy(core_module_wat("(module)", name="a"), components / "a.wasm")
    (runner.workspace / "notes.txt").write_text("extra layer\n")
    result = runner.run(
        {
            "name": "app",
            "components": "wasm",
            "layers": "text/plain=notes.txt",
            "labels": "team=runtime\nstage=test",
            "annotations": "org.opencontainers.image.source=https://example.com/src\nx.y=z",
        }
    )
    layout = archive_of(runner, result)
    manifest = layout.manifest()
    assert [layer["mediaType"] for layer in manifest["layers"]] == [RUNWASI_LAYER, "text/plain"]
    labels = layout.config()["config"]["Labels"]
    assert labels["team"] == "runtime" and labels["stage"] == "test"
    annotations = manifest["annotations"]
    assert annotations["org.opencontainers.image.source"] == "https://example.com/src"
    assert annotations["x.y"] == "z"
    assert annotations["org.opencontainers.image.revision"] == runner.context["GITHUB_SHA"]


def test_context_annotations_default_to_the_workflow_and_the_build_time(runner: Runner) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    result = runner.run({"name": "hello", "module": "hello.wasm", "as-artifact": "true"})
    layout = archive_of(runner, result)
    annotations = layout.manifest()["annotations"]
    assert annotations["org.opencontainers.image.source"] == "https://github.com/octo-org/hello"
    assert annotations["org.opencontainers.image.revision"] == runner.context["GITHUB_SHA"]
    created = annotations["org.opencontainers.image.created"]
    assert datetime.fromisoformat(created) >= before
    # The artifact config's own time is the same moment, not a second clock reading.
    assert layout.config()["created"] == created


@pytest.mark.parametrize(
    ("inputs", "env", "expected"),
    [
        ({"created": "2024-01-02T03:04:05Z"}, {"SOURCE_DATE_EPOCH": "1700000000"}, "2024-01-02T03:04:05Z"),
        ({"created": "1700000000"}, {}, "2023-11-14T22:13:20Z"),
        ({}, {"SOURCE_DATE_EPOCH": "1700000000"}, "2023-11-14T22:13:20Z"),
    ],
)
def test_created_from_input_else_source_date_epoch(
    runner: Runner, inputs: dict[str, str], env: dict[str, str], expected: str
) -> None:
    result = runner.run({"name": "hello", "module": "hello.wasm", **inputs}, env=env)
    layout = archive_of(runner, result)
    assert layout.manifest()["annotations"]["org.opencontainers.image.created"] == expected
    assert layout.config()["created"] == expected
    again = runner.run({"name": "hello", "module": "hello.wasm", **inputs}, env=env)
    assert again.outputs["digest"] == result.outputs["digest"]


# ---------------------------------------------------------------------------------------------------------
# Paths and ownership


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("oci/", "oci/hello.tar"),
        ("dist/deep/", "dist/deep/hello.tar"),
        ("dist/img.tar", "dist/img.tar"),
        ("./a/../b/img.tar", "b/img.tar"),
        (".", "hello.tar"),
    ],
)
def test_output_is_relative_to_the_workspace(runner: Runner, output: str, expected: str) -> None:
    result = runner.run({"name": "hello", "module": "hello.wasm", "output": output})
    assert result.status == 0, result.stdout
    assert result.outputs["path"] == expected
    assert (runner.workspace / expected).is_file()


def test_archive_and_created_directories_belong_to_the_workspace_owner(runner: Runner) -> None:
    (runner.workspace / "dist").mkdir()  # exists already: left as it is
    result = runner.run({"name": "hello", "module": "hello.wasm", "output": "dist/a/b/img.tar"})
    assert result.status == 0, result.stdout
    for made in ("dist/a", "dist/a/b", "dist/a/b/img.tar"):
        info = (runner.workspace / made).stat()
        assert (info.st_uid, info.st_gid) == (WORKSPACE_UID, WORKSPACE_UID), made
    assert (runner.workspace / "dist").stat().st_uid == os.geteuid()


def test_output_outside_the_workspace_is_warned_about(runner: Runner, tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "img.tar"
    result = runner.run({"name": "hello", "module": "hello.wasm", "output": str(outside)})
    assert result.status == 0, result.stdout
    assert result.outputs["path"] == str(outside)
    assert outside.is_file()
    assert any(
        line.startswith("::warning::") and "outside the workspace" in line
        for line in result.stdout.splitlines()
    )


# ---------------------------------------------------------------------------------------------------------
# Push


def registry_manifest(registry: Registry, repository: str, tag: str) -> bytes:
    request = urllib.request.Request(
        f"{registry.url}/v2/{repository}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    context = ssl.create_default_context(cafile=str(registry.ca_file)) if registry.ca_file else None
    if registry.user and registry.password:
        token = base64.b64encode(f"{registry.user}:{registry.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        body: bytes = response.read()
        return body


def test_push_sends_every_tag_to_the_registry(runner: Runner, registry: Registry) -> None:
    result = runner.run(
        {
            "name": "hello",
            "repo": registry.host,
            "tag": "v1",
            "tags": "edge",
            "module": "hello.wasm",
            "push": "true",
        }
    )
    assert result.status == 0, result.stdout
    digest = result.outputs["digest"]
    for tag in ("v1", "edge"):
        manifest = registry_manifest(registry, "hello", tag)
        assert "sha256:" + hashlib.sha256(manifest).hexdigest() == digest
    pushed = json.loads(result.outputs["metadata"])["pushed"]
    assert pushed == [f"{registry.host}/hello:v1@{digest}", f"{registry.host}/hello:edge@{digest}"]
    assert "::group::Push " in result.stdout
    assert f"`{registry.host}/hello:edge@{digest}`" in result.summary


def test_push_with_username_and_password_and_a_wrong_one(runner: Runner, tls_registry: Registry) -> None:
    assert tls_registry.user and tls_registry.password and tls_registry.ca_file
    inputs = {"name": "hello", "repo": tls_registry.host, "module": "hello.wasm", "push": "true"}
    trust = {"SSL_CERT_FILE": str(tls_registry.ca_file)}
    good = runner.run({**inputs, "username": tls_registry.user, "password": tls_registry.password}, env=trust)
    assert good.status == 0, good.stdout
    manifest = registry_manifest(tls_registry, "hello", "latest")
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == good.outputs["digest"]

    wrong = "not-the-password-4321"
    bad = runner.run({**inputs, "username": tls_registry.user, "password": wrong}, env=trust)
    assert bad.status == 1
    assert len(bad.errors) == 1, bad.stdout
    assert bad.stdout.splitlines()[0] == f"::add-mask::{wrong}"
    assert wrong not in "\n".join(bad.stdout.splitlines()[1:]) + bad.stderr
    assert bad.outputs == {}


def test_the_workflow_token_goes_to_ghcr_only(entrypoint: ModuleType) -> None:
    def inputs(username: str = "", password: str = "", token: str = RUNNER_TOKEN) -> Any:
        request = entrypoint.BuildRequest(name="hello")
        return entrypoint.Inputs(request, "oci/", True, username, password, token)

    env = {"GITHUB_ACTOR": "octocat"}
    ghcr = entrypoint.push_credential(inputs(), "ghcr.io", env)
    assert (ghcr.username, ghcr.password) == ("octocat", RUNNER_TOKEN)
    assert entrypoint.push_credential(inputs(), "registry.example.com", env) is None
    assert entrypoint.push_credential(inputs(token=""), "ghcr.io", env) is None
    given = entrypoint.push_credential(inputs("me", "secret"), "ghcr.io", env)
    assert (given.username, given.password) == ("me", "secret")


def test_the_workflow_token_is_masked(runner: Runner) -> None:
    result = runner.run({"name": "hello", "module": "hello.wasm"})
    assert result.status == 0, result.stdout
    assert f"::add-mask::{RUNNER_TOKEN}" in result.stdout.splitlines()
    assert result.outputs["pushed"] == ""


# ---------------------------------------------------------------------------------------------------------
# Errors and secrets


@pytest.mark.parametrize(
    ("inputs", "file", "words"),
    [
        ({"module": "missing.wasm"}, "missing.wasm", ["module missing.wasm", "no such file"]),
        ({"module": ""}, None, ["module"]),
        ({"module": "hello.wasm", "name": ""}, None, ["name"]),
        ({"module": "hello.wasm", "as-artifact": "yes"}, None, ["as-artifact", "true or false"]),
        ({"module": "hello.wasm", "as-artifact": "true", "rootfs": "true"}, None, ["mutually exclusive"]),
        ({"module": "hello.wasm", "rootfs": "true", "format": "envoy"}, None, ["rootfs and format"]),
        ({"module": "hello.wasm", "format": "docker"}, None, ["format 'docker'", "envoy-compat"]),
        ({"module": "hello.wasm", "labels": "=x"}, None, ["labels '=x'"]),
        ({"module": "hello.wasm", "annotations": "novalue"}, None, ["annotations 'novalue'"]),
        ({"module": "hello.wasm", "layers": "notamediatype=hello.wasm"}, None, ["layers"]),
        ({"module": "hello.wasm", "tag": "bad tag"}, None, ["tag 'bad tag'"]),
        ({"module": "hello.wasm", "repo": "Not/Valid"}, None, ["repo"]),
        ({"module": "hello.wasm", "created": "yesterday"}, None, ["created 'yesterday'"]),
        ({"module": "hello.wasm", "output": "hello.wasm/x.tar"}, None, ["output"]),
        ({"module": "hello.wasm", "push": "true"}, None, ["push", "repo"]),
        (
            {"module": "hello.wasm", "push": "true", "repo": "localhost:5000", "username": "u"},
            None,
            ["password"],
        ),
        (
            {"module": "hello.wasm", "push": "true", "repo": "localhost:5000", "password": "p"},
            None,
            ["username"],
        ),
    ],
)
def test_bad_input_is_one_error_line_exit_1_and_nothing_written(
    runner: Runner, inputs: dict[str, str], file: str | None, words: list[str]
) -> None:
    before = sorted(p.name for p in runner.workspace.rglob("*"))
    result = runner.run({"name": "hello", **inputs})
    assert result.status == 1
    assert len(result.errors) == 1, result.stdout
    error = result.errors[0]
    for word in words:
        assert word in error
    if file is not None:
        assert error.startswith(f"::error file={file}::")
    assert "--" not in error.split("::", 2)[2], "errors name inputs, not CLI flags"
    assert str(runner.workspace) not in error, "paths are shown as the user wrote them"
    assert "Traceback" not in result.stdout + result.stderr
    assert result.outputs == {}
    assert sorted(p.name for p in runner.workspace.rglob("*")) == before


def test_failure_leaves_an_existing_archive_untouched(runner: Runner) -> None:
    first = runner.run({"name": "hello", "module": "hello.wasm"})
    archive = runner.workspace / first.outputs["path"]
    content = archive.read_bytes()
    failed = runner.run({"name": "hello", "module": "missing.wasm"})
    assert failed.status == 1
    assert archive.read_bytes() == content


def test_unexpected_failure_is_an_error_line_not_a_traceback(runner: Runner) -> None:
    result = runner.run({"name": "hello", "module": "hello.wasm"}, env={"GITHUB_OUTPUT": "/nonexistent/out"})
    assert result.status == 1
    assert len(result.errors) == 1 and "internal error" in result.errors[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_password_is_masked_before_anything_else(runner: Runner) -> None:
    secret = "hunter2-not-in-logs"
    result = runner.run({"name": "hello", "module": "hello.wasm", "password": secret, "username": "me"})
    assert result.status == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"::add-mask::{secret}"
    assert secret not in "\n".join(lines[1:]) + result.stderr + result.summary


def test_requests_is_loaded_only_when_used(runner: Runner) -> None:
    """actions_toolkit.core imports requests for OIDC alone: a fresh interpreter builds without loading it
    (start-up time), and the name still gives the real module when used."""
    script = (
        f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); import entrypoint; status = entrypoint.main(); "
        "loaded = 'urllib3' in sys.modules; from actions_toolkit import oidc_utils; "
        "print(status, loaded, oidc_utils.requests.get.__module__)"
    )
    runner.output_file.write_text("")
    env = {**os.environ, **runner.context, "INPUT_NAME": "hello", "INPUT_MODULE": "hello.wasm"}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.stdout.splitlines()[-1] == "0 False requests.api", proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------------------
# action.yml, entrypoint.py and the README agree


class RecordingEnviron(dict[str, str]):
    """os.environ that remembers which variables were read (membership tests do not count as reads)."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


@pytest.fixture
def recording_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingEnviron]:
    environ = RecordingEnviron(dict(os.environ))
    monkeypatch.setattr(os, "environ", environ)
    yield environ


def test_every_declared_input_is_read_and_no_other(
    runner: Runner, recording_environ: RecordingEnviron
) -> None:
    result = runner.run({"name": "hello", "module": "hello.wasm"})
    assert result.status == 0, result.stdout
    read = {key for key in recording_environ.read if key.startswith("INPUT_")}
    assert read == {input_variable(name) for name in action_inputs()}


def test_action_yml_documents_every_input_and_output(entrypoint: ModuleType) -> None:
    metadata = yaml.safe_load(ACTION_YML.read_text())
    assert metadata["runs"] == {"using": "docker", "image": "Dockerfile"}
    assert {"icon", "color"} <= set(metadata["branding"])
    for kind in ("inputs", "outputs"):
        for name, spec in metadata[kind].items():
            assert spec.get("description"), f"{kind[:-1]} {name} has no description"
    for name, spec in metadata["inputs"].items():
        assert isinstance(spec.get("default", ""), str), f"default of {name} must be a string, as passed"
    # Expression defaults (`${{ github.token }}`) are the runner's to evaluate; outside it they are empty.
    assert entrypoint.declared_inputs() == {
        name: "" if "${{" in spec.get("default", "") else spec.get("default", "")
        for name, spec in metadata["inputs"].items()
    }
    assert set(metadata["outputs"]) == {
        "digest",
        "path",
        "image",
        "config-digest",
        "size",
        "pushed",
        "metadata",
    }


def readme_section(heading: str) -> list[str]:
    """The lines of README's section under `heading`, up to the next heading."""
    lines = README.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().lower() == heading.lower()), None)
    assert start is not None, f"README.md has no {heading!r} section"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return lines[start + 1 : end]


def readme_table(heading: str) -> list[str]:
    """First-column names (in backticks) of the Markdown table in README's `heading` section."""
    matches = (re.match(r"\|\s*`([^`]+)`\s*\|", line) for line in readme_section(heading))
    return [match.group(1) for match in matches if match]


def test_readme_tables_match_action_yml() -> None:
    metadata = yaml.safe_load(ACTION_YML.read_text())
    inputs = readme_table("### Inputs")
    outputs = readme_table("### Outputs")
    assert sorted(inputs) == sorted(metadata["inputs"]), "README input table vs action.yml inputs"
    assert sorted(outputs) == sorted(metadata["outputs"]), "README output table vs action.yml outputs"
    for name in inputs:
        default = str(metadata["inputs"][name].get("default", ""))
        row = next(line for line in readme_section("### Inputs") if line.startswith(f"| `{name}` |"))
        if default:
            assert f"`{default}`" in row, f"README row of {name} does not show its default {default!r}"
