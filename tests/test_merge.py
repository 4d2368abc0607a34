"""`merge`: images made by different jobs and tools in one archive, pushed as one index for every platform.

The sources are real: our wasm image and component artifact, linux/amd64 and linux/arm64 images committed
by buildah (which writes no platform in its index.json), and a multi-platform index from `buildah manifest
push --all`. What comes out is read back by a real registry and skopeo, and imported by containerd.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from layout import Layout, load
from realtools import Containerd, Registry, require_tool, run, skopeo
from registry_support import assert_clean_failure, cli, raw_manifest
from tamper import Editable, blob_path
from verifyhelp import assert_verifies

from oci_builder import BuildRequest, Format, build, plan_image
from oci_builder.merge import merge_archives
from oci_builder.registry import push_archive
from oci_builder.spec import ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST

WASM_NAME = "ghcr.io/example/service:1.0"
LIST_TAG = "list1"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def platform_of(descriptor: dict[str, Any]) -> str:
    platform = descriptor["platform"]
    return "/".join(p for p in (platform["os"], platform["architecture"], platform.get("variant")) if p)


def names_of(descriptor: dict[str, Any]) -> tuple[str | None, str | None]:
    annotations = descriptor.get("annotations", {})
    return annotations.get(ANNOTATION_IMAGE_NAME), annotations.get(ANNOTATION_REF_NAME)


def output_lines(images: list[tuple[str, str, str]], indexes: list[tuple[str, str]], out: Path) -> list[str]:
    """What `merge` prints: a line per image, one per image index it made, and the archive."""
    return [
        *(f"image    {ref}  {platform}  {digest}" for ref, platform, digest in images),
        *(f"index    {ref}  {digest}" for ref, digest in indexes),
        f"archive  {out}",
    ]


def the_index(layout: Layout) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """index.json's one entry, an image index, and the manifests that index lists."""
    (entry,) = layout.index["manifests"]
    assert entry["mediaType"] == MEDIA_TYPE_INDEX
    index = layout.blob_json(entry["digest"])
    assert index["mediaType"] == MEDIA_TYPE_INDEX and index["schemaVersion"] == 2
    return entry, index["manifests"]


# Sources ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WasmSources:
    image: Path
    image_digest: str
    artifact: Path
    artifact_digest: str


def build_one(path: Path, request: BuildRequest) -> str:
    """Build one image with the library; its manifest digest."""
    (image,) = build([plan_image(request)], path).images
    return image.manifest.digest


def service(module: Path, **fields: Any) -> BuildRequest:
    return BuildRequest(
        name="service", repo="ghcr.io/example", tags=("1.0",), modules=[str(module)], **fields
    )


@pytest.fixture(scope="module")
def wasm(tmp_path_factory: pytest.TempPathFactory, hello_wasm: Path, component_wasm: Path) -> WasmSources:
    """Our wasm image (a core module: wasip1/wasm) and our artifact of a component (wasip2/wasm)."""
    directory = tmp_path_factory.mktemp("wasm-sources")
    image, artifact = directory / "image.tar", directory / "artifact.tar"
    image_digest = build_one(image, service(hello_wasm))
    artifact_digest = build_one(artifact, service(component_wasm, format=Format.ARTIFACT))
    return WasmSources(image, image_digest, artifact, artifact_digest)


@dataclass(frozen=True)
class LinuxSources:
    amd64: Path
    arm64: Path
    listed: Path
    """Both in one multi-platform image, as `buildah manifest push --all` writes it (index -> index)."""


@pytest.fixture(scope="module")
def linux(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LinuxSources]:
    """linux/amd64 and linux/arm64/v8 images committed by buildah (private vfs storage; under a second)."""
    root = tmp_path_factory.mktemp("buildah")
    buildah = [
        require_tool("buildah"),
        "--root", str(root / "root"), "--runroot", str(root / "run"), "--storage-driver", "vfs",
    ]  # fmt: skip
    archives: dict[str, Path] = {}
    try:
        for arch, variant, size in (("amd64", None, 3 << 20), ("arm64", "v8", 4096)):
            payload = root / f"service-{arch}"
            payload.write_bytes(random.Random(arch).randbytes(size))
            container = run([*buildah, "from", "scratch"]).stdout.strip()
            run([*buildah, "copy", container, str(payload), "/service"])
            platform = ["--os", "linux", "--arch", arch, *(["--variant", variant] if variant else [])]
            run([*buildah, "config", *platform, "--entrypoint", '["/service"]', container])
            archives[arch] = root / f"{arch}.tar"
            run([*buildah, "commit", "-q", container, f"oci-archive:{archives[arch]}"])
        listed = root / "listed.tar"
        run([*buildah, "manifest", "create", "localhost/service-list:1"])
        for arch in ("amd64", "arm64"):
            run([*buildah, "manifest", "add", "localhost/service-list:1", f"oci-archive:{archives[arch]}"])
        run(
            [
                *buildah,
                "manifest",
                "push",
                "--all",
                "localhost/service-list:1",
                f"oci-archive:{listed}:{LIST_TAG}",
            ]
        )
        yield LinuxSources(archives["amd64"], archives["arm64"], listed)
    finally:
        subprocess.run([*buildah, "rm", "--all"], capture_output=True, check=False, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def top_digest(path: Path) -> str:
    (entry,) = load(path).index["manifests"]
    digest: str = entry["digest"]
    return digest


# The proof: one tag for every platform --------------------------------------------------------------


def test_a_merged_archive_is_pushed_as_one_index_serving_every_platform(
    tmp_path: Path, registry: Registry, wasm: WasmSources, linux: LinuxSources
) -> None:
    for source in (linux.amd64, linux.arm64):
        assert "platform" not in load(source).index["manifests"][0]  # buildah leaves it to the config
    ref = f"{registry.host}/multi:v1"
    out = tmp_path / "all.tar"
    sources = [wasm.image, wasm.artifact, linux.amd64, linux.arm64]
    result = cli(["merge", *map(str, sources), "-o", str(out), "--name", ref, "-q"])
    assert result.returncode == 0, result.stderr
    expected = [
        ("wasip1/wasm", wasm.image_digest),
        ("wasip2/wasm", wasm.artifact_digest),
        ("linux/amd64", top_digest(linux.amd64)),
        ("linux/arm64/v8", top_digest(linux.arm64)),
    ]
    layout = load(out)  # verifies it
    entry, manifests = the_index(layout)
    assert names_of(entry) == (ref, "v1")
    assert [(platform_of(m), m["digest"]) for m in manifests] == expected
    assert all("annotations" not in m for m in manifests)  # the name is the index's
    images = [(ref, platform, digest) for platform, digest in expected]
    assert result.stdout.splitlines() == output_lines(images, [(ref, entry["digest"])], out)
    docker = layout.json("manifest.json")
    assert [item["RepoTags"] for item in docker] == [[ref], [], [], []]
    for item, descriptor in zip(docker, manifests, strict=True):
        manifest = layout.blob_json(descriptor["digest"])
        assert item["Config"] == blob_path(manifest["config"]["digest"])
        assert item["Layers"] == [blob_path(layer["digest"]) for layer in manifest["layers"]]
    # skopeo finds the tag in the archive too: the index, as the registry will serve it.
    assert skopeo("inspect", "--raw", f"oci-archive:{out}:v1").stdout.encode() == layout.blob(entry["digest"])

    (pushed,) = push_archive(out)
    assert (pushed.reference, pushed.digest, pushed.media_type) == (ref, entry["digest"], MEDIA_TYPE_INDEX)
    raw = raw_manifest(registry, ref)
    assert raw == layout.blob(entry["digest"])
    index = json.loads(raw)
    assert index["mediaType"] == MEDIA_TYPE_INDEX
    assert [(platform_of(m), m["digest"]) for m in index["manifests"]] == expected

    # Each platform resolves through the index to its own image, its bytes as its job made them.
    for (platform, digest), source in zip(expected, sources, strict=True):
        os_name, arch, *variant = platform.split("/")
        overrides = ["--override-os", os_name, "--override-arch", arch]
        overrides += ["--override-variant", variant[0]] if variant else []
        pulled = tmp_path / f"pulled-{os_name}-{arch}"
        skopeo("copy", *overrides, "--src-tls-verify=false", f"docker://{ref}", f"dir:{pulled}")
        assert sha256((pulled / "manifest.json").read_bytes()) == digest
        original = load(source)
        for layer in original.blob_json(digest)["layers"]:
            assert (pulled / layer["digest"].split(":")[1]).read_bytes() == original.blob(layer["digest"])


def test_containerd_imports_one_image_with_every_platform(
    tmp_path: Path, containerd: Containerd, wasm: WasmSources, linux: LinuxSources
) -> None:
    name = "localhost:5000/merged/ctr:v1"
    out = tmp_path / "all.tar"
    result = merge_archives([wasm.image, linux.amd64, linux.arm64], out, name=name)
    containerd.ctr("images", "import", "--all-platforms", "--no-unpack", str(out))
    layout = load(out)
    entry, manifests = the_index(layout)
    assert [d.digest for d in result.index] == [entry["digest"]]
    listing = [line.split() for line in containerd.ctr("images", "ls").stdout.splitlines()[1:]]
    (row,) = [row for row in listing if row[0] == name]
    assert (row[1], row[2]) == (MEDIA_TYPE_INDEX, entry["digest"])
    assert sorted(row[5].split(",")) == ["linux/amd64", "linux/arm64/v8", "wasip1/wasm"]
    # Every platform's content stays: the name holds the index, the index holds them all.
    for descriptor in manifests:
        manifest = layout.blob_json(descriptor["digest"])
        for blob in [descriptor, manifest["config"], *manifest["layers"]]:
            assert containerd.ctr_bytes("content", "get", blob["digest"]) == layout.blob(blob["digest"])


# Other tools' layouts ---------------------------------------------------------------------------------


def test_a_multi_platform_index_is_flattened_and_its_children_take_its_name(
    tmp_path: Path, wasm: WasmSources, linux: LinuxSources
) -> None:
    listed = load(linux.listed)
    (top,) = listed.index["manifests"]
    assert top["mediaType"] == MEDIA_TYPE_INDEX and names_of(top) == (None, LIST_TAG)
    children = listed.blob_json(top["digest"])["manifests"]
    assert [platform_of(child) for child in children] == ["linux/amd64", "linux/arm64/v8"]
    out = tmp_path / "kept-names.tar"
    result = cli(["merge", str(wasm.image), str(linux.listed), "-o", str(out)])
    assert result.returncode == 0, result.stderr
    layout = load(out)
    wasm_entry, list_entry = layout.index["manifests"]
    assert (wasm_entry["digest"], names_of(wasm_entry), platform_of(wasm_entry)) == (
        wasm.image_digest,
        (WASM_NAME, "1.0"),
        "wasip1/wasm",
    )
    assert (list_entry["mediaType"], names_of(list_entry)) == (MEDIA_TYPE_INDEX, (None, LIST_TAG))
    regrouped = layout.blob_json(list_entry["digest"])["manifests"]
    assert [(platform_of(m), m["digest"]) for m in regrouped] == [
        (platform_of(child), child["digest"]) for child in children
    ]
    images = [(WASM_NAME, "wasip1/wasm", wasm.image_digest)]
    images += [(LIST_TAG, platform_of(child), child["digest"]) for child in children]
    assert result.stdout.splitlines() == output_lines(images, [(LIST_TAG, list_entry["digest"])], out)
    # Only io.containerd.image.name is a name docker load can take; a bare ref.name tag is not.
    assert [item["RepoTags"] for item in layout.json("manifest.json")] == [[WASM_NAME], [], []]


def buildx_like(source: Path, out: Path, name: str) -> tuple[str, str]:
    """`source`'s image as docker buildx writes it: index.json -> index of [image, attestation manifest].

    The attestation (platform unknown/unknown) points at its image by vnd.docker.reference.digest.
    Returns the digests of the image and of the attestation manifest.
    """
    edit = Editable(source)
    image = edit.index["manifests"][0]
    statement = json.dumps(
        {"_type": "https://in-toto.io/Statement/v0.1", "subject": [image["digest"]]}
    ).encode()
    statement_digest = edit.put_blob(statement)
    unknown = {"architecture": "unknown", "os": "unknown"}
    config = json.dumps(
        {**unknown, "config": {}, "rootfs": {"type": "layers", "diff_ids": [statement_digest]}}
    )
    config_digest = edit.put_blob(config.encode())
    attestation = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.in-toto+json",
                    "digest": statement_digest,
                    "size": len(statement),
                }
            ],
        }
    ).encode()
    attestation_digest = edit.put_blob(attestation)
    attestation_entry = {
        "mediaType": MEDIA_TYPE_MANIFEST,
        "digest": attestation_digest,
        "size": len(attestation),
        "platform": unknown,
        "annotations": {
            "vnd.docker.reference.digest": image["digest"],
            "vnd.docker.reference.type": "attestation-manifest",
        },
    }
    config_fields = edit.blob_json(edit.config_digest())
    platform = {key: config_fields[key] for key in ("os", "architecture", "variant") if key in config_fields}
    image_entry = {**image, "platform": platform}
    inner = json.dumps(
        {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": [image_entry, attestation_entry]}
    ).encode()
    edit.set_json(
        "index.json",
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": MEDIA_TYPE_INDEX,
                    "digest": edit.put_blob(inner),
                    "size": len(inner),
                    "annotations": {ANNOTATION_IMAGE_NAME: name, ANNOTATION_REF_NAME: name.rsplit(":", 1)[1]},
                }
            ],
        },
    )
    edit.save(out)
    assert_verifies(out)
    image_digest: str = image["digest"]
    return image_digest, attestation_digest


def test_buildx_attestations_stay_beside_their_images_without_clashing(
    tmp_path: Path, linux: LinuxSources
) -> None:
    amd64, amd64_attestation = buildx_like(linux.amd64, tmp_path / "amd64.tar", "docker.io/example/svc:amd64")
    arm64, arm64_attestation = buildx_like(linux.arm64, tmp_path / "arm64.tar", "docker.io/example/svc:arm64")
    out = tmp_path / "all.tar"
    ref = "ghcr.io/example/svc:2.0"
    result = merge_archives([tmp_path / "amd64.tar", tmp_path / "arm64.tar"], out, name=ref)
    layout = load(out)
    entry, manifests = the_index(layout)
    assert names_of(entry) == (ref, "2.0")
    assert [(platform_of(m), m["digest"]) for m in manifests] == [
        ("linux/amd64", amd64),
        ("unknown/unknown", amd64_attestation),
        ("linux/arm64/v8", arm64),
        ("unknown/unknown", arm64_attestation),
    ]
    assert [d.digest for d in result.images] == [m["digest"] for m in manifests]
    assert manifests[1]["annotations"]["vnd.docker.reference.digest"] == amd64
    assert manifests[3]["annotations"]["vnd.docker.reference.digest"] == arm64
    # docker load takes images only: the attestations are left out of manifest.json.
    docker = layout.json("manifest.json")
    assert [item["Config"] for item in docker] == [
        blob_path(layout.blob_json(digest)["config"]["digest"]) for digest in (amd64, arm64)
    ]
    assert [item["RepoTags"] for item in docker] == [[ref], []]


def test_an_image_without_any_platform_is_refused(tmp_path: Path, linux: LinuxSources) -> None:
    edit = Editable(linux.amd64)

    def forget_platform(config: dict[str, Any]) -> None:
        del config["os"], config["architecture"]

    edit.edit_config(forget_platform)
    source = edit.save(tmp_path / "no-platform.tar")
    out = tmp_path / "out.tar"
    result = cli(["merge", str(source), "-o", str(out)])
    assert_clean_failure(result, str(source), edit.manifest_digest(), "cannot tell which platform it serves")
    assert not out.exists()


# Names: kept, replaced, and never ambiguous ------------------------------------------------------------


def wasm_image_variant(tmp_path: Path, hello_wasm: Path, label: str) -> tuple[Path, str]:
    """Our wasm image of the same module, made different (another digest) by a label."""
    path = tmp_path / f"variant-{label.replace('=', '-')}.tar"
    return path, build_one(path, service(hello_wasm, labels=[label]))


@pytest.mark.parametrize("rename", [False, True], ids=["recorded-names", "with-name"])
def test_two_images_for_one_platform_under_one_name_are_refused(
    tmp_path: Path, hello_wasm: Path, wasm: WasmSources, rename: bool
) -> None:
    other, other_digest = wasm_image_variant(tmp_path, hello_wasm, "build=2")
    out = tmp_path / "out.tar"
    out.write_bytes(b"the previous archive")
    args = ["merge", str(wasm.image), str(other), "-o", str(out)]
    result = cli([*args, "--name", "localhost:5000/app:v1"] if rename else args)
    name = "localhost:5000/app:v1" if rename else WASM_NAME
    assert_clean_failure(
        result, f"{name}: ", "wasip1/wasm", wasm.image_digest, str(wasm.image), other_digest, str(other)
    )
    assert result.stdout == ""
    assert out.read_bytes() == b"the previous archive"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.tar", other.name])


def test_the_same_image_given_twice_is_written_once(tmp_path: Path, wasm: WasmSources) -> None:
    copy = shutil.copyfile(wasm.image, tmp_path / "copy.tar")
    out = tmp_path / "out.tar"
    result = merge_archives([wasm.image, copy, wasm.image], out)
    assert result.images == result.index
    assert [(e.digest, e.annotations[ANNOTATION_IMAGE_NAME]) for e in result.index] == [
        (wasm.image_digest, WASM_NAME)
    ]
    layout = load(out)
    assert len(layout.index["manifests"]) == 1
    source = load(wasm.image)
    assert sorted(n for n in layout.files if n.startswith("blobs/")) == sorted(
        n for n in source.files if n.startswith("blobs/")
    )
    assert layout.json("manifest.json") == source.json("manifest.json")


def test_images_with_different_names_may_share_a_platform(
    tmp_path: Path, hello_wasm: Path, wasm: WasmSources, linux: LinuxSources
) -> None:
    other = tmp_path / "other-name.tar"
    build_one(other, BuildRequest(name="other", tags=("3",), modules=[str(hello_wasm)]))
    out = tmp_path / "out.tar"
    result = merge_archives([wasm.image, other, linux.amd64], out)
    assert result.images == result.index  # no name is shared: no image index
    assert [e.annotations.get(ANNOTATION_IMAGE_NAME) for e in result.index] == [WASM_NAME, "other:3", None]
    layout = load(out)
    assert [entry["RepoTags"] for entry in layout.json("manifest.json")] == [[WASM_NAME], ["other:3"], []]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--name", "localhost:5000/app@sha256:" + "a" * 64], "names a digest"),
        (["--name", "Not A Name"], "--name 'Not A Name'"),
        (["--created", "yesterday"], "--created 'yesterday': not a time"),
    ],
)
def test_bad_flags_are_usage_errors(
    tmp_path: Path, wasm: WasmSources, args: list[str], fragment: str
) -> None:
    out = tmp_path / "out.tar"
    result = cli(["merge", str(wasm.image), "-o", str(out), *args])
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("oci-tar-builder: error: ") and fragment in line
    assert not out.exists()


def test_an_output_path_is_required(tmp_path: Path, wasm: WasmSources) -> None:
    result = cli(["merge", str(wasm.image)])
    assert result.returncode == 2
    assert "-o/--out-path" in result.stderr


# Untrusted sources: nothing is written from a bad one -------------------------------------------------


@pytest.mark.parametrize("blob", ["layer", "config"])
def test_a_tampered_blob_in_a_source_fails_and_writes_nothing(
    tmp_path: Path, wasm: WasmSources, linux: LinuxSources, blob: str
) -> None:
    edit = Editable(linux.amd64)
    digest = edit.layer_digest() if blob == "layer" else edit.config_digest()
    data = bytearray(edit.blob(digest))
    data[len(data) // 2] ^= 0x01
    edit.files[blob_path(digest)] = bytes(data)
    source = edit.save(tmp_path / "tampered.tar")
    out = tmp_path / "out.tar"
    out.write_bytes(b"the previous archive")
    result = cli(["merge", str(wasm.image), str(source), "-o", str(out), "--name", "localhost:5000/app:v1"])
    assert_clean_failure(result, str(source), digest.split(":")[1], sha256(bytes(data)))
    assert "does not match" in result.stderr
    assert out.read_bytes() == b"the previous archive"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar", "tampered.tar"]


def test_a_missing_source_fails_and_writes_nothing(tmp_path: Path, wasm: WasmSources) -> None:
    out = tmp_path / "out.tar"
    out.write_bytes(b"the previous archive")
    missing = tmp_path / "missing.tar"
    result = cli(["merge", str(wasm.image), str(missing), "-o", str(out)])
    assert_clean_failure(result, f"{missing}: no such file")
    assert out.read_bytes() == b"the previous archive"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar"]


def test_a_source_that_is_not_an_archive_is_refused(tmp_path: Path, hello_wasm: Path) -> None:
    out = tmp_path / "out.tar"
    result = cli(["merge", str(hello_wasm), "-o", str(out)])
    assert_clean_failure(result, str(hello_wasm), "not a tar archive")
    assert not out.exists()


# Reproducible ----------------------------------------------------------------------------------------


def test_the_same_sources_give_the_same_bytes(tmp_path: Path, wasm: WasmSources, linux: LinuxSources) -> None:
    sources = [str(wasm.artifact), str(linux.listed), str(wasm.image)]
    first, second, dated, explicit = (tmp_path / f"{n}.tar" for n in ("first", "second", "dated", "explicit"))
    for out in (first, second):
        assert cli(["merge", *sources, "-o", str(out), "-q"]).returncode == 0
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        assert {member.mtime for member in tar} == {0}
    epoch = {"SOURCE_DATE_EPOCH": "1700000000"}
    assert cli(["merge", *sources, "-o", str(dated), "-q"], env=epoch).returncode == 0
    with tarfile.open(dated) as tar:
        assert {member.mtime for member in tar} == {1700000000}
    created = ["--created", "2024-01-02T03:04:05Z"]
    assert cli(["merge", *sources, "-o", str(explicit), *created], env=epoch).returncode == 0
    with tarfile.open(explicit) as tar:
        assert {member.mtime for member in tar} == {1704164645}
    # Only the tar headers' times differ: the layout is the same.
    assert load(dated).files == load(first).files == load(explicit).files


class _Unseekable(io.RawIOBase):
    """A pipe-like sink: the writer must hash each blob before it can write the header."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.data += bytes(b)
        return len(b)


def test_a_stream_gets_the_bytes_a_file_gets(tmp_path: Path, wasm: WasmSources, linux: LinuxSources) -> None:
    sources = [wasm.image, linux.amd64, linux.arm64]
    result = merge_archives(sources, tmp_path / "file.tar", name="localhost:5000/app:v1", mtime=7)
    assert result.path == tmp_path / "file.tar" and result.size == result.path.stat().st_size
    stream = _Unseekable()
    streamed = merge_archives(sources, stream, name="localhost:5000/app:v1", mtime=7)  # type: ignore[arg-type]
    assert (streamed.path, streamed.images, streamed.index) == (None, result.images, result.index)
    assert bytes(stream.data) == result.path.read_bytes()
