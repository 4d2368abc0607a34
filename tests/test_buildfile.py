"""Build files (`oci-tar-builder build -f FILE`, the Action's `config`): several images in one archive or in
one archive each, and every kind of bad file refused with its line and column, nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from layout import load
from realtools import Containerd
from test_entrypoint import WORKSPACE_UID, ActionRun, Runner, load_entrypoint

from oci_builder.buildfile import MAX_DEPTH, MAX_SIZE, load_build_file, plan_archives
from oci_builder.cli import main
from oci_builder.formats import Format

BIN = Path(sys.executable).parent
RUNWASI_LAYER = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"
WASM_CONFIG = "application/vnd.wasm.config.v0+json"
IMAGE_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"

TWO_IMAGES = """\
output: dist/all.tar
created: 2024-01-02T03:04:05Z
images:
  - name: bf-image
    repo: example.test/buildfile
    tags: [v1, latest]
    modules: [../wasm/hello.wasm]
    labels: {team: runtime}
    annotations: {org.example.note: "from a build file"}
  - name: bf-artifact
    repo: example.test/buildfile
    tag: v1
    module: ../wasm/hello.wasm
    format: artifact
"""


def write(directory: Path, text: str, name: str = "oci-build.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def command(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    return subprocess.run(
        ["oci-tar-builder", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def project(tmp_path: Path, hello_wasm: Path) -> Path:
    """tmp/wasm/hello.wasm beside tmp/project/, where the build files go."""
    (tmp_path / "wasm").mkdir()
    shutil.copy(hello_wasm, tmp_path / "wasm" / "hello.wasm")
    (tmp_path / "project").mkdir()
    return tmp_path / "project"


# ---------------------------------------------------------------------------------------------------------
# Round trips


def test_two_images_in_one_archive_imported_by_containerd(
    project: Path, tmp_path: Path, containerd: Containerd
) -> None:
    write(project, TWO_IMAGES)
    # From another directory: paths in the file are the file's directory's, not the current one's.
    result = command(["build", "-f", "project/oci-build.yaml"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    archive = project / "dist" / "all.tar"
    layout = load(archive)

    entries = layout.index["manifests"]
    names = [entry["annotations"][IMAGE_NAME] for entry in entries]
    assert names == [
        "example.test/buildfile/bf-image:v1",
        "example.test/buildfile/bf-image:latest",
        "example.test/buildfile/bf-artifact:v1",
    ]
    assert [entry["annotations"][REF_NAME] for entry in entries] == ["v1", "latest", "v1"]
    image, artifact = layout.blob_json(entries[0]["digest"]), layout.blob_json(entries[2]["digest"])
    assert entries[1]["digest"] == entries[0]["digest"] != entries[2]["digest"]
    assert [layer["mediaType"] for layer in image["layers"]] == [RUNWASI_LAYER]
    assert image["annotations"]["org.example.note"] == "from a build file"
    image_config = layout.blob_json(image["config"]["digest"])
    assert image_config["config"]["Labels"]["team"] == "runtime"
    assert image_config["created"] == "2024-01-02T03:04:05Z"
    assert artifact["config"]["mediaType"] == WASM_CONFIG
    assert [layer["mediaType"] for layer in artifact["layers"]] == ["application/wasm"]
    assert layout.blob_json(artifact["config"]["digest"])["created"] == "2024-01-02T03:04:05Z"
    docker = layout.json("manifest.json")
    assert [entry["RepoTags"] for entry in docker] == [names[:2], names[2:]]

    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("digest ")] == [
        entries[0]["digest"],
        entries[2]["digest"],
    ]
    assert lines[-1] == f"archive  {archive}"
    assert sum(line.startswith("archive ") for line in lines) == 1

    containerd.ctr("images", "import", "--all-platforms", "--no-unpack", str(archive))
    listing = containerd.ctr("images", "ls", "-q").stdout.split()
    assert set(names) <= set(listing)
    for name, entry in zip(names, entries, strict=True):
        rows = containerd.ctr("images", "ls", f"name=={name}").stdout.splitlines()[1:]
        assert [(row.split()[0], row.split()[2]) for row in rows] == [(name, entry["digest"])]


def test_an_image_from_a_build_file_is_the_image_the_flags_build(project: Path, tmp_path: Path) -> None:
    write(project, TWO_IMAGES)
    assert command(["build", "-f", "project/oci-build.yaml"], tmp_path).returncode == 0
    flags = command(
        [
            *("--name", "bf-image", "--repo", "example.test/buildfile", "--tag", "v1", "--tag", "latest"),
            *("--module", "wasm/hello.wasm", "--label", "team=runtime"),
            *("--annotation", "org.example.note=from a build file", "--created", "2024-01-02T03:04:05Z"),
            *("-o", "flags.tar"),
        ],
        tmp_path,
    )
    assert flags.returncode == 0, flags.stderr
    from_file = load(project / "dist" / "all.tar").index["manifests"][0]
    assert load(tmp_path / "flags.tar").index["manifests"][0]["digest"] == from_file["digest"]


def test_without_a_top_level_output_each_image_gets_its_own_archive(project: Path, tmp_path: Path) -> None:
    (project / "notes.txt").write_text("a layer of text\n")
    write(
        project,
        """\
        images:
          - name: first
            module: ../wasm/hello.wasm
            layers:
              - {mediaType: text/plain, path: notes.txt}
              - text/markdown=notes.txt
          - name: second
            module: ../wasm/hello.wasm
            format: rootfs
            output: out/
          - name: org/third
            components: ../wasm
            output: elsewhere/third-image.tar
        """,
    )
    result = command(["build", "-f", "project/oci-build.yaml", "-q"], tmp_path)
    assert result.returncode == 0, result.stderr
    archives = {
        "first:latest": project / "first.tar",
        "second:latest": project / "out" / "second.tar",
        "org/third:latest": project / "elsewhere" / "third-image.tar",
    }
    for reference, archive in archives.items():
        layout = load(archive)
        (entry,) = layout.index["manifests"]
        assert entry["annotations"][IMAGE_NAME] == reference
    first = load(archives["first:latest"]).manifest()
    assert [layer["mediaType"] for layer in first["layers"]] == [RUNWASI_LAYER, "text/plain", "text/markdown"]
    printed = [
        line.split(maxsplit=1)[1] for line in result.stdout.splitlines() if line.startswith("archive ")
    ]
    assert printed == [str(path) for path in archives.values()]


def test_warnings_name_the_image(project: Path, tmp_path: Path) -> None:
    (tmp_path / "wasm" / "notes.txt").write_text("not wasm\n")
    write(project, "images:\n  - name: multi\n    components: ../wasm\n")
    result = command(["build", "-f", "oci-build.yaml"], project)
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "oci-tar-builder: warning: oci-build.yaml:2:5: images[0]: components ../wasm: skipping notes.txt "
        "(not a .wasm file)\n"
    )


def test_scalars_are_taken_as_written(project: Path) -> None:
    path = write(
        project,
        """\
        images:
          - name: hello
            tag: 1.10
            module: ../wasm/hello.wasm
            annotations: {version: 1.0, enabled: yes, empty: ""}
        """,
    )
    (archive,) = plan_archives(load_build_file(path))
    (plan,) = archive.plans
    assert plan.references == ("hello:1.10",)
    assert dict(plan.annotations) == {"version": "1.0", "enabled": "yes", "empty": ""}


def test_created_from_the_file_else_the_default(project: Path) -> None:
    with_time = write(project, TWO_IMAGES)
    fallback = load_build_file(with_time, default_created=None).images[0].request.created
    assert fallback is not None and fallback.isoformat() == "2024-01-02T03:04:05+00:00"
    without = write(project, "images: [{name: a, module: ../wasm/hello.wasm}]\n", name="b.yaml")
    assert load_build_file(without).images[0].request.created is None
    default = load_build_file(with_time).images[0].request.created
    assert load_build_file(without, default_created=default).images[0].request.created == default


# ---------------------------------------------------------------------------------------------------------
# Bad files: one line naming FILE:LINE:COLUMN, exit status, nothing written

FORMATS = ", ".join(fmt.value for fmt in Format)

BAD_FILES: list[tuple[str, str, int, str]] = [
    (
        "unknown key",
        """\
        images:
          - name: hello
            module: hello.wasm
            nmae: x
        """,
        2,
        "oci-build.yaml:4:5: images[0]: unknown key 'nmae' (did you mean 'name'?); allowed: name, repo,",
    ),
    (
        "wrong type",
        """\
        images:
          - name: hello
            modules: hello.wasm
        """,
        2,
        "oci-build.yaml:3:14: images[0].modules: expected a list of strings, got 'hello.wasm'",
    ),
    (
        "bad format value",
        """\
        images:
          - name: ok
            module: hello.wasm
          - name: hello
            module: hello.wasm
            format: imgae
        """,
        2,
        f"oci-build.yaml:6:13: images[1].format: 'imgae' is not one of {FORMATS}",
    ),
    (
        "missing name",
        """\
        images:
          - repo: ghcr.io/me
            module: hello.wasm
        """,
        2,
        "oci-build.yaml:2:5: images[0]: missing required key 'name'",
    ),
    (
        "duplicate key",
        """\
        images:
          - name: hello
            module: hello.wasm
            name: other
        """,
        2,
        "oci-build.yaml:4:5: images[0]: duplicate key 'name' (first on line 2)",
    ),
    (
        "duplicate reference",
        """\
        output: all.tar
        images:
          - name: hello
            tags: [v1, latest]
            module: hello.wasm
          - name: hello
            module: hello.wasm
            format: artifact
        """,
        2,
        "oci-build.yaml:6:5: images[1]: hello:latest is also images[0] (line 3)",
    ),
    (
        "same archive twice",
        """\
        images:
          - name: hello
            module: hello.wasm
          - name: hello
            module: hello.wasm
            format: artifact
        """,
        2,
        "oci-build.yaml:4:5: images[1]: its archive ",
    ),
    (
        "YAML syntax error",
        """\
        images:
          - name: hello
            module: hello.wasm
           format: image
        """,
        2,
        "oci-build.yaml:4:4: invalid YAML: ",
    ),
    (
        "a missing module file",
        """\
        images:
          - name: ok
            module: hello.wasm
          - name: hello
            modules:
              - hello.wasm
              - missing.wasm
        """,
        1,
        "oci-build.yaml:7:9: images[1].modules: missing.wasm: no such file",
    ),
    (
        "a bad tag",
        """\
        images:
          - name: hello
            tags: [v1, "v 2"]
            module: hello.wasm
        """,
        2,
        "oci-build.yaml:3:16: images[0].tags: tag 'v 2' is not valid",
    ),
    (
        "a name with capitals",
        """\
        images:
          - name: Hello
            module: hello.wasm
        """,
        2,
        "oci-build.yaml:2:11: images[0].name: path component 'Hello' must be lowercase",
    ),
    (
        "two modules for an artifact",
        """\
        images:
          - name: hello
            modules: [hello.wasm, hello.wasm]
            format: artifact
        """,
        2,
        "oci-build.yaml:4:13: images[0].format: takes exactly one wasm module or component; 2 were given",
    ),
    (
        "labels on an artifact",
        """\
        images:
          - name: hello
            module: hello.wasm
            format: artifact
            labels: {a: b}
        """,
        2,
        "oci-build.yaml:5:13: images[0].labels: ",
    ),
    (
        "tag and tags",
        """\
        images:
          - name: hello
            tag: v1
            tags: [v2]
            module: hello.wasm
        """,
        2,
        "oci-build.yaml:4:5: images[0]: give tag or tags, not both",
    ),
    (
        "no wasm",
        """\
        images:
          - name: hello
        """,
        2,
        "oci-build.yaml:2:5: images[0]: no wasm to package: give module, modules or components",
    ),
    (
        "a bad annotation key",
        """\
        images:
          - name: hello
            module: hello.wasm
            annotations:
              "a=b": c
        """,
        2,
        "oci-build.yaml:5:7: images[0].annotations: 'a=b' is not a valid key",
    ),
    (
        "a bad layer media type",
        """\
        images:
          - name: hello
            module: hello.wasm
            layers:
              - {mediaType: plain, path: hello.wasm}
        """,
        2,
        "oci-build.yaml:5:21: images[0].layers[0]: media type 'plain' is not of the form type/subtype",
    ),
    (
        "a bad time",
        """\
        created: yesterday
        images: [{name: hello, module: hello.wasm}]
        """,
        2,
        "oci-build.yaml:1:10: created: 'yesterday': not a time",
    ),
    (
        "an image output beside the top-level output",
        """\
        output: all.tar
        images:
          - name: hello
            module: hello.wasm
            output: hello.tar
        """,
        2,
        "oci-build.yaml:5:13: images[0].output: not with the top-level output (line 1)",
    ),
    (
        "no images",
        "images: []\n",
        2,
        "oci-build.yaml:1:9: images: expected a list of at least one image, got an empty list",
    ),
    ("an empty file", "", 2, "oci-build.yaml:1:1: the build file is empty"),
    ("not a mapping", "- name: hello\n", 2, "oci-build.yaml:1:1: expected a mapping, got a list"),
    (
        "two documents",
        "images: []\n---\nimages: []\n",
        2,
        "oci-build.yaml:2:1: invalid YAML: expected a single document in the stream, but found another",
    ),
    (
        "an anchor",
        """\
        images:
          - &hello {name: hello, module: hello.wasm}
        """,
        2,
        "oci-build.yaml:2:5: YAML anchors and aliases are not supported",
    ),
    (
        "a custom tag",
        """\
        images:
          - name: !Ref hello
            module: hello.wasm
        """,
        2,
        "oci-build.yaml:2:11: the YAML tag !Ref is not supported",
    ),
    (
        "deep nesting",
        "images: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n",
        2,
        f"oci-build.yaml:1:{8 + MAX_DEPTH}: nested more than {MAX_DEPTH} levels deep",
    ),
]


@pytest.mark.parametrize(
    ("text", "status", "message"), [case[1:] for case in BAD_FILES], ids=[c[0] for c in BAD_FILES]
)
def test_bad_build_file_is_one_line_with_its_position_and_writes_nothing(
    project: Path,
    hello_wasm: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str,
    status: int,
    message: str,
) -> None:
    shutil.copy(hello_wasm, project / "hello.wasm")
    write(project, text)
    monkeypatch.chdir(project)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    before = sorted(project.rglob("*"))
    assert main(["build", "-f", "oci-build.yaml"]) == status
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"oci-tar-builder: error: {message}"), line
    assert sorted(project.rglob("*")) == before


def test_a_file_larger_than_the_bound_is_refused_unread(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = project / "huge.yaml"
    with open(path, "w") as f:
        f.write("images: []\n")
        f.write(("#" * 1023 + "\n") * (MAX_SIZE // 1024 + 1))
    assert main(["build", "-f", str(path)]) == 2
    assert (
        capsys.readouterr().err
        == f"oci-tar-builder: error: {path}: is larger than 1 MiB: too large for a build file\n"
    )


def test_aliases_are_refused_before_anything_is_expanded(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A billion laughs: nine levels of ten aliases each would be 10^9 strings once expanded."""
    lines = ['a0: &a0 "lol"']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    path = write(project, "\n".join(lines) + "\nimages: *a9\n")
    assert main(["build", "-f", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"oci-tar-builder: error: {path}:1:5: YAML anchors and aliases")


def test_a_file_that_is_not_utf8_is_refused_at_the_byte(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "oci-build.yaml").write_bytes(b"images:\n  - name: h\xffllo\n")
    monkeypatch.chdir(project)
    assert main(["build", "-f", "oci-build.yaml"]) == 2
    assert capsys.readouterr().err == "oci-tar-builder: error: oci-build.yaml:2:12: not UTF-8 text\n"


def test_missing_build_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "-f", str(project / "nothere.yaml")]) == 1
    assert capsys.readouterr().err == f"oci-tar-builder: error: {project / 'nothere.yaml'}: no such file\n"


def test_build_file_flags_do_not_mix_with_image_flags(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project, TWO_IMAGES)
    assert main(["build", "-f", str(project / "oci-build.yaml"), "--name", "x"]) == 2
    assert capsys.readouterr().err == "oci-tar-builder: error: unrecognized arguments: --name x\n"
    assert not (project / "dist").exists()


# ---------------------------------------------------------------------------------------------------------
# The Action's `config` input


@pytest.fixture(scope="module")
def entrypoint() -> ModuleType:
    return load_entrypoint()


@pytest.fixture
def runner(
    entrypoint: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    hello_wasm: Path,
) -> Runner:
    fake = Runner(entrypoint, tmp_path, monkeypatch, capsys)
    (fake.workspace / "wasm").mkdir()
    shutil.copy(hello_wasm, fake.workspace / "wasm" / "hello.wasm")
    monkeypatch.chdir(tmp_path)
    return fake


def succeeded(result: ActionRun) -> ActionRun:
    assert result.status == 0, result.stdout + result.stderr
    assert result.errors == []
    return result


def test_action_config_builds_every_image_into_one_archive(runner: Runner) -> None:
    write(runner.workspace / "ci", TWO_IMAGES)
    result = succeeded(runner.run({"config": "ci/oci-build.yaml"}))
    outputs = result.outputs
    assert outputs["path"] == "ci/dist/all.tar"
    layout = load(runner.workspace / outputs["path"])
    entries = layout.index["manifests"]
    assert outputs["digest"] == entries[0]["digest"]
    assert outputs["image"] == "example.test/buildfile/bf-image:v1"
    assert outputs["config-digest"] == layout.manifest(0)["config"]["digest"]
    assert int(outputs["size"]) == (runner.workspace / outputs["path"]).stat().st_size
    metadata = json.loads(outputs["metadata"])
    assert metadata["digest"] == outputs["digest"]
    images = metadata["images"]
    assert [image["references"] for image in images] == [
        ["example.test/buildfile/bf-image:v1", "example.test/buildfile/bf-image:latest"],
        ["example.test/buildfile/bf-artifact:v1"],
    ]
    assert [image["digest"] for image in images] == [entries[0]["digest"], entries[2]["digest"]]
    assert {image["path"] for image in images} == {"ci/dist/all.tar"}
    for position in (0, 2):
        annotations = layout.manifest(position)["annotations"]
        assert annotations["org.opencontainers.image.revision"] == runner.context["GITHUB_SHA"]
        # The file's `created` is the build's time, in the context annotation too.
        assert annotations["org.opencontainers.image.created"] == "2024-01-02T03:04:05Z"
    assert layout.manifest(0)["annotations"]["org.example.note"] == "from a build file"
    for image in images:
        assert f"`{image['digest']}`" in result.summary
    info = (runner.workspace / "ci" / "dist" / "all.tar").stat()
    assert (info.st_uid, info.st_gid) == (WORKSPACE_UID, WORKSPACE_UID)


def test_action_config_with_an_archive_per_image(runner: Runner) -> None:
    write(
        runner.workspace,
        """\
        images:
          - name: one
            module: wasm/hello.wasm
            output: oci/
          - name: two
            module: wasm/hello.wasm
            format: artifact
            output: oci/
        """,
    )
    result = succeeded(runner.run({"config": "oci-build.yaml"}))
    assert result.outputs["path"] == "oci/one.tar"
    images = json.loads(result.outputs["metadata"])["images"]
    assert [image["path"] for image in images] == ["oci/one.tar", "oci/two.tar"]
    assert [image["image"] for image in images] == ["one:latest", "two:latest"]
    for image in images:
        (entry,) = load(runner.workspace / image["path"]).index["manifests"]
        assert entry["digest"] == image["digest"]
        assert (runner.workspace / image["path"]).stat().st_uid == WORKSPACE_UID
    assert (runner.workspace / "oci").stat().st_uid == WORKSPACE_UID


@pytest.mark.parametrize(
    ("inputs", "text", "expected"),
    [
        (
            {},
            "images:\n  - name: hello\n    module: wasm/hello.wasm\n    format: imgae\n",
            "::error file=oci-build.yaml::oci-build.yaml:4:13: images[0].format: 'imgae' is not one of",
        ),
        (
            {},
            "images:\n  - name: hello\n    module: wasm/missing.wasm\n",
            "::error file=oci-build.yaml::oci-build.yaml:3:13: images[0].module: wasm/missing.wasm: no such",
        ),
        ({"name": "hello"}, TWO_IMAGES, "::error::name: is not used with config"),
        ({"as-artifact": "true"}, TWO_IMAGES, "::error::as-artifact: is not used with config"),
        ({"push": "true"}, TWO_IMAGES, "::error::push: is not supported with config"),
    ],
)
def test_action_config_errors(runner: Runner, inputs: dict[str, str], text: str, expected: str) -> None:
    write(runner.workspace, text)
    before = sorted(runner.workspace.rglob("*"))
    result = runner.run({"config": "oci-build.yaml", **inputs})
    assert result.status == 1
    (error,) = result.errors
    assert error.startswith(expected), error
    assert result.outputs == {}
    assert sorted(runner.workspace.rglob("*")) == before


def test_action_without_config_or_name_says_which_is_needed(runner: Runner) -> None:
    result = runner.run({"module": "wasm/hello.wasm"})
    assert result.status == 1
    assert result.errors == ["::error::name: is required: the image's name (or give a build file in config)"]
