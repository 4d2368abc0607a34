"""Our archives in the hands of consumers no one here wrote: skopeo, a real registry, containerd, umoci."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from layout import Layout, load
from realtools import Containerd, Registry, run, skopeo

from oci_builder import BuildRequest, Format, build, plan_image

MODES = [Format.IMAGE, Format.ARTIFACT, Format.ROOTFS]


def make(tmp_path: Path, wasm: Path, fmt: Format, name: str = "interop") -> tuple[Path, Layout]:
    plan = plan_image(
        BuildRequest(name=name, repo="localhost:5000/wasm", tags=["v1"], modules=[str(wasm)], format=fmt)
    )
    path = tmp_path / f"{name}-{fmt.value}.tar"
    build([plan], path)
    return path, load(path)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("fmt", MODES, ids=lambda f: f.value)
def test_skopeo_reads_the_manifest_index_json_names(tmp_path: Path, hello_wasm: Path, fmt: Format) -> None:
    path, layout = make(tmp_path, hello_wasm, fmt)
    raw = skopeo("inspect", "--raw", f"oci-archive:{path}").stdout.encode()
    assert sha256(raw) == layout.index["manifests"][0]["digest"]
    assert raw == layout.blob(layout.index["manifests"][0]["digest"])


@pytest.mark.parametrize("fmt", MODES, ids=lambda f: f.value)
def test_skopeo_copy_to_an_oci_layout_keeps_digests_and_bytes(
    tmp_path: Path, hello_wasm: Path, fmt: Format
) -> None:
    path, layout = make(tmp_path, hello_wasm, fmt)
    out = tmp_path / "layout"
    skopeo("copy", "--preserve-digests", f"oci-archive:{path}", f"oci:{out}:copied")
    index = json.loads((out / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["digest"] == layout.index["manifests"][0]["digest"]
    manifest = layout.manifest()
    for descriptor in [manifest["config"], *manifest["layers"]]:
        copied = (out / "blobs" / "sha256" / descriptor["digest"].split(":")[1]).read_bytes()
        assert copied == layout.blob(descriptor["digest"])


@pytest.mark.parametrize("fmt", MODES, ids=lambda f: f.value)
def test_through_a_real_registry_and_back(
    tmp_path: Path, hello_wasm: Path, registry: Registry, fmt: Format
) -> None:
    path, layout = make(tmp_path, hello_wasm, fmt)
    target = f"docker://{registry.host}/interop/{fmt.value}:v1"
    skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"oci-archive:{path}", target)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", target).stdout.encode()
    assert sha256(raw) == layout.index["manifests"][0]["digest"]
    back = tmp_path / "back"
    skopeo("copy", "--src-tls-verify=false", target, f"dir:{back}")
    for layer in layout.manifest()["layers"]:
        assert (back / layer["digest"].split(":")[1]).read_bytes() == layout.blob(layer["digest"])


@pytest.mark.parametrize("fmt", [Format.IMAGE, Format.ARTIFACT], ids=lambda f: f.value)
def test_containerd_imports_under_the_right_name_with_every_blob(
    tmp_path: Path, hello_wasm: Path, containerd: Containerd, fmt: Format
) -> None:
    path, layout = make(tmp_path, hello_wasm, fmt, name=f"ctr-{fmt.value}")
    containerd.ctr("images", "import", "--all-platforms", "--no-unpack", str(path))
    name = f"localhost:5000/wasm/ctr-{fmt.value}:v1"
    listing = containerd.ctr("images", "ls", "-q").stdout.split()
    assert name in listing
    manifest_digest = layout.index["manifests"][0]["digest"]
    check = containerd.ctr("images", "check").stdout
    assert name in check
    manifest = layout.manifest()
    for descriptor in [{"digest": manifest_digest}, manifest["config"], *manifest["layers"]]:
        assert containerd.ctr_bytes("content", "get", descriptor["digest"]) == layout.blob(
            descriptor["digest"]
        )


def test_rootfs_image_is_accepted_by_umoci_and_oci_image_tool(tmp_path: Path, hello_wasm: Path) -> None:
    path, _ = make(tmp_path, hello_wasm, Format.ROOTFS, name="rootfs")
    extracted = tmp_path / "layout"
    extracted.mkdir()
    run(["tar", "-xf", str(path), "-C", str(extracted)])
    validated = run(["oci-image-tool", "validate", "--type", "image", "--ref", "name=v1", str(extracted)])
    assert "Validation succeeded" in validated.stdout + validated.stderr
    rootfs = tmp_path / "rootfs"
    run(["umoci", "raw", "unpack", "--rootless", "--image", f"{extracted}:v1", str(rootfs)])
    unpacked = rootfs / "rootfs.wasm"
    assert unpacked.read_bytes() == hello_wasm.read_bytes()
    assert unpacked.stat().st_mode & 0o777 == 0o755
