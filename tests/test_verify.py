"""`verify`: sound archives (ours, skopeo's, buildah's) pass; each kind of damage is reported, all of it."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from layout import load
from realtools import require_tool, skopeo
from tamper import Editable, blob_path, build_with_cli
from verifyhelp import assert_verifies

from oci_builder.cli import main
from oci_builder.progress import human_size
from oci_builder.spec import MEDIA_TYPE_INDEX

RUNWASI_LAYER = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"
GZIP_TAR = "application/vnd.oci.image.layer.v1.tar+gzip"


def verify(capsys: pytest.CaptureFixture[str], path: Path, *flags: str) -> tuple[int, list[str], str]:
    capsys.readouterr()  # what building printed
    status = main(["verify", str(path), *flags])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


def problems_of(capsys: pytest.CaptureFixture[str], path: Path) -> list[str]:
    status, lines, err = verify(capsys, path)
    assert status == 1, lines
    assert err == f"oci-tar-builder: {path}: {len(lines)} problem{'s' if len(lines) != 1 else ''}\n"
    return lines


def the_problem(capsys: pytest.CaptureFixture[str], path: Path, *fragments: str) -> str:
    """The one problem verify reports, checked to hold every fragment."""
    lines = problems_of(capsys, path)
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def tar_of(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture
def image(tmp_path: Path, hello_wasm: Path) -> Path:
    return build_with_cli(
        tmp_path / "image.tar",
        "-n",
        "hello",
        "-r",
        "registry.test/team",
        "-t",
        "1",
        "-t",
        "2",
        "-m",
        str(hello_wasm),
    )


@pytest.fixture
def artifact(tmp_path: Path, component_wasm: Path) -> Path:
    return build_with_cli(tmp_path / "artifact.tar", "-n", "service", "-a", "-m", str(component_wasm))


# Sound archives --------------------------------------------------------------------------------------


def _inputs(tmp_path: Path) -> dict[str, str]:
    gz = tmp_path / "layer.tar.gz"
    gz.write_bytes(gzip.compress(tar_of("data.txt", b"data " * 1000)))
    multi = tmp_path / "multi.tar.gz"
    multi.write_bytes(gzip.compress(tar_of("a.txt", b"a" * 3000))[:] + gzip.compress(b"\0" * 1024))
    plain = tmp_path / "layer.tar"
    plain.write_bytes(tar_of("plain.txt", b"plain"))
    return {"gz": str(gz), "multi": str(multi), "plain": str(plain)}


@pytest.mark.parametrize(
    "args",
    [
        ["-n", "app", "-m", "{hello}"],
        ["-n", "app", "-r", "ghcr.io/me", "-t", "1.0", "-t", "latest", "-m", "{hello}", "-m", "{hello}"],
        ["-n", "app", "-a", "-m", "{hello}"],
        ["-n", "app", "--rootfs", "-m", "{hello}"],
        ["-n", "app", "-m", "{hello}", "--layer", f"{GZIP_TAR}={{gz}}", "--layer", f"{GZIP_TAR}={{multi}}"],
        ["-n", "app", "-m", "{hello}", "--layer", "application/vnd.oci.image.layer.v1.tar={plain}"],
        ["-n", "app", "-a", "-m", "{component}"],
        [
            "-n",
            "app",
            "-m",
            "{component}",
            "--annotation",
            "org.opencontainers.image.created=2024-01-02T03:04:05Z",
        ],
    ],
    ids=[
        "image",
        "tags-and-layers",
        "artifact",
        "rootfs",
        "gzip-layers",
        "tar-layer",
        "component",
        "annotated",
    ],
)
def test_archives_we_build_verify_clean(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    hello_wasm: Path,
    component_wasm: Path,
    args: list[str],
) -> None:
    values = {"hello": str(hello_wasm), "component": str(component_wasm), **_inputs(tmp_path)}
    path = build_with_cli(tmp_path / "out.tar", *(arg.format(**values) for arg in args))
    capsys.readouterr()
    status, lines, err = verify(capsys, path)
    blobs = [name for name in load(path).files if name.startswith("blobs/")]
    assert (status, err) == (0, "")
    assert lines == [f"ok: {path} (1 image, {len(blobs)} blob{'s' if len(blobs) != 1 else ''} verified)"]


def test_archives_converted_by_skopeo_verify_clean(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, hello_wasm: Path, component_wasm: Path
) -> None:
    ours = build_with_cli(tmp_path / "ours.tar", "-n", "app", "-t", "v1", "-m", str(hello_wasm), "--rootfs")
    art = build_with_cli(tmp_path / "art.tar", "-n", "svc", "-t", "v2", "-a", "-m", str(component_wasm))
    for source, tag in ((ours, "v1"), (art, "v2")):
        theirs = tmp_path / f"skopeo-{tag}.tar"
        skopeo("copy", "--quiet", f"oci-archive:{source}:{tag}", f"oci-archive:{theirs}:theirs")
        assert load(theirs).index != load(source).index  # skopeo wrote its own layout
        assert_verifies(theirs)
    compressed = tmp_path / "skopeo-gzip.tar"
    skopeo("copy", "--quiet", "--dest-compress", f"oci-archive:{ours}:v1", f"oci-archive:{compressed}:gz")
    layout = load(compressed)
    (layer,) = layout.manifest()["layers"]
    assert layer["mediaType"] == GZIP_TAR
    result = assert_verifies(compressed)  # diff_ids checked against the gunzipped layer
    assert result.blobs == len([n for n in layout.files if n.startswith("blobs/")])
    capsys.readouterr()


@pytest.fixture
def buildah(tmp_path: Path) -> Iterator[list[str]]:
    """buildah with its own storage in the test's tmp dir (vfs: no kernel overlay, nothing host-wide)."""
    root = tmp_path / "buildah"
    base = [
        require_tool("buildah"),
        "--root",
        str(root / "root"),
        "--runroot",
        str(root / "run"),
        "--storage-driver",
        "vfs",
    ]
    yield base
    subprocess.run([*base, "rm", "--all"], capture_output=True, check=False, timeout=120)
    shutil.rmtree(root, ignore_errors=True)


def _buildah(base: list[str], *args: str) -> str:
    proc = subprocess.run([*base, *args], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"buildah {args} exited {proc.returncode}: {proc.stderr}"
    return proc.stdout.strip()


@pytest.mark.slow
def test_archives_made_by_buildah_verify_clean(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, hello_wasm: Path, buildah: list[str]
) -> None:
    container = _buildah(buildah, "from", "scratch")
    _buildah(buildah, "copy", container, str(hello_wasm), "/hello.wasm")
    _buildah(
        buildah, "config", "--entrypoint", '["/hello.wasm"]', "--annotation", "org.example.note=hi", container
    )
    plain, compressed = tmp_path / "buildah.tar", tmp_path / "buildah-gzip.tar"
    _buildah(buildah, "commit", container, f"oci-archive:{plain}:plain")
    _buildah(buildah, "commit", "--disable-compression=false", container, f"oci-archive:{compressed}:gz")
    assert load(compressed).manifest()["layers"][0]["mediaType"] == GZIP_TAR
    for path in (plain, compressed):
        status, lines, _ = verify(capsys, path)
        assert status == 0 and lines[0].startswith(f"ok: {path} (1 image, "), lines


# Damage, one kind at a time --------------------------------------------------------------------------


def test_a_tampered_layer_byte_is_reported_with_its_digest(
    capsys: pytest.CaptureFixture[str], image: Path, tmp_path: Path
) -> None:
    edit = Editable(image)
    layer = edit.layer_digest()
    data = bytearray(edit.blob(layer))
    data[len(data) // 2] ^= 0x01
    edit.files[blob_path(layer)] = bytes(data)
    problem = the_problem(capsys, edit.save(tmp_path / "t.tar"), layer, "does not match its digest")
    assert problem.startswith(f"manifest {edit.manifest_digest()} layers[0]: blob {layer} ")


def test_a_missing_blob_is_reported(capsys: pytest.CaptureFixture[str], image: Path, tmp_path: Path) -> None:
    edit = Editable(image)
    layer = edit.layer_digest()
    del edit.files[blob_path(layer)]
    lines = problems_of(capsys, edit.save(tmp_path / "t.tar"))
    assert lines == [
        f"manifest {edit.manifest_digest()} layers[0]: blob {layer} is missing from the archive",
        f"manifest.json[0]: {blob_path(layer)} is not in the archive",
    ]


def test_a_wrong_size_is_reported(capsys: pytest.CaptureFixture[str], image: Path, tmp_path: Path) -> None:
    edit = Editable(image)
    size = len(edit.blob(edit.layer_digest()))
    edit.edit_manifest(lambda m: m["layers"][0].update(size=size + 1))
    the_problem(capsys, edit.save(tmp_path / "t.tar"), f"has {size} bytes, the descriptor says {size + 1}")


@pytest.mark.parametrize("media_type", ["wasm", "application/", "application/wasm; charset=x", "a/b c", 7])
def test_a_media_type_outside_the_grammar_is_reported(
    capsys: pytest.CaptureFixture[str], image: Path, tmp_path: Path, media_type: Any
) -> None:
    edit = Editable(image)
    edit.edit_manifest(lambda m: m["layers"][0].update(mediaType=media_type))
    problem = the_problem(capsys, edit.save(tmp_path / "t.tar"), "layers[0]: mediaType")
    assert "is not a media type" in problem or "must be a string" in problem


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"digest": "sha256:ABC"}, "digest 'sha256:ABC': sha256 needs 64 lowercase hex digits"),
        ({"digest": "md5:" + "a" * 32}, "unsupported algorithm 'md5'"),
        ({"size": -1}, "size -1 is outside"),
        ({"size": True}, "size must be an integer, not boolean"),
        ({"annotations": {"k": 1}}, "annotation 'k' must be a string, not number"),
        ({"annotations": {"org.opencontainers.image.ref.name": "bad tag!"}}, "breaks the ref grammar"),
        ({"annotations": {"org.opencontainers.image.created": "yesterday"}}, "is not an RFC 3339 date-time"),
        ({"platform": {"os": "wasip1"}}, "platform: architecture is missing"),
        (
            {"platform": {"os": "wasip1", "architecture": "wasm", "os.features": "x"}},
            "os.features must be an array",
        ),
        ({"urls": "http://x"}, "urls must be an array of strings"),
        ({"data": "%%%"}, "data is not valid base64"),
        ({"artifactType": "x"}, "artifactType 'x' is not a media type"),
    ],
)
def test_index_descriptors_follow_the_grammars(
    capsys: pytest.CaptureFixture[str], image: Path, tmp_path: Path, change: dict[str, Any], fragment: str
) -> None:
    edit = Editable(image)
    index = edit.index
    index["manifests"][1].update(change)
    edit.set_json("index.json", index)
    lines = problems_of(capsys, edit.save(tmp_path / "t.tar"))
    assert any(line.startswith("index.json manifests[1]") and fragment in line for line in lines), lines


def test_required_fields_and_types_are_checked(
    capsys: pytest.CaptureFixture[str], image: Path, tmp_path: Path
) -> None:
    edit = Editable(image)

    def break_config(config: dict[str, Any]) -> None:
        del config["rootfs"], config["architecture"]
        config["os"] = 3
        config["config"]["Entrypoint"] = "hello.wasm"
        config["created"] = "1970-13-01T00:00:00Z"

    edit.edit_config(break_config)
    digest = edit.edit_manifest(lambda m: m.update(schemaVersion=3, mediaType=MEDIA_TYPE_INDEX))
    index = edit.index
    index["schemaVersion"] = "2"
    edit.set_json("index.json", index)
    lines = problems_of(capsys, edit.save(tmp_path / "t.tar"))
    config = f"manifest {digest} config"
    expected = [
        "index.json: schemaVersion must be 2, not '2'",
        f"manifest {digest}: schemaVersion must be 2, not 3",
        f"manifest {digest}: mediaType '{MEDIA_TYPE_INDEX}' is not the expected "
        "'application/vnd.oci.image.manifest.v1+json'",
        f"{config}: architecture is missing",
        f"{config}: os must be a string, not number",
        f"{config}: created '1970-13-01T00:00:00Z' is not an RFC 3339 date-time",
        f"{config} config: Entrypoint must be an array of strings, not string",
        f"{config}: os/architecture 3/None differ from the descriptor's platform wasip1/wasm",
        f"{config}: rootfs is missing",
    ]
    assert lines == expected


def test_an_empty_config_needs_an_artifact_type(
    capsys: pytest.CaptureFixture[str], image: Path, tmp_path: Path
) -> None:
    edit = Editable(image)
    empty = edit.put_blob(b"{}")
    edit.edit_manifest(
        lambda m: m.update(
            config={"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}
        )
    )
    del edit.files["manifest.json"]
    the_problem(
        capsys, edit.save(tmp_path / "t.tar"), "artifactType is required when config is the empty descriptor"
    )


def test_a_wasm_layer_must_be_webassembly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, hello_wasm: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not wasm at all")
    truncated = tmp_path / "truncated.wasm"
    truncated.write_bytes(hello_wasm.read_bytes()[:40])
    path = build_with_cli(
        tmp_path / "t.tar", "-n", "app", "-m", str(hello_wasm),
        "--layer", f"{RUNWASI_LAYER}={text}", "--layer", f"application/wasm={truncated}",
        "--layer", "application/vnd.wasm.content.layer.v1+data=" + str(text),
    )  # fmt: skip
    lines = problems_of(capsys, path)
    assert len(lines) == 2, lines
    assert (
        "layers[1]: wasm layer" in lines[0]
        and "does not start with the wasm magic: it starts with 6e6f7420" in lines[0]
    )
    assert "layers[2]: wasm layer" in lines[1] and "is not a valid WebAssembly binary: section" in lines[1]


def test_gzip_layers_are_checked_as_bounded_streams(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, hello_wasm: Path
) -> None:
    good = gzip.compress(tar_of("a", b"a" * 100))
    bomb = gzip.compress(b"\0" * (3 << 20))
    layers = {
        "corrupt": good[:20] + bytes(b ^ 0xFF for b in good[20:40]) + good[40:],
        "truncated": good[: len(good) // 2],
        "garbage": good + b"trailing junk",
        "empty": b"",
        "bomb": bomb,
    }
    args = ["-n", "app", "-m", str(hello_wasm)]
    for name, data in layers.items():
        (tmp_path / name).write_bytes(data)
        args += ["--layer", f"{GZIP_TAR}={tmp_path / name}"]
    path = build_with_cli(tmp_path / "t.tar", *args)
    status, lines, _ = verify(capsys, path, "--max-expanded-size", "2M")
    assert status == 1
    expected = [
        (1, "is not valid gzip: Error -3"),
        (2, "is truncated: the gzip stream does not end"),
        (3, "is not valid gzip after member 1"),
        (4, "is empty, not gzip"),
        (5, f"expands to more than the {human_size(2 << 20)} limit on uncompressed size"),
    ]
    assert len(lines) == len(expected), lines
    for line, (position, fragment) in zip(lines, expected, strict=True):
        assert f"layers[{position}]: gzip layer sha256:" in line and fragment in line, line
    assert verify(capsys, path, "--max-expanded-size", "4MiB")[1] == lines[:-1]


def test_max_expanded_size_must_be_a_size(capsys: pytest.CaptureFixture[str], image: Path) -> None:
    for bad in ("0", "lots", "-5", "1.5G"):
        assert main(["verify", str(image), "--max-expanded-size", bad]) == 2
        assert "is not a size" in capsys.readouterr().err


def test_rootfs_diff_ids_must_match_the_layers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, hello_wasm: Path
) -> None:
    path = build_with_cli(tmp_path / "rootfs.tar", "-n", "app", "--rootfs", "-m", str(hello_wasm))
    edit = Editable(path)
    layer = edit.layer_digest()
    wrong = "sha256:" + "0" * 64
    edit.edit_config(lambda c: c["rootfs"].update(diff_ids=[wrong]))
    the_problem(
        capsys, edit.save(tmp_path / "t.tar"), f"rootfs.diff_ids[0] is {wrong} but layer 0 unpacks to {layer}"
    )
    edit.edit_config(lambda c: c["rootfs"].update(diff_ids=[]))
    the_problem(capsys, edit.save(tmp_path / "t2.tar"), "rootfs.diff_ids has 0 entries for 1 layers")


def test_docker_manifest_json_must_agree_with_the_index(
    capsys: pytest.CaptureFixture[str], image: Path, tmp_path: Path
) -> None:
    edit = Editable(image)
    docker = edit.json("manifest.json")
    config = docker[0]["Config"]
    docker.append(
        {"Config": config, "RepoTags": ["registry.test/team/hello:3"], "Layers": docker[0]["Layers"]}
    )
    docker.append({"Config": config, "RepoTags": None, "Layers": []})
    docker.append({"Config": 5, "Layers": "x"})
    edit.set_json("manifest.json", docker)
    lines = problems_of(capsys, edit.save(tmp_path / "t.tar"))
    assert lines == [
        "manifest.json[1]: RepoTags 'registry.test/team/hello:3' is not an io.containerd.image.name of "
        "that image in index.json",
        "manifest.json[2]: its Config and Layers match no image manifest in index.json",
        "manifest.json[3]: Config must be a string, not number",
        "manifest.json[3]: Layers must be an array of strings, not string",
    ]
    edit.files["manifest.json"] = b'{"Config": "x"}'
    the_problem(capsys, edit.save(tmp_path / "t2.tar"), "manifest.json: must be a JSON array of objects")


def test_docker_repo_tags_may_be_docker_short_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, hello_wasm: Path
) -> None:
    path = build_with_cli(
        tmp_path / "hub.tar", "-n", "hello", "-r", "docker.io/library", "-m", str(hello_wasm)
    )
    edit = Editable(path)
    docker = edit.json("manifest.json")
    docker[0]["RepoTags"] = ["hello:latest"]
    edit.set_json("manifest.json", docker)
    assert_verifies(edit.save(tmp_path / "short.tar"))
    capsys.readouterr()


def test_an_artifact_config_must_describe_its_layer(
    capsys: pytest.CaptureFixture[str], artifact: Path, tmp_path: Path, hello_wasm: Path
) -> None:
    edit = Editable(artifact)
    layer = edit.layer_digest()
    edit.edit_config(lambda c: c["component"]["imports"].append("wasi:made/up@1.0.0"))
    the_problem(capsys, edit.save(tmp_path / "t.tar"), "component.imports", "differ from the layer's")
    edit.edit_config(lambda c: c.update(component=None, layerDigests=[layer, layer]))
    lines = problems_of(capsys, edit.save(tmp_path / "t2.tar"))
    assert [line.split("config: ", 1)[1] for line in lines] == [
        f"layerDigests {[layer, layer]} are not the manifest's layer digests",
        "component is null but the layer is a component",
    ]
    module = build_with_cli(tmp_path / "module.tar", "-n", "m", "-a", "-m", str(hello_wasm))
    edit = Editable(module)
    edit.edit_config(
        lambda c: c.update(component={"imports": [], "exports": [], "target": None}, os="wasip2")
    )
    lines = problems_of(capsys, edit.save(tmp_path / "t3.tar"))
    assert [line.split("config: ", 1)[1] for line in lines] == [
        "os/architecture wasip2/wasm differ from the descriptor's platform wasip1/wasm",
        "component is set but the layer is a core module",
    ]


def test_layout_files_are_checked(capsys: pytest.CaptureFixture[str], image: Path, tmp_path: Path) -> None:
    edit = Editable(image)
    del edit.files["oci-layout"]
    edit.files["blobs/sha256/not-a-digest"] = b"x"
    edit.files["blobs/sha256/" + "a" * 64] = b"unreferenced, and not what its name says"
    edit.files["index.json"] = edit.files["index.json"].replace(
        b'"schemaVersion":2', b'"schemaVersion":2,"schemaVersion":2'
    )
    lines = problems_of(capsys, edit.save(tmp_path / "t.tar"))
    assert lines[0] == "oci-layout: missing (image-layout.md requires it)"
    assert lines[1] == "index.json: duplicate key 'schemaVersion'"
    assert lines[2] == "manifest.json[0]: its Config and Layers match no image manifest in index.json"
    assert lines[3].startswith("blobs/sha256/not-a-digest: not a blob name: digest 'sha256:not-a-digest'")
    assert lines[4].startswith(f"blobs/sha256/{'a' * 64}: blob sha256:{'a' * 64} does not match its digest")
    assert len(lines) == 5


def test_nested_indexes_are_followed(capsys: pytest.CaptureFixture[str], image: Path, tmp_path: Path) -> None:
    edit = Editable(image)
    inner = edit.files["index.json"]
    inner_digest = edit.put_blob(inner)
    edit.set_json(
        "index.json",
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [{"mediaType": MEDIA_TYPE_INDEX, "digest": inner_digest, "size": len(inner)}],
        },
    )
    assert assert_verifies(edit.save(tmp_path / "nested.tar")).images == 1
    manifest_digest = edit.blob_json(inner_digest)["manifests"][0]["digest"]
    layer = edit.blob_json(manifest_digest)["layers"][0]["digest"]
    data = bytearray(edit.blob(layer))
    data[-1] ^= 0xFF
    edit.files[blob_path(layer)] = bytes(data)
    problem = the_problem(capsys, edit.save(tmp_path / "bad.tar"), layer, "does not match its digest")
    assert problem.startswith(f"manifest {manifest_digest} layers[0]: ")
    edit.set_json(
        "index.json", {"schemaVersion": 2, "manifests": [{"mediaType": "x/y", "digest": layer, "size": 1}]}
    )
    assert main(["inspect", str(edit.save(tmp_path / "odd.tar"))]) == 0


def test_every_problem_is_printed(capsys: pytest.CaptureFixture[str], image: Path, tmp_path: Path) -> None:
    edit = Editable(image)
    layer = edit.layer_digest()
    data = bytearray(edit.blob(layer))
    data[-1] ^= 0xFF
    edit.files[blob_path(layer)] = bytes(data)
    del edit.files["oci-layout"]
    index = edit.index
    index["manifests"][1]["annotations"]["org.opencontainers.image.ref.name"] = "no spaces please"
    edit.set_json("index.json", index)
    lines = problems_of(capsys, edit.save(tmp_path / "t.tar"))
    assert len(lines) == 3 and len(set(lines)) == 3
    assert "oci-layout: missing" in lines[0]
    assert layer in lines[1]
    assert "breaks the ref grammar" in lines[2]


def test_the_suite_helper_fails_with_every_problem(image: Path, tmp_path: Path) -> None:
    edit = Editable(image)
    del edit.files["oci-layout"]
    del edit.files[blob_path(edit.layer_digest())]
    with pytest.raises(AssertionError) as caught:
        assert_verifies(edit.save(tmp_path / "t.tar"))
    assert "oci-layout: missing" in str(caught.value) and "is missing from the archive" in str(caught.value)


def test_verify_streams_large_layers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, hello_wasm: Path
) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for i in range(48):
            f.write(zlib.crc32(str(i).encode()).to_bytes(4, "big") * (1 << 18))
    path = build_with_cli(
        tmp_path / "big.tar", "-n", "big", "-m", str(hello_wasm), "--layer", f"application/octet-stream={big}"
    )
    assert os.path.getsize(path) > 48 << 20
    status, lines, _ = verify(capsys, path)
    assert status == 0 and lines == [f"ok: {path} (1 image, 4 blobs verified)"]
