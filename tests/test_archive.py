"""The tar writer: headers every reader accepts, nothing that varies between machines, each blob once."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from oci_builder.archive import ArchiveWriter, atomic_output, single_file_tar, tar_header
from oci_builder.digest import FileRange
from oci_builder.errors import OutputError
from oci_builder.spec import Blob


def test_header_fields_are_fixed_and_readable() -> None:
    header = tar_header("blobs/sha256/" + "a" * 64, 1234, mode=0o644, mtime=1700000000)
    info = tarfile.TarInfo.frombuf(header, "utf-8", "strict")
    assert (info.name, info.size, info.mode, info.mtime) == (
        "blobs/sha256/" + "a" * 64,
        1234,
        0o644,
        1700000000,
    )
    assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "", "")
    assert info.type == tarfile.REGTYPE
    assert header[257:263] == b"ustar\0"


def test_sizes_of_8_gib_and_more_use_base_256() -> None:
    size = (8 << 30) + 5
    info = tarfile.TarInfo.frombuf(tar_header("big", size, mode=0o644, mtime=0), "utf-8", "strict")
    assert info.size == size


def test_long_names_use_the_ustar_prefix() -> None:
    long_name = "d" * 90 + "/" + "f" * 90
    info = tarfile.TarInfo.frombuf(tar_header(long_name, 0, mode=0o644, mtime=0), "utf-8", "strict")
    assert info.name == long_name
    with pytest.raises(ValueError, match="too long"):
        tar_header("x" * 300, 0, mode=0o644, mtime=0)


def _write_sample(out: io.BytesIO | io.BufferedRandom, src: Path) -> list[str]:
    writer = ArchiveWriter(out, mtime=42)
    first = writer.add_stream_blob("application/wasm", [FileRange(src, src.stat().st_size)])
    again = writer.add_stream_blob("application/wasm", [FileRange(src, src.stat().st_size)])
    small = writer.add_blob(Blob("application/json", b"{}"))
    writer.add_file("index.json", b"{}")
    writer.finish()
    assert first == again
    return [first.digest, small.digest]


class _Pipe(io.BytesIO):
    """A stream that cannot seek, like stdout into a pipe."""

    def seekable(self) -> bool:
        return False


@pytest.mark.parametrize("seekable", [True, False])
def test_blobs_are_written_once_and_named_by_their_digest(tmp_path: Path, seekable: bool) -> None:
    src = tmp_path / "layer.bin"
    src.write_bytes(os.urandom(3 << 20) + b"tail")
    out: io.BytesIO = io.BytesIO() if seekable else _Pipe()
    digests = _write_sample(out, src)
    data = out.getvalue()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        blob = tar.extractfile("blobs/sha256/" + digests[0].split(":")[1])
        assert blob is not None
        assert "sha256:" + hashlib.sha256(blob.read()).hexdigest() == digests[0]
        assert {m.mtime for m in tar.getmembers()} == {42}
    assert names == [
        "blobs",
        "blobs/sha256",
        "blobs/sha256/" + digests[0].split(":")[1],
        "blobs/sha256/" + digests[1].split(":")[1],
        "index.json",
    ]
    assert len(data) % 512 == 0


def test_seekable_and_streamed_outputs_are_byte_identical(tmp_path: Path) -> None:
    src = tmp_path / "layer.bin"
    src.write_bytes(os.urandom(2 << 20))
    seek, pipe = io.BytesIO(), _Pipe()
    _write_sample(seek, src)
    _write_sample(pipe, src)
    assert seek.getvalue() == pipe.getvalue()


def test_gnu_tar_lists_what_python_lists(tmp_path: Path) -> None:
    src = tmp_path / "m.wasm"
    src.write_bytes(b"\0asm\x01\0\0\0")
    header, trailer = single_file_tar("app.wasm", 8, 0o755, 0)
    layer = header + src.read_bytes() + trailer
    (tmp_path / "layer.tar").write_bytes(layer)
    listing = subprocess.run(
        ["tar", "-tvf", str(tmp_path / "layer.tar")], check=True, capture_output=True, text=True
    ).stdout
    assert "-rwxr-xr-x 0/0" in listing and listing.rstrip().endswith("app.wasm")


def test_atomic_output_leaves_the_old_file_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "out.tar"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(dest) as f:
        f.write(b"new, half written")
        raise RuntimeError("boom")
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar"]


def test_atomic_output_replaces_on_success_and_follows_the_umask(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "dir" / "out.tar"
    old = os.umask(0o027)
    try:
        with atomic_output(dest) as f:
            f.write(b"new")
    finally:
        os.umask(old)
    assert dest.read_bytes() == b"new"
    assert dest.stat().st_mode & 0o777 == 0o640


def test_atomic_output_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a directory"), atomic_output(tmp_path):
        pass


def test_long_names_split_where_both_fields_fit() -> None:
    name = "p" * 60 + "/" + "q" * 60 + "/" + "r" * 90
    info = tarfile.TarInfo.frombuf(tar_header(name, 0, mode=0o644, mtime=0), "utf-8", "strict")
    assert info.name == name
    with pytest.raises(ValueError, match="too long"):
        tar_header("d" * 10 + "/" + "f" * 120, 0, mode=0o644, mtime=0)


def test_a_time_past_the_mtime_field_is_refused_not_written() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        tar_header("x", 0, mode=0o644, mtime=0o77777777777 + 1)
