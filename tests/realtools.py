"""Helpers that start and drive the real tools the tests check the builder against (no mocks).

Every service binds to loopback only and lives in its own temp directory; every helper raises with the tool's
own output on failure, so a broken environment reads as an error, never as a skipped or passing test.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = REPO_ROOT / "tests" / ".tools"
CACHE_DIR = REPO_ROOT / "tests" / ".cache"

JCO_VERSION = "1.24.6"
"""Pinned @bytecodealliance/jco: the newest release that still runs on Debian bookworm's Node.js 18 (from
1.25 on it needs native oxc bindings that npm skips on Node 18); on Node 20 it prints what 1.35 prints."""

# Debian package that provides each tool, for error messages (.ci/run installs them all).
_DEBIAN_PACKAGE = {
    "docker-registry": "docker-registry",
    "htpasswd": "apache2-utils",
    "openssl": "openssl",
    "containerd": "containerd",
    "ctr": "containerd",
    "skopeo": "skopeo",
    "wat2wasm": "wabt",
    "npm": "npm",
    "node": "nodejs",
}


class ToolError(RuntimeError):
    """A real tool is missing or failed; the message carries its output so CI logs explain why."""


def require_tool(name: str) -> str:
    """Return the path of executable NAME, or raise saying which Debian package provides it."""
    path = shutil.which(name)
    if path is None:
        package = _DEBIAN_PACKAGE.get(name, name)
        raise ToolError(f"{name!r} not found on PATH: install it (apt-get install {package}); .ci/run does")
    return path


def run(
    args: list[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture text output, and raise ToolError with its stderr if it fails."""
    try:
        proc = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise ToolError(f"cannot run {args[0]!r}: {exc}") from exc
    if proc.returncode != 0:
        raise ToolError(
            f"{' '.join(args)} exited {proc.returncode}\nstderr:\n{proc.stderr.strip()}\n"
            f"stdout:\n{proc.stdout.strip()[-2000:]}"
        )
    return proc


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it: parallel runs differ)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 30) -> str:
    """Last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """A daemon in its own session (so stopping it reaches its children), its output appended to a log."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Terminate a child we started, and kill it if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


# --------------------------------------------------------------------------------------------------------
# Registry


class Registry:
    """A CNCF distribution registry (Debian's docker-registry) on 127.0.0.1:<free port>.

    Plain HTTP by default; `tls=True` serves HTTPS with a fresh self-signed certificate (`ca_file`, and
    `cert_dir` holding it as `ca.crt` for skopeo's --*-cert-dir); `htpasswd=(user, password)` requires basic
    auth (the registry only allows it with TLS).
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        tls: bool = False,
        htpasswd: tuple[str, str] | None = None,
        startup_timeout: float = 30,
    ) -> None:
        if htpasswd is not None and not tls:
            raise ValueError("docker-registry only accepts htpasswd auth behind TLS: pass tls=True")
        self._own_dir = workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="registry-")) if workdir is None else workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.user: str | None = htpasswd[0] if htpasswd else None
        self.password: str | None = htpasswd[1] if htpasswd else None
        self.ca_file: Path | None = None
        self.cert_dir: Path | None = None
        self.log = self.dir / "registry.log"
        self.data = self.dir / "data"
        self.port = 0
        self.host = ""
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._binary = require_tool("docker-registry")
        try:
            self._start(startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _config(self) -> str:
        """The registry's YAML config (JSON is valid YAML, and needs no YAML library here)."""
        http: dict[str, object] = {"addr": self.host, "secret": "oci-tar-builder-tests"}
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.data)}, "delete": {"enabled": True}},
            "http": http,
        }
        if self.tls:
            http["tls"] = {"certificate": str(self.dir / "cert.pem"), "key": str(self.dir / "key.pem")}
        if self.user is not None:
            config["auth"] = {
                "htpasswd": {"realm": "oci-tar-builder-tests", "path": str(self.dir / "htpasswd")}
            }
        return json.dumps(config, indent=2)

    def _make_tls(self) -> None:
        """Self-signed certificate valid for IP:127.0.0.1 and DNS:localhost (also serves as the CA)."""
        cert, key = self.dir / "cert.pem", self.dir / "key.pem"
        run(
            [
                require_tool("openssl"), "req", "-x509", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "7",
                "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout", str(key), "-out", str(cert),
            ]
        )  # fmt: skip
        self.ca_file = cert
        self.cert_dir = self.dir / "certs"
        self.cert_dir.mkdir(exist_ok=True)
        shutil.copyfile(cert, self.cert_dir / "ca.crt")

    def _start(self, timeout: float) -> None:
        if self.tls:
            self._make_tls()
        if self.user is not None and self.password is not None:
            run([require_tool("htpasswd"), "-Bbc", str(self.dir / "htpasswd"), self.user, self.password])
        last_error = ""
        for _attempt in range(3):  # another process may grab the free port before the registry binds it
            self.port = free_port()
            self.host = f"127.0.0.1:{self.port}"
            self.url = f"{'https' if self.tls else 'http'}://{self.host}"
            config = self.dir / "config.yml"
            config.write_text(self._config())
            self._proc = _spawn([self._binary, "serve", str(config)], self.log)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    last_error = f"docker-registry exited {self._proc.returncode}"
                    break
                with contextlib.suppress(OSError):
                    self.request("/v2/", auth=False, timeout=2)
                    return  # any HTTP answer (200, or 401 with auth) means it serves
                time.sleep(0.05)
            else:
                raise ToolError(
                    f"docker-registry did not answer {self.url}/v2/ in {timeout}s\n{_tail(self.log)}"
                )
        raise ToolError(f"{last_error}\nconfig:\n{self._config()}\nlog ({self.log}):\n{_tail(self.log)}")

    def ssl_context(self) -> ssl.SSLContext | None:
        """An SSL context trusting only this registry's certificate (None for plain HTTP)."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=str(self.ca_file))

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        auth: bool = True,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request to the registry: (status, headers, body); HTTP errors are returned, not raised.

        `auth=True` sends basic auth when the registry has a user; the CA is trusted when it has TLS.
        """
        req = urllib.request.Request(self.url + path, method=method, headers=dict(headers or {}))
        if auth and self.user is not None and self.password is not None:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        # No proxy handler: an http(s)_proxy in the environment must not intercept loopback traffic.
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self.ssl_context())
        )
        try:
            with opener.open(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers.items()), err.read()

    def skopeo_tls_args(self, direction: str = "dest") -> list[str]:
        """skopeo flags to reach this registry: TLS trust and credentials.

        DIRECTION is "src" or "dest" for `skopeo copy`/`sync`, or "" for `inspect`, `list-tags`, `delete`.
        """
        flag = f"--{direction}-" if direction else "--"
        if not self.tls:
            return [f"{flag}tls-verify=false"]
        args = [f"{flag}cert-dir", str(self.cert_dir)]
        if self.user is not None:
            args += [f"{flag}creds", f"{self.user}:{self.password}"]
        return args

    def stop(self) -> None:
        """Stop the registry and remove its directory if this object created it."""
        if self._proc is not None:
            _stop_process(self._proc)
            self._proc = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------
# containerd

# Plugins that need host-wide resources (/opt/containerd, kernel features, the CRI's networking) or
# are plain overhead for image import tests.
_CONTAINERD_DISABLED_PLUGINS = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.opt",
    "io.containerd.internal.v1.tracing",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
]


class Containerd:
    """A private containerd (its own root, state and sockets) for `ctr images import` and content checks.

    Nothing host-wide is touched: the grpc socket lives in a short /tmp dir (unix socket paths must stay
    under 108 bytes), root and state live in `workdir` (a temp dir by default).
    """

    def __init__(self, workdir: Path | None = None, *, startup_timeout: float = 30) -> None:
        self._own_dir = workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="containerd-")) if workdir is None else workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self._sock_dir = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
        self.address = str(self._sock_dir / "c.sock")
        self.namespace = "default"
        self.log = self.dir / "containerd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctr = require_tool("ctr")
        try:
            self._start(require_tool("containerd"), startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _config(self) -> str:
        disabled = ", ".join(json.dumps(p) for p in _CONTAINERD_DISABLED_PLUGINS)
        return (
            "version = 2\n"
            f"root = {json.dumps(str(self.dir / 'root'))}\n"
            f"state = {json.dumps(str(self._sock_dir / 'state'))}\n"
            f"disabled_plugins = [{disabled}]\n"
            "[grpc]\n"
            f"  address = {json.dumps(self.address)}\n"
            "[ttrpc]\n"
            f"  address = {json.dumps(self.address + '.ttrpc')}\n"
            "[debug]\n"
            '  address = ""\n'
            '  level = "info"\n'
            "[metrics]\n"
            '  address = ""\n'
        )

    def _start(self, binary: str, timeout: float) -> None:
        config = self.dir / "config.toml"
        config.write_text(self._config())
        self._proc = _spawn([binary, "--config", str(config)], self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ToolError(
                    f"containerd exited {self._proc.returncode}\nlog ({self.log}):\n{_tail(self.log)}"
                )
            if Path(self.address).is_socket():
                probe = subprocess.run(
                    self._ctr_args("version"), capture_output=True, text=True, timeout=10, check=False
                )
                if probe.returncode == 0:
                    return
            time.sleep(0.05)
        raise ToolError(f"containerd did not serve {self.address} in {timeout}s\n{_tail(self.log)}")

    def _ctr_args(self, *args: str) -> list[str]:
        return [self._ctr, "--address", self.address, "--namespace", self.namespace, *args]

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `ctr --address SOCK --namespace default ARGS` (text output); raises with stderr if check."""
        if check:
            return run(self._ctr_args(*args), timeout=timeout)
        return subprocess.run(
            self._ctr_args(*args), capture_output=True, text=True, timeout=timeout, check=False
        )

    def ctr_bytes(self, *args: str, timeout: float = 120) -> bytes:
        """Run ctr and return raw stdout, for binary output such as `content get DIGEST`."""
        proc = subprocess.run(self._ctr_args(*args), capture_output=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise ToolError(
                f"ctr {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}"
            )
        return proc.stdout

    def stop(self) -> None:
        """Stop containerd and remove the directories this object created."""
        if self._proc is not None:
            _stop_process(self._proc, timeout=20)
            self._proc = None
        shutil.rmtree(self._sock_dir, ignore_errors=True)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------
# skopeo, wabt, wasmtime


def skopeo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run skopeo; raise ToolError with its stderr if it fails."""
    return run([require_tool("skopeo"), *args], timeout=timeout)


def wat2wasm(src: Path, out: Path) -> Path:
    """Compile WebAssembly text SRC to a core module OUT with wabt's wat2wasm."""
    out.parent.mkdir(parents=True, exist_ok=True)
    run([require_tool("wat2wasm"), str(src), "-o", str(out)])
    return out


class CompileWat(Protocol):
    """Type of the `core_module_wat` fixture: WAT source in, path of the compiled .wasm out."""

    def __call__(self, source: str, name: str | None = None) -> Path: ...


@dataclass(frozen=True)
class WasiRun:
    """What a WASI preview1 command did under wasmtime."""

    exit_code: int
    stdout: str
    stderr: str


def run_wasi_command(module: Path | bytes, *args: str) -> WasiRun:
    """Run a WASI preview1 command module (its `_start`) with the wasmtime package; capture stdout/stderr."""
    import wasmtime  # the test extra installs it; imported here so the other helpers work without it

    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    compiled = (
        wasmtime.Module(engine, module)
        if isinstance(module, bytes)
        else wasmtime.Module.from_file(engine, str(module))
    )
    with tempfile.TemporaryDirectory(prefix="wasi-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        config = wasmtime.WasiConfig()
        config.argv = ["module.wasm", *args]
        config.stdout_file = str(out)
        config.stderr_file = str(err)
        store = wasmtime.Store(engine)
        store.set_wasi(config)
        instance = linker.instantiate(store, compiled)
        start = instance.exports(store)["_start"]
        if not isinstance(start, wasmtime.Func):
            raise ToolError("module's _start export is not a function")
        code = 0
        try:
            start(store)
        except wasmtime.ExitTrap as exc:
            code = exc.code
        return WasiRun(code, out.read_text(errors="replace"), err.read_text(errors="replace"))


# --------------------------------------------------------------------------------------------------------
# jco (npm) and componentize-py


def jco_path() -> Path:
    """Where jco is: $JCO if set, else tests/.tools/node_modules/.bin/jco (installed by ensure_jco)."""
    env = os.environ.get("JCO")
    return Path(env) if env else TOOLS_DIR / "node_modules" / ".bin" / "jco"


def _installed_jco_version() -> str | None:
    manifest = TOOLS_DIR / "node_modules" / "@bytecodealliance" / "jco" / "package.json"
    try:
        version = json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return str(version)


def ensure_jco() -> Path:
    """Return jco's path, installing the pinned version with npm into tests/.tools/ if it is missing.

    A $JCO given by the user is used as is (and must exist); the default install is redone when its version
    differs from JCO_VERSION, so bumping the pin takes effect.
    """
    path = jco_path()
    if os.environ.get("JCO"):
        if not path.exists():
            raise ToolError(f"$JCO={path} does not exist")
        return path
    if path.exists() and _installed_jco_version() == JCO_VERSION:
        return path
    require_tool("node")
    npm = require_tool("npm")
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    run(
        [
            npm, "install", "--prefix", str(TOOLS_DIR), "--no-audit", "--no-fund", "--loglevel=error",
            f"@bytecodealliance/jco@{JCO_VERSION}",
        ],
        timeout=600,
    )  # fmt: skip
    if not path.exists():
        raise ToolError(f"npm installed @bytecodealliance/jco@{JCO_VERSION} but {path} is missing")
    printed = run([str(path), "--version"]).stdout.strip()  # jco loads all its modules even for this
    if printed != JCO_VERSION:
        raise ToolError(f"{path} --version printed {printed!r}, expected {JCO_VERSION}")
    return path


def jco_wit(component: Path) -> str:
    """The WIT world jco prints for a component: an independent reading of its imports and exports."""
    return run([str(ensure_jco()), "wit", str(component)], timeout=120).stdout


def wit_imports_exports(wit: str) -> tuple[list[str], list[str]]:
    """Top-level import and export names from `jco wit` output (`import NAME;` or `import NAME: ...`).

    Only lines at the world's indentation (two spaces) count, so nested interface bodies are ignored.
    """
    imports: list[str] = []
    exports: list[str] = []
    for line in wit.splitlines():
        if not line.startswith("  ") or line.startswith("   "):
            continue
        words = line.strip().split(None, 1)
        if len(words) != 2 or words[0] not in ("import", "export"):
            continue
        name = words[1].split(": ", 1)[0].rstrip(";").strip().removeprefix("%")
        (imports if words[0] == "import" else exports).append(name)
    return imports, exports


def componentize_py() -> str:
    """componentize-py next to this Python (a venv's bin/, even when not activated), else on PATH."""
    beside = Path(sys.executable).parent / "componentize-py"
    if beside.exists():
        return str(beside)
    path = shutil.which("componentize-py")
    if path is None:
        raise ToolError("componentize-py not found: pip install -e '.[test]' (the test extra pins it)")
    return path


def _tree_digest(root: Path) -> bytes:
    """sha256 over every file under ROOT (relative path and bytes, in sorted order)."""
    hasher = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        hasher.update(str(path.relative_to(root)).encode() + b"\0")
        hasher.update(hashlib.sha256(path.read_bytes()).digest())
    return hasher.digest()


def build_component(wit_dir: Path, app_py: Path, world: str, out: Path) -> Path:
    """Build a WASI 0.2 component with componentize-py, cached in tests/.cache/ by a hash of the inputs.

    A build takes ~10 s and 18 MB, so it is done once per change of the WIT files, the app's directory, the
    world or componentize-py's version. APP_PY's directory is the Python path; its stem is the module.
    """
    tool = componentize_py()
    version = run([tool, "--version"]).stdout.strip()
    hasher = hashlib.sha256()
    hasher.update(f"{version}\0{world}\0{app_py.name}\0".encode())
    hasher.update(_tree_digest(wit_dir) + _tree_digest(app_py.parent))
    cached = CACHE_DIR / "components" / f"{hasher.hexdigest()}.wasm"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        env = {
            k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"
        }  # keep the venv out of the component
        with tempfile.TemporaryDirectory(prefix="componentize-") as cwd:
            run(
                [
                    tool, "-q", "-d", str(wit_dir), "-w", world, "componentize",
                    "-p", str(app_py.parent), app_py.stem, "-o", str(partial),
                ],
                cwd=Path(cwd),
                env=env,
                timeout=600,
            )  # fmt: skip
        partial.replace(cached)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, out)
    return out
