"""The command as users run it: runwasi's invocations verbatim, its output, and every kind of bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from layout import load

RUNWASI_IMAGE = (
    "oci-tar-builder --name wasi-demo-oci --repo ghcr.io/containerd/runwasi --tag latest "
    "--module ./app.wasm -o ./dist/img-oci.tar"
)
RUNWASI_ARTIFACT = (
    "oci-tar-builder --name wasi-demo-oci --repo ghcr.io/containerd/runwasi --tag latest --as-artifact "
    "--module ./app.wasm -o ./dist/img-oci-artifact.tar"
)
BIN = Path(sys.executable).parent
# Root ignores file modes; without these two capabilities it meets "permission denied" like anyone else.
WITHOUT_ROOT_OVERRIDES = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
)


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, umask: int | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    full_env.update({"PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})})

    def set_umask() -> None:
        if umask is not None:
            os.umask(umask)

    return subprocess.run(
        args, cwd=cwd, env=full_env, capture_output=True, text=True, preexec_fn=set_umask, timeout=120
    )


@pytest.fixture
def workdir(tmp_path: Path, hello_wasm: Path) -> Path:
    shutil.copy(hello_wasm, tmp_path / "app.wasm")
    return tmp_path


@pytest.mark.parametrize(
    ("command", "archive", "layer_type"),
    [
        (RUNWASI_IMAGE, "dist/img-oci.tar", "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"),
        (RUNWASI_ARTIFACT, "dist/img-oci-artifact.tar", "application/wasm"),
    ],
)
def test_runwasi_invocations_work_as_written(
    workdir: Path, command: str, archive: str, layer_type: str
) -> None:
    result = run(["sh", "-c", command], workdir)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    layout = load(workdir / archive)
    manifest = layout.manifest()
    assert (
        manifest["annotations"]["io.containerd.image.name"]
        == "ghcr.io/containerd/runwasi/wasi-demo-oci:latest"
    )
    assert [layer["mediaType"] for layer in manifest["layers"]] == [layer_type]
    lines = result.stdout.splitlines()
    layer_digest = manifest["layers"][0]["digest"]
    assert lines[0].split() == ["layer", layer_digest, str((workdir / "app.wasm").stat().st_size), layer_type]
    assert f"digest   {layout.index['manifests'][0]['digest']}" in lines
    assert lines[-1] == f"archive  {workdir / archive}"


def test_python_m_and_short_flags(workdir: Path) -> None:
    result = run(
        [
            sys.executable,
            "-m",
            "oci_builder",
            "-n",
            "app",
            "-r",
            "localhost:5000",
            "-t",
            "v1",
            "-m",
            "app.wasm",
            "-o",
            "out/app.tar",
        ],
        workdir,
    )
    assert result.returncode == 0, result.stderr
    assert load(workdir / "out" / "app.tar").index["manifests"][0]["annotations"][
        "io.containerd.image.name"
    ] == ("localhost:5000/app:v1")


def test_default_output_is_name_tar_in_the_current_directory(workdir: Path) -> None:
    result = run(["oci-tar-builder", "-n", "hello", "-m", "app.wasm"], workdir)
    assert result.returncode == 0, result.stderr
    assert (workdir / "hello.tar").is_file()
    assert load(workdir / "hello.tar").manifest()["annotations"]["io.containerd.image.name"] == "hello:latest"


def test_version_and_help(tmp_path: Path) -> None:
    version = run(["oci-tar-builder", "--version"], tmp_path)
    assert version.returncode == 0
    assert version.stdout.startswith("oci-tar-builder ")
    helptext = run(["oci-tar-builder", "--help"], tmp_path)
    assert helptext.returncode == 0
    for flag in (
        "--name",
        "--repo",
        "--tag",
        "--module",
        "--layer",
        "--components",
        "--as-artifact",
        "--out-path",
        "--rootfs",
        "--created",
        "--quiet",
    ):
        assert flag in helptext.stdout


def test_components_skips_are_reported_on_stderr(workdir: Path) -> None:
    (workdir / "comps").mkdir()
    shutil.copy(workdir / "app.wasm", workdir / "comps" / "a.wasm")
    (workdir / "comps" / "notes.txt").write_text("x")
    result = run(["oci-tar-builder", "-n", "multi", "-c", "comps", "-o", "m.tar"], workdir)
    assert result.returncode == 0, result.stderr
    assert (
        result.stderr.strip()
        == "oci-tar-builder: warning: --components comps: skipping notes.txt (not a .wasm file)"
    )


def _snapshot(directory: Path) -> dict[str, tuple[int, float]]:
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime) for p in directory.rglob("*")
    }


BAD_INPUTS: list[tuple[list[str], int, str]] = [
    (["-n", "app", "-m", "missing.wasm"], 1, "--module "),
    (["-n", "app", "-m", "adir"], 1, "is a directory"),
    (["-n", "app", "-m", "unreadable.wasm"], 1, "permission denied"),
    (["-n", "app", "-m", "text.wasm"], 1, "not a WebAssembly binary"),
    (["-n", "app", "-m", "empty.wasm"], 1, "the file is empty"),
    (["-n", "app", "-m", "truncated.wasm"], 1, "truncated"),
    (["-n", "App", "-m", "app.wasm"], 2, "--name 'App': path component 'App' must be lowercase"),
    (
        ["-n", "app", "-r", "ghcr.io/Me", "-m", "app.wasm"],
        2,
        "--repo 'ghcr.io/Me': path component 'Me' must be lowercase",
    ),
    (["-n", "app", "-r", "ghcr.io/a/..", "-m", "app.wasm"], 2, "path component '..' is not valid"),
    (["-n", "my app", "-m", "app.wasm"], 2, "--name 'my app': 'my app' contains whitespace"),
    (["-n", "app", "-t", "v 1", "-m", "app.wasm"], 2, "--tag 'v 1'"),
    (["-n", "app", "-m", "app.wasm", "-c", "comps"], 2, "mutually exclusive"),
    (["-n", "app"], 2, "no input"),
    (["-m", "app.wasm"], 2, "the following arguments are required: -n/--name"),
    (["-n", "app", "-m", "app.wasm", "-l", "justapath"], 2, "expected MEDIATYPE=PATH"),
    (["-n", "app", "-m", "app.wasm", "-l", "notamediatype=app.wasm"], 2, "is not of the form type/subtype"),
    (["-n", "app", "-m", "app.wasm", "-l", "application/x=missing.bin"], 1, "--layer "),
    (["-n", "app", "-m", "app.wasm", "-a", "--rootfs"], 2, "not allowed with argument"),
    (["-n", "app", "-m", "app.wasm", "-m", "app.wasm", "-a"], 2, "takes exactly one wasm module"),
    (["-n", "app", "-m", "app.wasm", "--created", "yesterday"], 2, "--created 'yesterday': not a time"),
    (["-n", "app", "-m", "app.wasm", "--label", "novalue"], 2, "--label 'novalue': expected KEY=VALUE"),
    (["-n", "app", "-m", "app.wasm", "-o", "locked/out.tar"], 1, "cannot write in"),
]


@pytest.mark.parametrize(("args", "status", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_and_writes_nothing(
    workdir: Path, args: list[str], status: int, message: str
) -> None:
    (workdir / "adir").mkdir()
    (workdir / "text.wasm").write_text("hello, not wasm")
    (workdir / "empty.wasm").write_bytes(b"")
    (workdir / "truncated.wasm").write_bytes((workdir / "app.wasm").read_bytes()[:-5])
    (workdir / "unreadable.wasm").write_bytes((workdir / "app.wasm").read_bytes())
    (workdir / "unreadable.wasm").chmod(0)
    (workdir / "comps").mkdir()
    (workdir / "locked").mkdir()
    (workdir / "locked" / "out.tar").write_bytes(b"precious")
    (workdir / "locked").chmod(0o555)
    before = _snapshot(workdir)
    try:
        result = run([*WITHOUT_ROOT_OVERRIDES, "oci-tar-builder", *args], workdir)
    finally:
        (workdir / "locked").chmod(0o755)
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("oci-tar-builder: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert _snapshot(workdir) == before
    assert (workdir / "locked" / "out.tar").read_bytes() == b"precious"


def test_a_failed_build_leaves_an_existing_archive_untouched(workdir: Path) -> None:
    assert run(["oci-tar-builder", "-n", "app", "-m", "app.wasm", "-o", "app.tar"], workdir).returncode == 0
    good = (workdir / "app.tar").read_bytes()
    (workdir / "bad.wasm").write_bytes(b"\0asm\x01\0\0\0\x01\x7f")
    result = run(["oci-tar-builder", "-n", "app", "-m", "bad.wasm", "-o", "app.tar"], workdir)
    assert result.returncode == 1
    assert (workdir / "app.tar").read_bytes() == good
    assert sorted(p.name for p in workdir.iterdir()) == ["app.tar", "app.wasm", "bad.wasm"]


def test_debug_shows_the_traceback(workdir: Path) -> None:
    result = run(["oci-tar-builder", "-n", "app", "-m", "missing.wasm", "--debug"], workdir)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("oci-tar-builder: error: --module")


@pytest.mark.parametrize("mode", [[], ["--as-artifact"], ["--rootfs"]])
def test_reproducible_across_directories_umasks_and_mtimes(
    tmp_path: Path, hello_wasm: Path, mode: list[str]
) -> None:
    outputs = []
    for n, (umask, mtime) in enumerate([(0o022, 1_000_000_000), (0o077, 1_700_000_000)]):
        where = tmp_path / f"checkout-{n}" / ("deeper/" * n)
        where.mkdir(parents=True)
        shutil.copy(hello_wasm, where / "app.wasm")
        os.utime(where / "app.wasm", (mtime, mtime))
        result = run(
            ["oci-tar-builder", "-n", "app", "-r", "ghcr.io/me", "-m", "app.wasm", "-o", "app.tar", *mode],
            where,
            env={"SOURCE_DATE_EPOCH": "1714979289"},
            umask=umask,
        )
        assert result.returncode == 0, result.stderr
        outputs.append((where / "app.tar").read_bytes())
    assert outputs[0] == outputs[1]


def test_a_closed_stdout_ends_quietly(workdir: Path) -> None:
    """`oci-tar-builder inspect x.tar | head -1`: no traceback and no 'internal error' when head leaves."""
    assert run(["oci-tar-builder", "-n", "app", "-m", "app.wasm", "-o", "app.tar"], workdir).returncode == 0
    proc = subprocess.Popen(
        [str(BIN / "oci-tar-builder"), "inspect", "app.tar"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    assert proc.stderr.read() == b""
    assert proc.wait(timeout=60) == 141


def _run_with_terminal_stderr(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (as in an interactive shell) and stdout on a pipe."""
    import pty

    controller, terminal = pty.openpty()
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    stdout, _ = proc.communicate(timeout=120)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the other end is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    return proc.returncode, stdout.decode(), b"".join(chunks).decode(errors="replace")


def test_progress_shows_on_a_terminal_for_large_inputs_and_quiet_hides_it(tmp_path: Path) -> None:
    module = tmp_path / "big.wasm"
    # a core module with one custom section of (32 << 20) + 3 bytes: its name "x", then zeros
    module.write_bytes(b"\0asm\x01\0\0\0" + b"\0\x83\x80\x80\x10\x01x" + bytes((32 << 20) + 1))
    command = [str(BIN / "oci-tar-builder"), "-n", "big", "-m", "big.wasm", "-o", "big.tar"]
    status, stdout, stderr = _run_with_terminal_stderr(command, tmp_path)
    assert status == 0, stderr
    assert "hashing" in stderr and "32.0 MiB" in stderr
    assert "hashing" not in stdout
    status, _, stderr = _run_with_terminal_stderr([*command, "--quiet"], tmp_path)
    assert status == 0
    assert stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--created", "9999-12-31T00:00:00Z"], "tar headers store times from 1970 to 2242 only"),
        (["--rootfs", "-n", "a" * 120], "longer than the 100 bytes a tar entry holds"),
    ],
)
def test_what_a_tar_cannot_hold_is_refused_before_writing(
    workdir: Path, args: list[str], message: str
) -> None:
    name = [] if "-n" in args else ["-n", "app"]
    result = run(["oci-tar-builder", *name, "-m", "app.wasm", "-o", "out.tar", *args], workdir)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (workdir / "out.tar").exists()
