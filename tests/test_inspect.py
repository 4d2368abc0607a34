"""`inspect`: regctl-style text and JSON for every image in an archive, from ours and other tools' layouts."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from realtools import jco_wit, skopeo, wit_imports_exports
from tamper import Editable, blob_path, build_with_cli

from oci_builder import BuildRequest, BuildResult, build, plan_image
from oci_builder.cli import main
from oci_builder.formats import Format
from oci_builder.progress import human_size
from oci_builder.spec import MEDIA_TYPE_INDEX


def inspect(capsys: pytest.CaptureFixture[str], path: Path, *flags: str) -> str:
    capsys.readouterr()
    status = main(["inspect", str(path), *flags])
    out, err = capsys.readouterr()
    assert (status, err) == (0, ""), err
    return out


def inspect_json(capsys: pytest.CaptureFixture[str], path: Path) -> list[dict[str, Any]]:
    document = json.loads(inspect(capsys, path, "--json"))
    assert document["archive"] == str(path)
    images: list[dict[str, Any]] = document["images"]
    return images


def fields(block: str) -> list[tuple[str, str]]:
    """(label, value) for each `Label:   value` line, in order, labels with their indentation."""
    out = []
    for line in block.splitlines():
        match = re.fullmatch(r"( *)([^:]+(?::[^:]+)*?):(?: +(.*))?", line)
        if match and match[3] is not None:
            out.append((match[1] + match[2], match[3]))
    return out


@pytest.fixture
def two_tags(tmp_path: Path, hello_wasm: Path) -> BuildResult:
    request = BuildRequest(
        name="hello", repo="registry.test/team", tags=("1.0", "latest"), modules=[str(hello_wasm)]
    )
    return build([plan_image(request)], tmp_path / "hello.tar")


def test_text_shows_each_image_like_regctl(capsys: pytest.CaptureFixture[str], two_tags: BuildResult) -> None:
    assert two_tags.path is not None
    image = two_tags.images[0]
    (layer,) = image.layers
    text = inspect(capsys, two_tags.path)
    blocks = text.split("\n\nName:")
    assert len(blocks) == 2
    first = fields(blocks[0])
    assert first[:3] == [
        ("Name", "registry.test/team/hello:1.0"),
        ("MediaType", "application/vnd.oci.image.manifest.v1+json"),
        ("Digest", image.manifest.digest),
    ]
    assert ("  io.containerd.image.name", "registry.test/team/hello:1.0") in first
    assert ("  org.opencontainers.image.ref.name", "1.0") in first
    assert ("Platform", "wasip1/wasm") in first
    assert ("Total Size", human_size(layer.size)) in first
    config_at = blocks[0].index("\nConfig:\n")
    layers_at = blocks[0].index("\nLayers:\n")
    assert fields(blocks[0][config_at:layers_at]) == [
        ("  Digest", image.config.digest),
        ("  MediaType", image.config.media_type),
        ("  Size", human_size(image.config.size)),
    ]
    assert fields(blocks[0][layers_at:]) == [
        ("  Digest", layer.digest),
        ("  MediaType", "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"),
        ("  Size", human_size(layer.size)),
    ]
    second = fields("Name:" + blocks[1])
    assert second[0] == ("Name", "registry.test/team/hello:latest")
    assert ("  org.opencontainers.image.ref.name", "latest") in second  # under Index Annotations
    value_columns = {line.index(value) for line in text.splitlines() for _, value in fields(line)}
    assert len(value_columns) == 1, "values are not aligned in one column"


def test_json_says_what_the_build_wrote(capsys: pytest.CaptureFixture[str], two_tags: BuildResult) -> None:
    assert two_tags.path is not None
    image = two_tags.images[0]
    images = inspect_json(capsys, two_tags.path)
    assert [i["name"] for i in images] == list(image.references)
    for item in images:
        assert item["digest"] == image.manifest.digest
        assert item["size"] == image.manifest.size
        assert item["platform"] == {"os": "wasip1", "architecture": "wasm"}
        assert item["config"] == image.config.to_json()
        assert item["layers"] == [layer.to_json() for layer in image.layers]
        assert item["totalSize"] == sum(layer.size for layer in image.layers)
        assert "wasm" not in item
    assert images[1]["indexAnnotations"]["org.opencontainers.image.ref.name"] == "latest"
    assert images[1]["annotations"]["org.opencontainers.image.ref.name"] == "1.0"


def test_a_component_artifact_shows_its_world(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, component_wasm: Path
) -> None:
    path = build_with_cli(
        tmp_path / "svc.tar", "-n", "svc", "-r", "ghcr.io/me", "-a", "-m", str(component_wasm)
    )
    imports, exports = wit_imports_exports(jco_wit(component_wasm))  # jco's reading, not ours
    (image,) = inspect_json(capsys, path)
    wasm = image["wasm"]
    assert (wasm["os"], wasm["architecture"]) == ("wasip2", "wasm")
    assert sorted(wasm["component"]["imports"]) == sorted(imports)
    assert sorted(wasm["component"]["exports"]) == sorted(exports)
    assert image["layers"][0]["mediaType"] == "application/wasm"
    text = inspect(capsys, path)
    size = component_wasm.stat().st_size
    assert f"Total Size:                          {human_size(size)} ({size} bytes)\n" in text
    section = text[text.index("\nWasm:\n") : text.index("\nConfig:\n")]
    assert ("  OS", "wasip2") in fields(section) and ("  Kind", "component") in fields(section)
    listed = [line.strip() for line in section.splitlines() if line.startswith("    ")]
    assert listed == wasm["component"]["imports"] + wasm["component"]["exports"]


def test_a_module_artifact_says_it_is_a_core_module(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, hello_wasm: Path
) -> None:
    result = build(
        [plan_image(BuildRequest(name="m", modules=[str(hello_wasm)], format=Format.ARTIFACT))],
        tmp_path / "m.tar",
    )
    assert result.path is not None
    (image,) = inspect_json(capsys, result.path)
    assert image["wasm"] == {"os": "wasip1", "architecture": "wasm", "component": None}
    assert ("  Kind", "core module") in fields(inspect(capsys, result.path))


def test_other_tools_layouts_are_shown(
    capsys: pytest.CaptureFixture[str], two_tags: BuildResult, tmp_path: Path
) -> None:
    assert two_tags.path is not None
    theirs = tmp_path / "skopeo.tar"
    skopeo("copy", "--quiet", f"oci-archive:{two_tags.path}:latest", f"oci-archive:{theirs}:copied")
    (image,) = inspect_json(capsys, theirs)
    assert image["name"] == "copied"  # skopeo names by org.opencontainers.image.ref.name only
    assert image["indexAnnotations"] == {"org.opencontainers.image.ref.name": "copied"}
    assert image["platform"] == {
        "os": "wasip1",
        "architecture": "wasm",
    }  # not in its index: read from the config
    assert image["digest"] == two_tags.images[0].manifest.digest


def test_a_nested_index_lists_its_manifests(
    capsys: pytest.CaptureFixture[str], two_tags: BuildResult, tmp_path: Path
) -> None:
    assert two_tags.path is not None
    edit = Editable(two_tags.path)
    inner = edit.files["index.json"]
    digest = edit.put_blob(inner)
    outer = {
        "mediaType": MEDIA_TYPE_INDEX,
        "digest": digest,
        "size": len(inner),
        "annotations": {"org.opencontainers.image.ref.name": "all"},
    }
    edit.set_json("index.json", {"schemaVersion": 2, "manifests": [outer]})
    path = edit.save(tmp_path / "nested.tar")
    (image,) = inspect_json(capsys, path)
    assert (image["name"], image["mediaType"], image["digest"]) == ("all", MEDIA_TYPE_INDEX, digest)
    assert [m["name"] for m in image["manifests"]] == list(two_tags.images[0].references)
    assert image["manifests"][0]["layers"] == [layer.to_json() for layer in two_tags.images[0].layers]
    text = inspect(capsys, path)
    assert "\nManifests:\n\n  Name:" in text
    assert f"  Digest:                              {two_tags.images[0].manifest.digest}\n" in text


def test_a_tampered_manifest_is_an_error(
    capsys: pytest.CaptureFixture[str], two_tags: BuildResult, tmp_path: Path
) -> None:
    assert two_tags.path is not None
    edit = Editable(two_tags.path)
    digest = edit.manifest_digest()
    edit.files[blob_path(digest)] = edit.blob(digest).replace(b'"1.0"', b'"1.1"')
    path = edit.save(tmp_path / "t.tar")
    capsys.readouterr()
    assert main(["inspect", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    actual = "sha256:" + hashlib.sha256(edit.blob(digest)).hexdigest()
    assert err == (
        f"oci-tar-builder: error: {path}: {blob_path(digest)}: content does not match digest {digest}: "
        f"it hashes to {actual}\n"
    )
