"""Session fixtures backed by real tools: a registry (plain and TLS+htpasswd), containerd, real wasm files.

A missing tool is an error, never a skip: CI (.ci/run) installs every one of them, so a fixture that cannot
start says which tool and package are missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, Protocol, TypeVar

import pytest
from realtools import (
    REPO_ROOT,
    CompileWat,
    Containerd,
    Registry,
    ToolError,
    build_component,
    ensure_jco,
    wat2wasm,
)

COMPONENTS_DIR = REPO_ROOT / "tests" / "data" / "components"
HELLO_WASM = REPO_ROOT / "examples" / "hello" / "hello.wasm"

TLS_USER = "tester"
TLS_PASSWORD = "s3cret-for-tests"


def _fail_on_tool_error(what: str, exc: ToolError) -> NoReturn:
    pytest.fail(f"{what} could not start: {exc}", pytrace=False)


class _Service(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Service)


def _running(what: str, start: Callable[[], S]) -> Iterator[S]:
    """Start a service for the session, fail clearly if it cannot start, stop it at the end."""
    try:
        service = start()
    except ToolError as exc:
        _fail_on_tool_error(what, exc)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Anonymous plain-HTTP registry on 127.0.0.1 (skopeo needs --dest-tls-verify=false)."""
    yield from _running("registry", lambda: Registry(tmp_path_factory.mktemp("registry")))


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """HTTPS registry with a self-signed cert (`ca_file`, `cert_dir`) and basic auth (`user`, `password`)."""
    yield from _running(
        "TLS registry",
        lambda: Registry(
            tmp_path_factory.mktemp("tls-registry"), tls=True, htpasswd=(TLS_USER, TLS_PASSWORD)
        ),
    )


@pytest.fixture(scope="session")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """A private containerd; use `.ctr("images", "import", ...)` against it."""
    yield from _running("containerd", lambda: Containerd(tmp_path_factory.mktemp("containerd")))


@pytest.fixture(scope="session")
def hello_wasm() -> Path:
    """examples/hello/hello.wasm: a committed WASI preview1 command module (built from hello.wat)."""
    if not HELLO_WASM.is_file():
        pytest.fail(f"{HELLO_WASM} is missing: build it with wat2wasm from hello.wat and commit it")
    return HELLO_WASM


@pytest.fixture(scope="session")
def component_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The componentize-py component of tests/data/components (world `service`), built once and cached."""
    out = tmp_path_factory.mktemp("component") / "service.wasm"
    try:
        return build_component(COMPONENTS_DIR / "wit", COMPONENTS_DIR / "app.py", "service", out)
    except ToolError as exc:
        pytest.fail(f"componentize-py could not build the test component: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def jco() -> Path:
    """Path of the pinned jco (installed with npm into tests/.tools/ on first use)."""
    try:
        return ensure_jco()
    except ToolError as exc:
        pytest.fail(f"jco is unavailable: {exc}", pytrace=False)


@pytest.fixture
def core_module_wat(tmp_path: Path) -> CompileWat:
    """Compile a WAT string to a .wasm file in the test's tmp dir: `core_module_wat(src, name="module")`."""
    counter = 0

    def compile_wat(source: str, name: str | None = None) -> Path:
        nonlocal counter
        counter += 1
        stem = name or f"module{counter}"
        src = tmp_path / f"{stem}.wat"
        src.write_text(source)
        try:
            return wat2wasm(src, tmp_path / f"{stem}.wasm")
        except ToolError as exc:
            pytest.fail(f"wat2wasm failed: {exc}", pytrace=False)

    return compile_wat
