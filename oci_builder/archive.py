"""The archive writer: an OCI image layout (plus docker's manifest.json) as a deterministic tar stream.

We write tar headers ourselves rather than through `tarfile` because reproducibility is about every byte:
ustar headers with uid/gid 0, no user or group names, one fixed mtime, fixed modes whatever the umask, and
no pax records. Blob entries are written before their digest is known and their header patched once the
hash is done, so each input is read exactly once; outputs that cannot seek get a hashing pass first.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from .digest import BlobPart, FileRange, Progress, blob_path, copy_parts, parts_size
from .errors import InputError, OutputError
from .spec import OCI_LAYOUT, Blob, Descriptor, canonical_json, index_json

BLOCK = 512
_OCTAL_SIZE_MAX = 0o77777777777
MTIME_MAX = 0o77777777777
TAR_NAME_MAX = 100
"""The longest name a ustar header holds without its directory prefix field."""
_PREFIX_MAX = 155
"""The latest time a ustar header holds (eleven octal digits: 2242-03-16)."""


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _size_field(size: int) -> bytes:
    if size <= _OCTAL_SIZE_MAX:
        return _octal(size, 12)
    # GNU base-256 for files of 8 GiB and more: every tar reader we target understands it.
    return bytes([0x80]) + size.to_bytes(11, "big")


def _split_name(name: str) -> tuple[bytes, bytes]:
    raw = name.encode()
    if len(raw) <= TAR_NAME_MAX:
        return raw, b""
    # Split at a '/' leaving at most 100 bytes of name and at most 155 of prefix.
    cut = raw.find(b"/", len(raw) - TAR_NAME_MAX - 1)
    if cut <= 0 or cut > _PREFIX_MAX:
        raise ValueError(f"tar entry name too long for ustar: {name!r}")
    return raw[cut + 1 :], raw[:cut]


def tar_header(name: str, size: int, *, mode: int, mtime: int, directory: bool = False) -> bytes:
    """One ustar header block."""
    base, prefix = _split_name(name)
    header = bytearray(BLOCK)
    header[0 : len(base)] = base
    header[100:108] = _octal(mode, 8)
    header[108:116] = _octal(0, 8)
    header[116:124] = _octal(0, 8)
    header[124:136] = _size_field(size)
    header[136:148] = _octal(mtime, 12)
    header[148:156] = b" " * 8
    header[156:157] = b"5" if directory else b"0"
    header[257:263] = b"ustar\0"
    header[263:265] = b"00"
    header[329:337] = _octal(0, 8)
    header[337:345] = _octal(0, 8)
    header[345 : 345 + len(prefix)] = prefix
    header[148:156] = b"%06o\0 " % sum(header)
    if len(header) != BLOCK:  # a field overflowed its width: a bug upstream, never a corrupt archive
        raise ValueError(f"tar header for {name!r} does not fit in {BLOCK} bytes")
    return bytes(header)


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


END_OF_ARCHIVE = b"\0" * (2 * BLOCK)


def single_file_tar(name: str, size: int, mode: int, mtime: int) -> tuple[bytes, bytes]:
    """The bytes around one file's content in a one-entry tar: (header, padding and end-of-archive)."""
    return tar_header(name, size, mode=mode, mtime=mtime), padding(size) + END_OF_ARCHIVE


class ArchiveWriter:
    """Appends entries to an open binary stream; blobs are stored once each, under blobs/sha256/<hex>."""

    def __init__(self, out: BinaryIO, *, mtime: int = 0) -> None:
        self._out = out
        self._mtime = mtime
        self._seekable = out.seekable()
        self._blobs: set[str] = set()
        for directory in ("blobs/", "blobs/sha256/"):
            self._out.write(tar_header(directory, 0, mode=0o755, mtime=mtime, directory=True))

    def add_file(self, name: str, data: bytes) -> None:
        self._out.write(tar_header(name, len(data), mode=0o644, mtime=self._mtime))
        self._out.write(data)
        self._out.write(padding(len(data)))

    def add_blob(self, blob: Blob, **descriptor_fields: object) -> Descriptor:
        digest = blob.digest
        if digest not in self._blobs:
            self._blobs.add(digest)
            self.add_file(blob_path(digest), blob.data)
        return blob.descriptor(**descriptor_fields)

    def add_stream_blob(
        self, media_type: str, parts: Sequence[BlobPart], progress: Progress | None = None
    ) -> Descriptor:
        """Write a blob made of parts (input files and bytes we made), hashing it on the way."""
        size = parts_size(parts)
        if not self._seekable:
            digest = "sha256:" + copy_parts(parts, None).hexdigest()
            if digest not in self._blobs:
                self._blobs.add(digest)
                self._out.write(self._blob_header(digest, size))
                written = "sha256:" + copy_parts(parts, self._out, progress).hexdigest()
                if written != digest:
                    files = ", ".join(str(p.path) for p in parts if isinstance(p, FileRange))
                    raise InputError(files, "changed while the archive was written")
                self._out.write(padding(size))
            return Descriptor(media_type, digest, size)

        header_at = self._out.tell()
        self._out.write(b"\0" * BLOCK)
        digest = "sha256:" + copy_parts(parts, self._out, progress).hexdigest()
        if digest in self._blobs:
            self._out.seek(header_at)
            self._out.truncate()
        else:
            self._blobs.add(digest)
            self._out.write(padding(size))
            end = self._out.tell()
            self._out.seek(header_at)
            self._out.write(self._blob_header(digest, size))
            self._out.seek(end)
        return Descriptor(media_type, digest, size)

    def _blob_header(self, digest: str, size: int) -> bytes:
        return tar_header(blob_path(digest), size, mode=0o644, mtime=self._mtime)

    def finish_layout(self, index: Sequence[Descriptor], docker: Sequence[Mapping[str, object]]) -> None:
        """End the archive with what makes it a layout: index.json, oci-layout, and docker's manifest.json."""
        self.add_file("index.json", index_json(list(index)))
        self.add_file("oci-layout", canonical_json(OCI_LAYOUT))
        self.add_file("manifest.json", canonical_json([dict(entry) for entry in docker]))
        self.finish()

    def finish(self) -> None:
        self._out.write(END_OF_ARCHIVE)
        self._out.flush()


def docker_entry(
    config: Descriptor, layers: Sequence[Descriptor], repo_tags: Sequence[str]
) -> dict[str, object]:
    """One image in docker's manifest.json (what `docker load` reads): paths of its blobs, and its names."""
    return {
        "Config": blob_path(config.digest),
        "RepoTags": list(repo_tags),
        "Layers": [blob_path(layer.digest) for layer in layers],
    }


@contextlib.contextmanager
def atomic_output(dest: Path) -> Iterator[BinaryIO]:
    """A file beside `dest` that replaces it only when the block succeeds; on failure it is removed.

    Opened with mode 0o666 so the umask decides the final permissions, as for any file the user creates.
    """
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(str(dest), f"cannot create directory {parent}: {exc.strerror or exc}") from None
    if dest.is_dir():
        raise OutputError(str(dest), "is a directory")
    tmp = parent / f".{dest.name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise OutputError(str(dest), f"cannot write in {parent}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(str(dest), exc.strerror or str(exc)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
