"""The archive reader: what it reads from sound archives, and every hostile or broken tar it must refuse."""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from layout import load
from tamper import HOSTILE_KINDS, Editable, blob_path, build_with_cli, hostile_archive, write_tar

from oci_builder import BuildRequest, BuildResult, build, plan_image
from oci_builder.cli import main
from oci_builder.errors import InputError
from oci_builder.reader import JSON_LIMIT, ArchiveError, OciArchive
from oci_builder.spec import MEDIA_TYPE_INDEX, Descriptor

Built = tuple[Path, BuildResult]


@pytest.fixture
def built(tmp_path: Path, hello_wasm: Path) -> Built:
    request = BuildRequest(
        name="hello", repo="registry.test/team", tags=("1.0", "latest"), modules=[str(hello_wasm)]
    )
    result = build([plan_image(request)], tmp_path / "hello.tar")
    assert result.path is not None
    return result.path, result


def test_reads_the_layout_the_builder_wrote(built: Built, hello_wasm: Path) -> None:
    path, result = built
    image = result.images[0]
    with OciArchive.open(path) as archive:
        top = archive.top_level()
        assert [d.digest for d in top] == [image.manifest.digest] * 2
        assert [d.annotations["org.opencontainers.image.ref.name"] for d in top] == ["1.0", "latest"]
        assert top[0].platform is not None and (top[0].platform.os, top[0].platform.architecture) == (
            "wasip1",
            "wasm",
        )
        config, *layers = archive.children(top[0])
        assert config == image.config
        assert layers == list(image.layers)
        assert archive.children(config) == []
        assert archive.index()["mediaType"] == MEDIA_TYPE_INDEX
        assert archive.read_blob(layers[0].digest) == hello_wasm.read_bytes()
        assert archive.read_json_blob(config.digest)["os"] == "wasip1"
        assert archive.docker_manifest() == load(path).json("manifest.json")
        assert archive.has_blob(layers[0].digest)
        assert not archive.has_blob("sha256:" + "0" * 64)
        assert not archive.has_blob("not-a-digest")
        assert archive.blob_size(layers[0].digest) == hello_wasm.stat().st_size
        assert sorted(archive.files()) == sorted(load(path).files)


def test_open_blob_is_a_bounded_seekable_view(built: Built, hello_wasm: Path) -> None:
    path, result = built
    expected = hello_wasm.read_bytes()
    digest = result.images[0].layers[0].digest
    with OciArchive.open(path) as archive, archive.open_blob(digest) as f:
        assert f.read(4) == expected[:4]
        assert f.tell() == 4
        assert f.seek(0, os.SEEK_END) == len(expected)
        assert f.read(10) == b""  # never past the entry into the next tar header
        f.seek(-6, os.SEEK_END)
        assert f.read() == expected[-6:]
        f.seek(10)
        buffer = bytearray(20)
        assert f.readinto(buffer) == 20  # type: ignore[attr-defined]
        assert bytes(buffer) == expected[10:30]
        f.seek(0)
        assert f.read() == expected
        with pytest.raises(OSError):
            f.write(b"x")


def test_blob_streams_can_be_read_at_once_from_threads(tmp_path: Path, hello_wasm: Path) -> None:
    layers = []
    for i in range(6):
        data = hashlib.sha256(str(i).encode()).digest() * (40_000 + i)
        layers.append(tmp_path / f"layer{i}.bin")
        layers[-1].write_bytes(data)
    args = ["-n", "many", "-m", str(hello_wasm)]
    for layer in layers:
        args += ["--layer", f"application/octet-stream={layer}"]
    path = build_with_cli(tmp_path / "many.tar", *args)
    with OciArchive.open(path) as archive:
        (top,) = archive.top_level()
        descriptors = archive.children(top)[2:]
        with ThreadPoolExecutor(6) as pool:
            digests = list(pool.map(lambda d: archive.hash_blob(d.digest), descriptors))
        assert digests == [d.digest for d in descriptors]
        streams = [archive.open_blob(d.digest) for d in descriptors]
        chunks: list[list[bytes]] = [[] for _ in streams]
        while any(chunk := [s.read(7777) for s in streams]):
            for out, piece in zip(chunks, chunk, strict=True):
                out.append(piece)
        for out, layer in zip(chunks, layers, strict=True):
            assert b"".join(out) == layer.read_bytes()


def test_read_blob_checks_the_digest_and_the_limit(built: Built, tmp_path: Path) -> None:
    path, result = built
    layer = result.images[0].layers[0].digest
    edit = Editable(path)
    data = bytearray(edit.blob(layer))
    data[-1] ^= 0xFF
    edit.files[blob_path(layer)] = bytes(data)
    tampered = edit.save(tmp_path / "tampered.tar")
    with OciArchive.open(tampered) as archive:
        with pytest.raises(ArchiveError, match=f"does not match digest {layer}") as caught:
            archive.read_blob(layer)
        assert caught.value.entry == blob_path(layer)
        assert archive.hash_blob(layer) == "sha256:" + hashlib.sha256(data).hexdigest()
        with pytest.raises(ArchiveError, match="over the 100-byte limit"):
            archive.read_blob(layer, limit=100)
        with pytest.raises(ArchiveError, match="is missing"):
            archive.read_blob("sha256:" + "1" * 64)
        with pytest.raises(ArchiveError, match="does not match the grammar"):
            archive.blob_size("sha256:nothex!")


def test_children_refuse_a_descriptor_whose_size_is_wrong(built: Built) -> None:
    path, result = built
    manifest = result.images[0].manifest
    wrong = Descriptor(manifest.media_type, manifest.digest, manifest.size + 1)
    with OciArchive.open(path) as archive, pytest.raises(ArchiveError, match="descriptor says"):
        archive.children(wrong)


def test_top_level_refuses_invalid_descriptors(built: Built, tmp_path: Path) -> None:
    edit = Editable(built[0])
    index = edit.index
    index["manifests"][1]["size"] = "527"
    edit.set_json("index.json", index)
    with (
        OciArchive.open(edit.save(tmp_path / "bad.tar")) as archive,
        pytest.raises(ArchiveError, match=r"index.json manifests\[1\]: size must be an integer, not string"),
    ):
        archive.top_level()


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (b'{"schemaVersion":2,"schemaVersion":2,"manifests":[]}', "duplicate key 'schemaVersion'"),
        (b'{"schemaVersion":NaN,"manifests":[]}', "NaN is not a JSON number"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"manifests":[]}\xff', "not UTF-8"),
        (b"[]", "must be a JSON object"),
        (b"{", "not valid JSON"),
        (b'{"schemaVersion": 2' + b" " * JSON_LIMIT + b"}", "limit"),
    ],
)
def test_index_json_is_parsed_strictly_and_bounded(
    built: Built, tmp_path: Path, document: bytes, problem: str
) -> None:
    edit = Editable(built[0])
    edit.files["index.json"] = document
    with OciArchive.open(edit.save(tmp_path / "bad.tar")) as archive:
        with pytest.raises(ArchiveError, match=problem) as caught:
            archive.index()
        assert str(caught.value).startswith(f"{tmp_path / 'bad.tar'}: index.json: ")


def test_reads_pax_gnu_and_dot_slash_names(built: Built, tmp_path: Path) -> None:
    files = load(built[0]).files
    long_name = "extra/" + "deep/" * 40 + "file-ü.txt"
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        members = [(f"./{name}", data) for name, data in files.items()] + [(long_name, b"long")]
        path = write_tar(tmp_path / f"fmt{fmt}.tar", members, fmt)
        with OciArchive.open(path) as archive:
            assert archive.has_entry(long_name)
            assert archive.read_entry(long_name) == b"long"
            assert archive.has_entry("./index.json") and archive.has_entry("index.json")
            assert len(archive.top_level()) == 2


def test_an_archive_without_end_blocks_is_read(built: Built, tmp_path: Path) -> None:
    data = built[0].read_bytes().rstrip(b"\0")
    data += b"\0" * (-len(data) % 512)
    path = tmp_path / "no-end.tar"
    path.write_bytes(data)
    with OciArchive.open(path) as archive:
        assert len(archive.top_level()) == 2


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_hostile_entries_are_refused_naming_the_entry(built: Built, tmp_path: Path, kind: str) -> None:
    target = tmp_path / "absolute-target.txt"
    path, entry = hostile_archive(built[0], kind, tmp_path / f"{kind}.tar", target)
    with pytest.raises(ArchiveError) as caught:
        OciArchive.open(path)
    assert isinstance(caught.value, InputError)
    message = str(caught.value)
    assert message.startswith(f"{path}: {entry}: "), message
    assert "\n" not in message
    assert not target.exists()


_END = b"\0" * 1024


def _tar_header(name: str, size: int, typeflag: bytes = b"0") -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = typeflag
    return info.tobuf(tarfile.USTAR_FORMAT)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty, not a tar archive"),
        (b"hello", "is not a tar archive: it is too short"),
        (b"x" * 2048, r"is not a tar archive \(no valid tar header at offset 0\)"),
        (gzip.compress(b"\0" * 4096), "is gzip-compressed"),
        (_tar_header("index.json", 5000) + b"{}", "truncated: the entry needs 5000 bytes"),
        (_tar_header("a", 1) + b"a" + b"\0" * 511 + b"\x01" * 512, "tar header at offset 1024 is corrupt"),
        (_tar_header("a", 0, b"S") + _END, "unsupported tar entry type 'S'"),
        (_tar_header("a", 0, b"x") + _END, "extended header without an entry"),
    ],
)
def test_broken_tars_are_refused(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "broken.tar"
    path.write_bytes(content)
    with pytest.raises(ArchiveError, match=problem):
        OciArchive.open(path)


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body) + len(str(len(body)))
    length = len(body) + len(str(length))
    return str(length).encode() + body


@pytest.mark.parametrize(
    ("records", "problem"),
    [
        (b"99 path=x\n", "malformed"),
        (b"5 path=x\n", "malformed"),
        (_pax_record("path", "../x"), "'..' in the path"),
        (_pax_record("size", "-5"), "not a valid size"),
        (_pax_record("GNU.sparse.map", "0"), "sparse"),
        (_pax_record("path", "a") + _pax_record("path", "b"), "sets 'path' twice"),
    ],
)
def test_pax_records_are_checked(tmp_path: Path, records: bytes, problem: str) -> None:
    header = _tar_header("PaxHeaders/x", len(records), b"x")
    path = tmp_path / "pax.tar"
    path.write_bytes(header + records + b"\0" * (-len(records) % 512) + _tar_header("file", 0) + _END)
    with pytest.raises(ArchiveError, match=problem):
        OciArchive.open(path)


def test_pax_names_and_sizes_are_honoured(tmp_path: Path) -> None:
    records = _pax_record("path", "renamed/by-pax.txt") + _pax_record("size", "3")
    header = _tar_header("PaxHeaders/x", len(records), b"x")
    body = header + records + b"\0" * (-len(records) % 512)
    body += _tar_header("short-name", 999) + b"abc" + b"\0" * 509 + _END
    path = tmp_path / "pax.tar"
    path.write_bytes(body)
    with OciArchive.open(path) as archive:
        assert list(archive.files()) == ["renamed/by-pax.txt"]
        assert archive.read_entry("renamed/by-pax.txt") == b"abc"


def test_paths_that_are_not_archives_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="no such file"):
        OciArchive.open(tmp_path / "missing.tar")
    with pytest.raises(ArchiveError, match="is a directory"):
        OciArchive.open(tmp_path)
    fifo = tmp_path / "fifo.tar"
    os.mkfifo(fifo)
    with pytest.raises(ArchiveError, match="is not a regular file"):
        OciArchive.open(fifo)  # must not wait for a writer


def test_an_archive_with_no_index_is_not_a_layout(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "plain.tar", [("hello.txt", b"hi")])
    with OciArchive.open(path) as archive:
        with pytest.raises(ArchiveError, match=r"has no index\.json"):
            archive.index()
        assert archive.docker_manifest() is None


def test_closing_releases_the_file(built: Built) -> None:
    archive = OciArchive.open(built[0])
    with archive:
        stream = archive.open_blob(archive.top_level()[0].digest)
    with pytest.raises(ValueError):
        stream.read()


def _tree(root: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(root)), p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")
    )


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "long-name-dotdot"])
@pytest.mark.parametrize("command", ["inspect", "verify", "push"])
def test_every_command_refuses_hostile_archives_writing_nothing(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    built: Built,
    tmp_path: Path,
    command: str,
    kind: str,
) -> None:
    archives, cwd = tmp_path / "archives", tmp_path / "cwd"
    archives.mkdir()
    cwd.mkdir()
    target = tmp_path / "elsewhere" / "escaped.txt"
    path, entry = hostile_archive(built[0], kind, archives / "hostile.tar", target)
    monkeypatch.chdir(cwd)
    before = _tree(tmp_path)
    capsys.readouterr()
    extra = ["127.0.0.1:9/never/contacted:1"] if command == "push" else []
    assert main([command, str(path), *extra]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"oci-tar-builder: error: {path}: {entry}: ") and err.count("\n") == 1, err
    assert _tree(tmp_path) == before
    assert not target.exists()


def test_blob_range_locates_the_blob_bytes_in_the_tar(tmp_path: Path, hello_wasm: Path) -> None:
    archive_path = tmp_path / "range.tar"
    build([plan_image(BuildRequest(name="range", modules=[str(hello_wasm)]))], archive_path)
    with OciArchive.open(archive_path) as archive:
        layer = archive.children(archive.top_level()[0])[1]
        where = archive.blob_range(layer.digest)
    assert where.path == archive_path and where.size == layer.size and where.offset % 512 == 0
    with open(archive_path, "rb") as f:
        f.seek(where.offset)
        assert f.read(where.size) == hello_wasm.read_bytes()


def test_an_index_fanning_out_to_repeats_is_refused_not_walked(tmp_path: Path, hello_wasm: Path) -> None:
    """400 x 400 references to one manifest in a small archive: refused, where a naive walk does 160,000."""
    from oci_builder.spec import canonical_json, index_json, json_blob, manifest_blob

    config = json_blob("application/vnd.oci.image.config.v1+json", {"architecture": "wasm", "os": "wasip1"})
    layer = Descriptor(
        "application/wasm", "sha256:" + hashlib.sha256(hello_wasm.read_bytes()).hexdigest(), 154
    )
    manifest = manifest_blob(config.descriptor(), [layer], {})
    inner = index_json([manifest.descriptor()] * 400)
    inner_desc = Descriptor(MEDIA_TYPE_INDEX, "sha256:" + hashlib.sha256(inner).hexdigest(), len(inner))
    outer = index_json([inner_desc] * 400)
    outer_desc = Descriptor(MEDIA_TYPE_INDEX, "sha256:" + hashlib.sha256(outer).hexdigest(), len(outer))
    members = [(blob_path(b.digest), b.data) for b in (config, manifest)]
    members += [(blob_path(layer.digest), hello_wasm.read_bytes())]
    members += [(blob_path(d.digest), data) for d, data in ((inner_desc, inner), (outer_desc, outer))]
    members += [
        ("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"})),
        ("index.json", index_json([outer_desc])),
    ]
    archive = write_tar(tmp_path / "fan.tar", members)
    assert archive.stat().st_size < 200_000
    for command in (["inspect"], ["merge", "-o", str(tmp_path / "m.tar")]):
        assert main([*command, str(archive)]) == 1
    assert not (tmp_path / "m.tar").exists()


def test_indexes_nested_too_deep_are_refused_by_push_before_any_request(
    tmp_path: Path, hello_wasm: Path
) -> None:
    from oci_builder.registry import push_archive
    from oci_builder.spec import canonical_json, index_json, json_blob, manifest_blob

    config = json_blob("application/vnd.oci.image.config.v1+json", {"architecture": "wasm", "os": "wasip1"})
    layer = Descriptor(
        "application/wasm", "sha256:" + hashlib.sha256(hello_wasm.read_bytes()).hexdigest(), 154
    )
    manifest = manifest_blob(config.descriptor(), [layer], {})
    members = [(blob_path(b.digest), b.data) for b in (config, manifest)]
    members.append((blob_path(layer.digest), hello_wasm.read_bytes()))
    top = manifest.descriptor()
    for _ in range(12):
        data = index_json([top])
        top = Descriptor(MEDIA_TYPE_INDEX, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))
        members.append((blob_path(top.digest), data))
    members += [
        ("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"})),
        ("index.json", index_json([top])),
    ]
    archive = write_tar(tmp_path / "deep.tar", members)
    with pytest.raises(ArchiveError, match="nest deeper than 8"):
        push_archive(archive, ["127.0.0.1:9/never:1"])  # port 9: nothing listens; no request is made
