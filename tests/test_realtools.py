"""The real-tool fixtures work: each service answers and each wasm file is what it claims to be."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from realtools import (
    CompileWat,
    Containerd,
    Registry,
    ToolError,
    jco_wit,
    run_wasi_command,
    skopeo,
    wit_imports_exports,
)

COMPONENT_HEADER = b"\0asm\x0d\x00\x01\x00"
CORE_HEADER = b"\0asm\x01\x00\x00\x00"


def test_registry_answers_v2(registry: Registry) -> None:
    status, headers, body = registry.request("/v2/")
    assert status == 200
    assert headers.get("Docker-Distribution-Api-Version") == "registry/2.0"
    assert json.loads(body) == {}
    assert registry.url == f"http://{registry.host}"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", registry.host)


def test_tls_registry_requires_auth(tls_registry: Registry) -> None:
    assert tls_registry.url.startswith("https://127.0.0.1:")
    status, headers, _ = tls_registry.request("/v2/", auth=False)
    assert status == 401
    assert headers.get("Www-Authenticate", "").startswith("Basic realm=")
    status, _, body = tls_registry.request("/v2/")
    assert status == 200, body
    assert json.loads(body) == {}


def test_tls_registry_rejects_wrong_password_and_untrusted_clients(tls_registry: Registry) -> None:
    bad = base64.b64encode(f"{tls_registry.user}:wrong".encode()).decode()
    status, _, _ = tls_registry.request("/v2/", auth=False, headers={"Authorization": f"Basic {bad}"})
    assert status == 401
    # Without its CA the certificate must not verify: the registry really serves a self-signed cert.
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ssl.create_default_context())
        ).open(tls_registry.url + "/v2/", timeout=5)
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError)


def test_skopeo_runs() -> None:
    assert re.match(r"skopeo version \d+\.\d+", skopeo("--version").stdout)
    with pytest.raises(ToolError, match="exited"):
        skopeo("inspect", "--raw", "oci-archive:/nonexistent/img.tar")


def _oci_layout(directory: Path, payload: bytes) -> Path:
    """A minimal one-layer OCI image layout tagged `v1`, written by hand for the push round trip."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes, media_type: str) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    config = blob(b'{"architecture":"wasm","os":"wasip1"}', "application/vnd.oci.image.config.v1+json")
    layer = blob(payload, "application/wasm")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
    }
    desc = blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    desc["annotations"] = {"org.opencontainers.image.ref.name": "v1"}
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    return directory


def test_skopeo_pushes_to_tls_registry_with_auth(
    tls_registry: Registry, hello_wasm: Path, tmp_path: Path
) -> None:
    layout = _oci_layout(tmp_path / "layout", hello_wasm.read_bytes())
    dest = f"docker://{tls_registry.host}/realtools/hello:v1"
    no_creds = ["--dest-cert-dir", str(tls_registry.cert_dir)]
    with pytest.raises(ToolError, match=r"(?i)unauthorized|authentication required"):
        skopeo("copy", *no_creds, f"oci:{layout}:v1", dest)
    skopeo("copy", *tls_registry.skopeo_tls_args("dest"), f"oci:{layout}:v1", dest)
    listed = skopeo(
        "list-tags", *tls_registry.skopeo_tls_args(""), f"docker://{tls_registry.host}/realtools/hello"
    )
    assert json.loads(listed.stdout)["Tags"] == ["v1"]
    out = tmp_path / "pulled"
    skopeo("copy", *tls_registry.skopeo_tls_args("src"), dest, f"dir:{out}")
    digest = hashlib.sha256(hello_wasm.read_bytes()).hexdigest()
    assert (out / digest).read_bytes() == hello_wasm.read_bytes()


def test_skopeo_pushes_to_plain_registry(registry: Registry, hello_wasm: Path, tmp_path: Path) -> None:
    layout = _oci_layout(tmp_path / "layout", hello_wasm.read_bytes())
    skopeo(
        "copy",
        *registry.skopeo_tls_args("dest"),
        f"oci:{layout}:v1",
        f"docker://{registry.host}/plain/hello:v1",
    )
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    status, headers, body = registry.request("/v2/plain/hello/manifests/v1", headers=accept)
    assert status == 200, body
    assert headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(body).hexdigest()
    layer = json.loads(body)["layers"][0]
    assert layer["mediaType"] == "application/wasm"
    status, _, blob = registry.request(f"/v2/plain/hello/blobs/{layer['digest']}")
    assert (status, blob) == (200, hello_wasm.read_bytes())


def test_containerd_serves_ctr(containerd: Containerd) -> None:
    version = containerd.ctr("version").stdout
    assert "Server:" in version
    assert re.search(r"UUID: [0-9a-f-]{36}", version)
    plugins = containerd.ctr("plugins", "ls").stdout
    assert re.search(r"io\.containerd\.content\.v1\s+content\s+-\s+ok", plugins)
    assert "io.containerd.grpc.v1.cri" not in plugins.replace(" ", "")
    assert len(containerd.address.encode()) < 108


def test_containerd_imports_an_oci_archive(containerd: Containerd, hello_wasm: Path, tmp_path: Path) -> None:
    layout = _oci_layout(tmp_path / "layout", hello_wasm.read_bytes())
    archive = tmp_path / "hello.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    name = "example.test/realtools/hello"
    containerd.ctr("images", "import", "--all-platforms", "--no-unpack", "--base-name", name, str(archive))
    try:
        assert f"{name}:v1" in containerd.ctr("images", "ls", "-q").stdout.split()
        digest = "sha256:" + hashlib.sha256(hello_wasm.read_bytes()).hexdigest()
        assert containerd.ctr_bytes("content", "get", digest) == hello_wasm.read_bytes()
    finally:
        containerd.ctr("images", "rm", f"{name}:v1")


def test_hello_module_runs_under_wasmtime(hello_wasm: Path) -> None:
    assert hello_wasm.read_bytes()[:8] == CORE_HEADER
    result = run_wasi_command(hello_wasm)
    assert result.exit_code == 0
    assert result.stdout == "hello from oci-tar-builder\n"
    assert result.stderr == ""


def test_hello_wasm_matches_its_source(hello_wasm: Path, core_module_wat: CompileWat) -> None:
    rebuilt = core_module_wat((hello_wasm.parent / "hello.wat").read_text(), "hello")
    assert rebuilt.read_bytes() == hello_wasm.read_bytes(), "examples/hello/hello.wasm is stale: rebuild it"


def test_core_module_wat_compiles_and_reports_errors(core_module_wat: CompileWat) -> None:
    path = core_module_wat('(module (func (export "answer") (result i32) i32.const 42))')
    assert path.suffix == ".wasm"
    assert path.read_bytes()[:8] == CORE_HEADER
    import wasmtime

    store = wasmtime.Store()
    instance = wasmtime.Instance(store, wasmtime.Module.from_file(store.engine, str(path)), [])
    answer = instance.exports(store)["answer"]
    assert isinstance(answer, wasmtime.Func)
    assert answer(store) == 42


# What tests/data/components/wit/world.wit asks for, as names in the component (see its comments).
OWN_IMPORTS = ["wasi:logging/logging@0.1.0-draft", "example:app/config@1.0.0", "clock-ms"]
OWN_EXPORTS = ["greet", "example:app/handler@1.0.0"]


def test_component_fixture_is_a_component(component_wasm: Path) -> None:
    data = component_wasm.read_bytes()
    assert data[:8] == COMPONENT_HEADER
    assert data[4:8] == bytes([0x0D, 0x00, 0x01, 0x00])
    assert len(data) > 1_000_000  # componentize-py embeds CPython


def test_jco_lists_the_designed_imports_and_exports(component_wasm: Path, jco: Path) -> None:
    assert jco.exists()
    wit = jco_wit(component_wasm)
    assert wit.startswith("package root:component;")
    imports, exports = wit_imports_exports(wit)
    for name in OWN_IMPORTS:
        assert name in imports, wit
    for name in OWN_EXPORTS:
        assert name in exports, wit
    # componentize-py's runtime imports wasi:cli 0.2.x itself; our 0.2.0 import merges into that version.
    environment = [n for n in imports if n.startswith("wasi:cli/environment@")]
    assert len(environment) == 1, imports
    assert re.fullmatch(r"wasi:cli/environment@0\.2\.\d+", environment[0])
    assert all(n.startswith("wasi:") for n in imports if n not in OWN_IMPORTS), imports
    # componentize-py adds a plain-named `exports` instance (its init hook); nothing else is exported.
    assert sorted(exports) == sorted([*OWN_EXPORTS, "exports"])
    assert len(imports) == len(set(imports))


def test_wit_imports_exports_reads_nested_bodies_correctly() -> None:
    wit = (
        "package root:component;\n\nworld root {\n"
        "  import wasi:io/poll@0.2.9;\n"
        "  import clock-ms: func() -> u64;\n"
        "  export exports: interface {\n"
        "    record %record {\n      fields: list<string>,\n    }\n"
        "    init: func() -> result<_, string>;\n"
        "  }\n"
        "  export %greet: func(name: string) -> string;\n"
        "  export example:app/handler@1.0.0;\n}\n"
    )
    assert wit_imports_exports(wit) == (
        ["wasi:io/poll@0.2.9", "clock-ms"],
        ["exports", "greet", "example:app/handler@1.0.0"],
    )
