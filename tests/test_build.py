"""What each format writes, checked field by field against REFERENCE.md section 1, through the library API."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from layout import load
from realtools import CompileWat
from verifyhelp import assert_verifies

from oci_builder import BuildRequest, Format, build, plan_image
from oci_builder.builder import created_from_environment, default_output, parse_created
from oci_builder.errors import InputError, UsageError

RUNWASI_LAYER = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"
EPOCH = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_runwasi_image(tmp_path: Path, hello_wasm: Path, core_module_wat: CompileWat) -> None:
    other = core_module_wat('(module (func (export "_start")))', "other")
    extra = tmp_path / "settings.json"
    extra.write_text('{"debug": true}')
    plan = plan_image(
        BuildRequest(
            name="wasi-demo-oci",
            repo="ghcr.io/containerd/runwasi",
            tags=["latest"],
            modules=[str(hello_wasm), str(other)],
            layers=[f"application/vnd.example.settings+json={extra}"],
        )
    )
    result = build([plan], tmp_path / "img.tar")
    archive = load(tmp_path / "img.tar")
    ref = "ghcr.io/containerd/runwasi/wasi-demo-oci:latest"

    assert archive.json("oci-layout") == {"imageLayoutVersion": "1.0.0"}
    (entry,) = archive.index["manifests"]
    assert archive.index["schemaVersion"] == 2
    assert archive.index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert entry["platform"] == {"os": "wasip1", "architecture": "wasm"}
    names = {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": "latest"}
    assert entry["annotations"] == names
    assert entry["digest"] == result.images[0].manifest.digest

    manifest = archive.manifest()
    assert manifest["annotations"] == names
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    inputs = [hello_wasm.read_bytes(), other.read_bytes(), extra.read_bytes()]
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        RUNWASI_LAYER,
        RUNWASI_LAYER,
        "application/vnd.example.settings+json",
    ]
    assert [archive.blob(layer["digest"]) for layer in manifest["layers"]] == inputs
    assert [layer["size"] for layer in manifest["layers"]] == [len(b) for b in inputs]

    config = archive.config()
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    expected_label = sha256_hex("".join(sha256_hex(b) for b in inputs).encode())
    assert config == {
        "architecture": "wasm",
        "os": "wasip1",
        "config": {
            "Entrypoint": ["wasi-demo-oci.wasm"],
            "Labels": {"containerd.runwasi.layers": expected_label},
        },
        "rootfs": {"type": "layers", "diff_ids": []},
    }

    (docker,) = archive.json("manifest.json")
    assert docker["RepoTags"] == [ref]
    assert docker["Config"] == "blobs/sha256/" + manifest["config"]["digest"].split(":")[1]
    assert docker["Layers"] == [
        "blobs/sha256/" + layer["digest"].split(":")[1] for layer in manifest["layers"]
    ]


def test_artifact_of_a_module(tmp_path: Path, hello_wasm: Path) -> None:
    plan = plan_image(
        BuildRequest(
            name="app",
            repo="localhost:5000",
            modules=[str(hello_wasm)],
            format=Format.ARTIFACT,
            created=EPOCH,
        )
    )
    build([plan], tmp_path / "a.tar")
    archive = load(tmp_path / "a.tar")
    manifest = archive.manifest()
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/wasm"
    assert archive.blob(layer["digest"]) == hello_wasm.read_bytes()
    assert manifest["config"]["mediaType"] == "application/vnd.wasm.config.v0+json"
    assert archive.config() == {
        "created": "2024-05-06T07:08:09Z",
        "author": None,
        "architecture": "wasm",
        "os": "wasip1",
        "layerDigests": [layer["digest"]],
        "component": None,
    }
    assert archive.index["manifests"][0]["platform"] == {"os": "wasip1", "architecture": "wasm"}


def test_artifact_without_a_time_is_created_now(tmp_path: Path, hello_wasm: Path) -> None:
    plan = plan_image(BuildRequest(name="app", modules=[str(hello_wasm)], format=Format.ARTIFACT))
    before = datetime.now(UTC).replace(microsecond=0)
    build([plan], tmp_path / "a.tar")
    created = datetime.fromisoformat(load(tmp_path / "a.tar").config()["created"].replace("Z", "+00:00"))
    assert before <= created <= datetime.now(UTC)


def test_artifact_of_a_component_lists_its_world(tmp_path: Path, component_wasm: Path) -> None:
    plan = plan_image(
        BuildRequest(name="svc", modules=[str(component_wasm)], format=Format.ARTIFACT, created=EPOCH)
    )
    build([plan], tmp_path / "c.tar")
    archive = load(tmp_path / "c.tar")
    config = archive.config()
    assert config["os"] == "wasip2"
    assert archive.index["manifests"][0]["platform"] == {"os": "wasip2", "architecture": "wasm"}
    component = config["component"]
    assert set(component) == {"exports", "imports", "target"}
    assert component["target"] is None
    assert any(name.startswith("wasi:cli/") for name in component["imports"])
    assert component["exports"], "a component built from a world with exports lists them"


def test_rootfs_image(tmp_path: Path, hello_wasm: Path) -> None:
    plan = plan_image(
        BuildRequest(
            name="hello", repo="ghcr.io/me", modules=[str(hello_wasm)], format=Format.ROOTFS, created=EPOCH
        )
    )
    build([plan], tmp_path / "r.tar")
    archive = load(tmp_path / "r.tar")
    manifest = archive.manifest()
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    with tarfile.open(fileobj=io.BytesIO(archive.blob(layer["digest"]))) as inner:
        (member,) = inner.getmembers()
        assert (member.name, member.mode, member.uid, member.gid) == ("hello.wasm", 0o755, 0, 0)
        assert member.mtime == int(EPOCH.timestamp())
        f = inner.extractfile(member)
        assert f is not None and f.read() == hello_wasm.read_bytes()
    config = archive.config()
    assert config["config"] == {"Entrypoint": ["/hello.wasm"]}
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"]]}
    assert (config["os"], config["architecture"], config["created"]) == (
        "wasip1",
        "wasm",
        "2024-05-06T07:08:09Z",
    )


def test_components_directory_is_read_in_name_order_and_skips_other_files(
    tmp_path: Path, core_module_wat: CompileWat
) -> None:
    components = tmp_path / "components"
    components.mkdir()
    for stem in ("zeta", "alpha", "mid"):
        core_module_wat(f'(module (func (export "{stem}")))', stem).rename(components / f"{stem}.wasm")
    (components / "README.md").write_text("not wasm")
    (components / "nested.wasm").mkdir()
    warnings: list[str] = []
    plan = plan_image(BuildRequest(name="multi", components=str(components)), warn=warnings.append)
    assert [layer.path.name for layer in plan.layers] == ["alpha.wasm", "mid.wasm", "zeta.wasm"]
    assert len(warnings) == 2
    assert any("skipping README.md" in w for w in warnings)
    assert any("skipping nested.wasm" in w for w in warnings)


def test_extra_tags_are_index_entries_of_one_manifest(tmp_path: Path, hello_wasm: Path) -> None:
    plan = plan_image(
        BuildRequest(name="app", repo="ghcr.io/me", tags=["1.0", "latest"], modules=[str(hello_wasm)])
    )
    build([plan], tmp_path / "t.tar")
    archive = load(tmp_path / "t.tar")
    entries = archive.index["manifests"]
    assert [e["annotations"]["org.opencontainers.image.ref.name"] for e in entries] == ["1.0", "latest"]
    assert [e["annotations"]["io.containerd.image.name"] for e in entries] == [
        "ghcr.io/me/app:1.0",
        "ghcr.io/me/app:latest",
    ]
    assert len({e["digest"] for e in entries}) == 1
    assert archive.json("manifest.json")[0]["RepoTags"] == ["ghcr.io/me/app:1.0", "ghcr.io/me/app:latest"]


def test_labels_and_annotations(tmp_path: Path, hello_wasm: Path) -> None:
    plan = plan_image(
        BuildRequest(
            name="app",
            modules=[str(hello_wasm)],
            labels=["org.example.team=wasm"],
            annotations=["org.opencontainers.image.source=https://example.com/app", "empty="],
        )
    )
    build([plan], tmp_path / "l.tar")
    archive = load(tmp_path / "l.tar")
    assert archive.config()["config"]["Labels"]["org.example.team"] == "wasm"
    annotations = archive.manifest()["annotations"]
    assert annotations["org.opencontainers.image.source"] == "https://example.com/app"
    assert annotations["empty"] == ""


def test_same_layer_twice_is_stored_once(tmp_path: Path, hello_wasm: Path) -> None:
    plan = plan_image(BuildRequest(name="twice", modules=[str(hello_wasm), str(hello_wasm)]))
    build([plan], tmp_path / "twice.tar")
    archive = load(tmp_path / "twice.tar")
    digests = [layer["digest"] for layer in archive.manifest()["layers"]]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert len(archive.names) == len(set(archive.names))


def test_reproducible_across_days_with_a_fixed_time(tmp_path: Path, hello_wasm: Path) -> None:
    for fmt in Format:
        plan = plan_image(BuildRequest(name="app", modules=[str(hello_wasm)], format=fmt, created=EPOCH))
        monday, tuesday = io.BytesIO(), io.BytesIO()
        build([plan], monday, now=datetime(2030, 1, 1, tzinfo=UTC))
        build([plan], tuesday, now=datetime(2030, 1, 2, 13, 14, 15, tzinfo=UTC))
        assert monday.getvalue() == tuesday.getvalue(), fmt


def test_build_to_a_binary_file_object(hello_wasm: Path) -> None:
    out = io.BytesIO()
    result = build([plan_image(BuildRequest(name="app", modules=[str(hello_wasm)]))], out)
    assert result.path is None
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert "index.json" in tar.getnames()


def test_created_sources() -> None:
    assert created_from_environment("2024-05-06T07:08:09Z", {"SOURCE_DATE_EPOCH": "1"}) == EPOCH
    assert created_from_environment(None, {"SOURCE_DATE_EPOCH": str(int(EPOCH.timestamp()))}) == EPOCH
    assert created_from_environment(None, {}) is None
    assert parse_created("2024-05-06T09:08:09.5+02:00") == EPOCH
    for bad in ("yesterday", "2024-05-06T07:08:09", "-5"):
        with pytest.raises(UsageError):
            parse_created(bad)
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
        created_from_environment(None, {"SOURCE_DATE_EPOCH": "soon"})


def test_default_output(tmp_path: Path, hello_wasm: Path) -> None:
    plan = plan_image(BuildRequest(name="team/app", modules=[str(hello_wasm)]))
    assert default_output(plan, None, tmp_path) == tmp_path / "app.tar"
    assert default_output(plan, ".", tmp_path) == tmp_path / "app.tar"
    assert default_output(plan, "dist/x.tar", tmp_path) == tmp_path / "dist" / "x.tar"


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.value)
def test_kernel_copy_and_plain_copy_write_the_same_bytes(tmp_path: Path, fmt: Format) -> None:
    """A file destination takes the copy_file_range path, a BytesIO the plain one: same archive."""
    module = tmp_path / "big.wasm"
    # a custom section of (2 << 20) + 3 bytes: its name "x", then random bytes
    module.write_bytes(b"\0asm\x01\0\0\0" + b"\0\x83\x80\x80\x01\x01x" + os.urandom((2 << 20) + 1))
    plan = plan_image(BuildRequest(name="big", modules=[str(module)], format=fmt, created=EPOCH))
    in_memory = io.BytesIO()
    build([plan], in_memory)
    build([plan], tmp_path / "big.tar")
    assert (tmp_path / "big.tar").read_bytes() == in_memory.getvalue()
    assert_verifies(tmp_path / "big.tar")


def test_a_module_that_changes_after_planning_fails_the_build(tmp_path: Path, hello_wasm: Path) -> None:
    module = tmp_path / "app.wasm"
    module.write_bytes(hello_wasm.read_bytes())
    plan = plan_image(BuildRequest(name="app", modules=[str(module)]))
    with module.open("ab") as f:
        f.write(b"\0" * 10)
    with pytest.raises(InputError, match="the file changed: it has"):
        build([plan], tmp_path / "app.tar")
    assert not any(p.suffix == ".tmp" or p.name == "app.tar" for p in tmp_path.iterdir())


def test_the_package_exports_load_on_first_use() -> None:
    import oci_builder

    assert set(oci_builder.__all__) == {*oci_builder._EXPORTS, "__version__"}
    for name in oci_builder._EXPORTS:
        assert getattr(oci_builder, name).__name__ == name
    with pytest.raises(AttributeError):
        _ = oci_builder.no_such_thing
