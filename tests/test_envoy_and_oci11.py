"""Envoy/Istio WasmPlugin images (REFERENCE.md 1.6), and OCI 1.1 fields: artifactType, standard annotations.

Istio's image fetcher is the consumer for the Envoy formats; its rules are checked here as it applies them:
the oci variant has two layers, one of them `application/vnd.module.wasm.content.layer.v1+wasm` holding the
raw plugin; the compat variant has one `application/vnd.oci.image.layer.v1.tar+gzip` layer holding
`plugin.wasm`, and the manifest annotation `module.wasm.image/variant=compat`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from layout import load
from realtools import Registry, skopeo

from oci_builder import BuildRequest, Format, build, plan_image
from oci_builder.registry import push_archive

ENVOY_CONFIG = "application/vnd.module.wasm.config.v1+json"
ENVOY_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
CLI = str(Path(sys.executable).parent / "oci-tar-builder")


def make(directory: Path, wasm: Path, fmt: Format) -> Path:
    plan = plan_image(
        BuildRequest(name="plugin", repo="localhost:5000/istio", modules=[str(wasm)], format=fmt)
    )
    path = directory / f"plugin-{fmt.value}.tar"
    build([plan], path)
    return path


def test_envoy_oci_variant_as_istio_reads_it(tmp_path: Path, hello_wasm: Path) -> None:
    archive = load(make(tmp_path, hello_wasm, Format.ENVOY))
    manifest = archive.manifest()
    assert manifest["config"]["mediaType"] == ENVOY_CONFIG
    assert manifest["artifactType"] == ENVOY_CONFIG
    assert len(manifest["layers"]) == 2, "Istio refuses an oci-variant image without exactly two layers"
    (content,) = [layer for layer in manifest["layers"] if layer["mediaType"] == ENVOY_LAYER]
    assert archive.blob(content["digest"]) == hello_wasm.read_bytes()
    (runtime,) = [layer for layer in manifest["layers"] if layer["mediaType"] == ENVOY_CONFIG]
    assert json.loads(archive.blob(runtime["digest"])) == {"type": "envoy_proxy"}
    assert runtime["digest"] == manifest["config"]["digest"]
    titles = {layer["annotations"]["org.opencontainers.image.title"] for layer in manifest["layers"]}
    assert titles == {"runtime-config.json", "plugin.wasm"}


def test_envoy_compat_variant_as_istio_reads_it(tmp_path: Path, hello_wasm: Path) -> None:
    archive = load(make(tmp_path, hello_wasm, Format.ENVOY_COMPAT))
    manifest = archive.manifest()
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    tar_bytes = gzip.decompress(archive.blob(layer["digest"]))
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        (member,) = tar.getmembers()
        assert member.name == "plugin.wasm"
        data = tar.extractfile(member)
        assert data is not None and data.read() == hello_wasm.read_bytes()
    config = archive.config()
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert "artifactType" not in manifest


def test_envoy_compat_is_reproducible(tmp_path: Path, hello_wasm: Path) -> None:
    outputs = []
    for where in ("a", "b"):
        (tmp_path / where).mkdir()
        outputs.append(make(tmp_path / where, hello_wasm, Format.ENVOY_COMPAT).read_bytes())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("fmt", [Format.ENVOY, Format.ENVOY_COMPAT], ids=lambda f: f.value)
def test_envoy_images_push_and_read_back(
    tmp_path: Path, hello_wasm: Path, registry: Registry, fmt: Format
) -> None:
    path = make(tmp_path, hello_wasm, fmt)
    (pushed,) = push_archive(path, [f"{registry.host}/istio/{fmt.value}:v1"])
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/istio/{fmt.value}:v1")
    assert "sha256:" + hashlib.sha256(raw.stdout.encode()).hexdigest() == pushed.digest
    back = tmp_path / "back"
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/istio/{fmt.value}:v1", f"dir:{back}")
    layers = json.loads(raw.stdout)["layers"]
    archive = load(path)
    for layer in layers:
        assert (back / layer["digest"].split(":")[1]).read_bytes() == archive.blob(layer["digest"])


def test_artifact_type_on_artifacts_only(tmp_path: Path, hello_wasm: Path) -> None:
    artifact = load(make(tmp_path, hello_wasm, Format.ARTIFACT))
    assert artifact.manifest()["artifactType"] == "application/vnd.wasm.config.v0+json"
    assert artifact.index["manifests"][0]["artifactType"] == "application/vnd.wasm.config.v0+json"
    for fmt in (Format.IMAGE, Format.ROOTFS):
        image = load(make(tmp_path, hello_wasm, fmt))
        assert "artifactType" not in image.manifest()
        assert "artifactType" not in image.index["manifests"][0]


def test_standard_annotations_from_the_cli(tmp_path: Path, hello_wasm: Path) -> None:
    result = subprocess.run(
        [CLI, "-n", "app", "-m", str(hello_wasm), "-o", str(tmp_path / "a.tar"), "--as-artifact",
         "--title", "Hello", "--description", "says hello", "--image-version", "1.2.3",
         "--source", "https://example.com/app", "--revision", "abc123", "--created", "2024-05-06T07:08:09Z",
         "--annotation", "org.opencontainers.image.title=Explicit wins"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    annotations = load(tmp_path / "a.tar").manifest()["annotations"]
    prefix = "org.opencontainers.image."
    assert {k.removeprefix(prefix): v for k, v in annotations.items() if k.startswith(prefix)} == {
        "title": "Explicit wins",
        "description": "says hello",
        "version": "1.2.3",
        "source": "https://example.com/app",
        "revision": "abc123",
        "created": "2024-05-06T07:08:09Z",
        "ref.name": "latest",
    }


def test_envoy_formats_take_one_module_and_no_labels(tmp_path: Path, hello_wasm: Path) -> None:
    base = [CLI, "-n", "p", "-o", str(tmp_path / "p.tar")]
    two = subprocess.run([*base, "--format", "envoy", "-m", str(hello_wasm), "-m", str(hello_wasm)],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert two.returncode == 2
    assert "--format envoy: takes exactly one wasm module" in two.stderr
    labels = subprocess.run([*base, "--format", "envoy", "-m", str(hello_wasm), "--label", "a=b"],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert labels.returncode == 2
    assert "--label: the envoy format has no image config" in labels.stderr
    assert not (tmp_path / "p.tar").exists()


def test_envoy_compat_refuses_a_plugin_it_would_gzip_in_memory_past_its_limit(tmp_path: Path) -> None:
    from oci_builder.errors import InputError
    from oci_builder.formats import ENVOY_COMPAT_MAX

    size = ENVOY_COMPAT_MAX + 1024
    big = tmp_path / "big.wasm"
    content = size - 8 - 1 - 5  # one custom section, its size a LEB128 padded to 5 bytes
    with big.open("wb") as f:
        f.write(
            b"\0asm\x01\0\0\0\0"
            + bytes([(content >> (7 * i)) & 0x7F | (0x80 if i < 4 else 0) for i in range(5)])
        )
        f.write(b"\x01x")
        f.truncate(size)  # sparse: the test costs no disk
    with pytest.raises(InputError, match="envoy-compat compresses the plugin in memory"):
        plan_image(BuildRequest(name="big", modules=[str(big)], format=Format.ENVOY_COMPAT))
