"""The one careful reader of OCI archives: every archive is untrusted input, ours included.

An archive is read in place. One pass over the tar headers records where each entry's bytes lie; blobs
are then read as bounded views of the tar file, so nothing is extracted and a blob of any size costs
constant memory. That pass refuses whatever an extracting tool could be tricked by (absolute paths, '..',
links, devices, duplicate names) and any header two tar readers could disagree on, so that inspect,
verify and push see exactly the entries every other tool would, or refuse the archive.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from .archive import BLOCK
from .digest import FileRange, Progress, ShortReadError, blob_path, copy_hashed, digest_problem
from .errors import InputError
from .spec import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, MAX_SIZE, Descriptor, SpecError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

JSON_LIMIT = 4 << 20
"""The largest JSON document (index, manifest, config) we parse; real ones are a few KiB."""
MAX_ENTRIES = 1 << 20
"""An OCI layout holds a handful of entries per image; millions are an attack on memory."""
MAX_DOCUMENTS = 20_000
"""Manifests and indexes a walk of one archive may visit, counting repeats."""
VERIFIED_CACHE = 16 << 20
"""Bytes of small blobs (manifests, configs) kept once verified, so walks do not read and hash them again."""
MAX_NESTING = 8
"""Indexes nested deeper than this are refused: real ones nest once (a multi-platform image)."""
_MAX_NAME = 4096
_MAX_PAX = 1 << 20
_STREAM_BUFFER = 64 << 10
_ZERO_BLOCK = bytes(BLOCK)
_REGULAR = (b"0", b"\0", b"7")
_REFUSED_TYPES = {
    b"1": "is a hard link: links are refused",
    b"2": "is a symbolic link: links are refused",
    b"3": "is a character device: devices are refused",
    b"4": "is a block device: devices are refused",
    b"6": "is a FIFO: special files are refused",
}


class ArchiveError(InputError):
    """The archive is unsafe, malformed or inconsistent; `entry` names the tar entry when there is one."""

    def __init__(self, path: Path, problem: str, entry: str | None = None) -> None:
        super().__init__(f"{path}: {entry}" if entry else str(path), problem, path=path)
        self.entry = entry


class JsonError(ValueError):
    """A document is not the strict JSON image-spec requires (UTF-8, unique keys, finite numbers)."""


@dataclass(frozen=True)
class _Entry:
    offset: int
    size: int


def parse_json(data: bytes) -> Any:
    """Strict JSON: UTF-8, no duplicate keys (tools would disagree on which wins), no NaN or Infinity."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonError(f"not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except RecursionError:
        raise JsonError("nested too deeply") from None
    except JsonError:
        raise
    except ValueError as exc:  # json.JSONDecodeError, and int() on numbers of thousands of digits
        raise JsonError(f"not valid JSON: {exc}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise JsonError(f"{name} is not a JSON number")


def new_hasher(digest: str) -> hashlib._Hash:
    """A fresh hasher for the algorithm `digest` names (one digest_problem accepts)."""
    return hashlib.new(digest.split(":", 1)[0])


def _digest_of(hasher: hashlib._Hash) -> str:
    return f"{hasher.name}:{hasher.hexdigest()}"


def normalise_name(raw: str) -> str | None:
    """A member name as every extracting tool would resolve it, or None if it escapes the root."""
    if raw.startswith("/") or "\0" in raw:
        return None
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        return None
    return "/".join(parts)


class OciArchive:
    """An OCI image layout inside a tar, read in place (never extracted)."""

    def __init__(self, path: Path, file: BinaryIO, entries: dict[str, _Entry]) -> None:
        self.path = path
        self._file = file
        self._entries = entries
        self._lock = threading.Lock()
        self._verified: dict[str, bytes] = {}
        self._verified_bytes = 0
        self._documents = 0
        self._children: dict[tuple[str, str], tuple[Descriptor, ...]] = {}

    @classmethod
    def open(cls, path: Path) -> OciArchive:
        """Scan the tar headers; raises ArchiveError naming the first unsafe or malformed entry."""
        try:
            # O_NONBLOCK: opening a FIFO someone named as the archive must not wait for a writer.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise ArchiveError(path, "no such file") from None
        except OSError as exc:
            raise ArchiveError(path, exc.strerror or str(exc)) from None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise ArchiveError(path, "is a directory, not an archive")
            if not stat.S_ISREG(st.st_mode):
                raise ArchiveError(path, "is not a regular file")
        except BaseException:
            os.close(fd)
            raise
        file = os.fdopen(fd, "rb", buffering=0)
        try:
            entries = _TarScanner(file, st.st_size, path).scan()
        except OSError as exc:
            file.close()
            raise ArchiveError(path, exc.strerror or str(exc)) from None
        except BaseException:
            file.close()
            raise
        return cls(path, file, entries)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> OciArchive:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # Entries -------------------------------------------------------------------------------------------

    def files(self) -> Iterator[str]:
        """The regular files' names (normalised: no './' prefix), in archive order."""
        return iter(self._entries)

    def has_entry(self, name: str) -> bool:
        normal = normalise_name(name)
        return normal is not None and normal in self._entries

    def open_entry(self, name: str) -> BinaryIO:
        """A read-only, seekable stream over exactly that entry's bytes."""
        entry = self._entry(name)
        return io.BufferedReader(_EntryView(self._file, self._lock, entry), _STREAM_BUFFER)

    def read_entry(self, name: str, limit: int = JSON_LIMIT) -> bytes:
        entry = self._entry(name)
        if entry.size > limit:
            raise ArchiveError(self.path, f"is {entry.size} bytes, over the {limit}-byte limit for it", name)
        with self.open_entry(name) as f:
            data = f.read(entry.size + 1)
        if len(data) != entry.size:
            raise ArchiveError(self.path, "the archive changed while it was read", name)
        return data

    def read_json_entry(self, name: str, limit: int = JSON_LIMIT) -> Any:
        try:
            return parse_json(self.read_entry(name, limit))
        except JsonError as exc:
            raise ArchiveError(self.path, str(exc), name) from None

    def _entry(self, name: str) -> _Entry:
        normal = normalise_name(name)
        entry = self._entries.get(normal) if normal is not None else None
        if entry is None:
            raise ArchiveError(self.path, "is not in the archive", name)
        return entry

    # Layout --------------------------------------------------------------------------------------------

    def index(self) -> dict[str, Any]:
        """index.json, parsed (bounded, strict JSON); it must be an object."""
        if "index.json" not in self._entries:
            raise ArchiveError(self.path, "has no index.json: it is not an OCI image layout")
        value = self.read_json_entry("index.json")
        if not isinstance(value, dict):
            raise ArchiveError(self.path, "must be a JSON object", "index.json")
        return value

    def top_level(self) -> list[Descriptor]:
        """index.json's manifests, each a checked descriptor."""
        manifests = self.index().get("manifests")
        if not isinstance(manifests, list):
            raise ArchiveError(self.path, "manifests must be an array", "index.json")
        return [self._descriptor(m, f"index.json manifests[{i}]") for i, m in enumerate(manifests)]

    def children(self, descriptor: Descriptor) -> list[Descriptor]:
        """What a manifest ([config, *layers]) or an index (its manifests) points at; [] for other blobs."""
        if descriptor.media_type not in MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES:
            return []
        self._documents += 1
        if self._documents > MAX_DOCUMENTS:
            # An index may list a child many times over, nested: a small archive, exponential work.
            raise ArchiveError(self.path, f"its indexes list more than {MAX_DOCUMENTS} manifests in all")
        where = f"{_kind(descriptor)} {descriptor.digest}"
        size = self.blob_size(descriptor.digest)
        if size != descriptor.size:
            raise ArchiveError(
                self.path, f"{where} has {size} bytes but its descriptor says {descriptor.size}"
            )
        key = (descriptor.digest, descriptor.media_type)
        if key not in self._children:
            self._children[key] = self._read_children(descriptor, where)
        return list(self._children[key])

    def _read_children(self, descriptor: Descriptor, where: str) -> tuple[Descriptor, ...]:
        document = self.read_json_blob(descriptor.digest)
        if not isinstance(document, dict):
            raise ArchiveError(self.path, f"{where} must be a JSON object")
        if descriptor.media_type in INDEX_MEDIA_TYPES:
            return tuple(self._descriptors(document, "manifests", where))
        if "config" not in document:
            raise ArchiveError(self.path, f"{where} has no config")
        return (
            self._descriptor(document["config"], f"{where} config"),
            *self._descriptors(document, "layers", where),
        )

    def _descriptors(self, document: dict[str, Any], key: str, where: str) -> list[Descriptor]:
        items = document.get(key)
        if not isinstance(items, list):
            raise ArchiveError(self.path, f"{where}: {key} must be an array")
        return [self._descriptor(item, f"{where} {key}[{i}]") for i, item in enumerate(items)]

    def _descriptor(self, value: Any, where: str) -> Descriptor:
        try:
            return Descriptor.from_json(value, where)
        except SpecError as exc:
            raise ArchiveError(self.path, str(exc)) from None

    def docker_manifest(self) -> list[dict[str, Any]] | None:
        """docker's manifest.json (what `docker load` reads), or None when the archive has none."""
        if "manifest.json" not in self._entries:
            return None
        value = self.read_json_entry("manifest.json")
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ArchiveError(self.path, "must be a JSON array of objects", "manifest.json")
        return value

    # Blobs ---------------------------------------------------------------------------------------------

    def blob_name(self, digest: str) -> str:
        try:
            return blob_path(digest)
        except ValueError as exc:
            raise ArchiveError(self.path, str(exc)) from None

    def has_blob(self, digest: str) -> bool:
        return digest_problem(digest) is None and blob_path(digest) in self._entries

    def blob_size(self, digest: str) -> int:
        return self._blob(digest).size

    def open_blob(self, digest: str) -> BinaryIO:
        """A read-only, seekable view of the blob's bytes in the tar (not checked against the digest)."""
        self._blob(digest)
        return self.open_entry(self.blob_name(digest))

    def hash_blob(self, digest: str, sink: BinaryIO | None = None, progress: Progress | None = None) -> str:
        """Stream the blob through its digest's algorithm (and into `sink`); returns the digest it has."""
        size = self._blob(digest).size
        with self.open_blob(digest) as f:
            try:
                hasher = copy_hashed(f, sink, size, new_hasher(digest), progress)
            except ShortReadError:
                raise ArchiveError(
                    self.path, "the archive changed while it was read", self.blob_name(digest)
                ) from None
        return _digest_of(hasher)

    def read_blob(self, digest: str, limit: int = JSON_LIMIT) -> bytes:
        """A small blob's bytes, checked against its digest."""
        name = self.blob_name(digest)
        size = self._blob(digest).size
        if size > limit:
            raise ArchiveError(self.path, f"blob {digest} is {size} bytes, over the {limit}-byte limit", name)
        cached = self._verified.get(digest)
        if cached is not None:
            return cached
        data = self.read_entry(name, limit)
        hasher = new_hasher(digest)
        hasher.update(data)
        actual = _digest_of(hasher)
        if actual != digest:
            raise ArchiveError(
                self.path, f"content does not match digest {digest}: it hashes to {actual}", name
            )
        if self._verified_bytes + len(data) <= VERIFIED_CACHE:
            self._verified[digest] = data
            self._verified_bytes += len(data)
        return data

    def read_json_blob(self, digest: str, limit: int = JSON_LIMIT) -> Any:
        try:
            return parse_json(self.read_blob(digest, limit))
        except JsonError as exc:
            raise ArchiveError(self.path, f"blob {digest} {exc}", self.blob_name(digest)) from None

    def blob_range(self, digest: str) -> FileRange:
        """Where the blob's bytes lie in the archive file, for copying them without reading them here."""
        entry = self._blob(digest)
        return FileRange(self.path, entry.size, entry.offset)

    def _blob(self, digest: str) -> _Entry:
        entry = self._entries.get(self.blob_name(digest))
        if entry is None:
            raise ArchiveError(self.path, f"blob {digest} is missing")
        return entry


def _kind(descriptor: Descriptor) -> str:
    return "index" if descriptor.media_type in INDEX_MEDIA_TYPES else "manifest"


class _EntryView(io.RawIOBase):
    """Bytes [offset, offset+size) of the tar file; streams share the file, so reads seek under a lock."""

    def __init__(self, file: BinaryIO, lock: threading.Lock, entry: _Entry) -> None:
        super().__init__()
        self._file = file
        self._lock = lock
        self._start = entry.offset
        self._size = entry.size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._size - self._pos)
        if n <= 0:
            return 0
        with self._lock:
            self._file.seek(self._start + self._pos)
            got = self._file.readinto(view[:n])  # type: ignore[attr-defined]
        got = got or 0
        self._pos += got
        return int(got)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            position = offset
        elif whence == os.SEEK_CUR:
            position = self._pos + offset
        elif whence == os.SEEK_END:
            position = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise ValueError("negative seek position")
        self._pos = position
        return position

    def tell(self) -> int:
        return self._pos


class _TarScanner:
    """One pass over ustar/GNU/pax headers, seeking past data; refuses anything ambiguous or unsafe."""

    def __init__(self, file: BinaryIO, size: int, path: Path) -> None:
        self.file = file
        self.size = size
        self.path = path
        self.entries: dict[str, _Entry] = {}
        self.directories: set[str] = set()
        self.parents: set[str] = set()

    def fail(self, problem: str, entry: str | None = None) -> ArchiveError:
        return ArchiveError(self.path, problem, entry)

    def scan(self) -> dict[str, _Entry]:
        pos = 0
        pax: dict[str, str] | None = None
        long_name: str | None = None
        while True:
            if pos == self.size and pos > 0 and pax is None and long_name is None:
                return self.entries  # no end-of-archive blocks: GNU tar and tarfile accept this too
            header = self.read(pos, BLOCK)
            if len(header) < BLOCK:
                raise self.fail(self.short_problem(pos, header))
            if header == _ZERO_BLOCK:
                if pax is not None or long_name is not None:
                    raise self.fail(f"tar header at offset {pos}: extended header without an entry")
                return self.entries
            if not _checksum_ok(header):
                raise self.fail(self.bad_header_problem(pos, header))
            typeflag = header[156:157]
            size = _number(header[124:136])
            if size is None:
                raise self.fail(f"tar header at offset {pos}: the size field is not a number")
            if pax is not None and "size" in pax:
                size = self.pax_size(pax["size"], pos)
            data_at = pos + BLOCK
            if data_at + size > self.size:
                name = self.header_name(header, pax, long_name)
                raise self.fail(f"truncated: the entry needs {size} bytes, the file ends first", name)
            next_pos = data_at + size + (-size % BLOCK)
            if typeflag == b"x":
                if pax is not None:
                    raise self.fail(f"tar header at offset {pos}: two pax headers for one entry")
                pax = self.pax_records(self.metadata(data_at, size, _MAX_PAX, pos), pos)
            elif typeflag == b"g":
                records = self.pax_records(self.metadata(data_at, size, _MAX_PAX, pos), pos)
                if {"path", "size", "linkpath"} & records.keys() or any(
                    k.startswith("GNU.sparse") for k in records
                ):
                    raise self.fail(f"tar header at offset {pos}: global pax header sets names or sizes")
            elif typeflag == b"L":
                if long_name is not None:
                    raise self.fail(f"tar header at offset {pos}: two GNU long names for one entry")
                long_name = self.decode(self.metadata(data_at, size, _MAX_NAME, pos).split(b"\0", 1)[0], pos)
            elif typeflag == b"K":
                self.metadata(data_at, size, _MAX_NAME, pos)  # a long link target: the link itself is refused
            else:
                self.add(header, typeflag, pax, long_name, data_at, size)
                pax = None
                long_name = None
            pos = next_pos

    def add(
        self,
        header: bytes,
        typeflag: bytes,
        pax: dict[str, str] | None,
        long_name: str | None,
        data_at: int,
        size: int,
    ) -> None:
        raw = self.header_name(header, pax, long_name)
        name = normalise_name(raw)
        if raw.startswith("/"):
            raise self.fail("absolute path: entries must be relative to the archive root", raw)
        if "\0" in raw:
            raise self.fail("the name holds a NUL byte", repr(raw))
        if name is None:
            raise self.fail("'..' in the path: entries that may escape the archive root are refused", raw)
        if typeflag in _REFUSED_TYPES:
            raise self.fail(_REFUSED_TYPES[typeflag], raw)
        if pax is not None and any(key.startswith("GNU.sparse") for key in pax):
            raise self.fail("is a sparse file: sparse entries are refused", raw)
        directory = typeflag == b"5"
        if not directory and typeflag not in _REGULAR:
            raise self.fail(f"has unsupported tar entry type {typeflag.decode('latin-1')!r}", raw)
        if not directory and raw.endswith("/"):
            raise self.fail("a regular file whose name ends in '/'", raw)
        if not name:
            if directory:
                return  # "./": the root itself
            raise self.fail(f"tar entry at offset {data_at - BLOCK} has an empty name")
        if name in self.entries or name in self.directories:
            raise self.fail("duplicate entry name", raw)
        if len(self.entries) + len(self.directories) >= MAX_ENTRIES:
            raise self.fail(f"holds more than {MAX_ENTRIES} entries")
        if not directory and name in self.parents:
            raise self.fail("a file with the same name as a directory", raw)
        parent = name
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if parent in self.entries:
                raise self.fail(f"is inside {parent!r}, which is a file", raw)
            self.parents.add(parent)
        if directory:
            self.directories.add(name)
        else:
            self.entries[name] = _Entry(data_at, size)

    def read(self, pos: int, n: int) -> bytes:
        self.file.seek(pos)
        return self.file.read(n)

    def metadata(self, data_at: int, size: int, limit: int, pos: int) -> bytes:
        if size > limit:
            raise self.fail(f"tar header at offset {pos}: extended header of {size} bytes (limit {limit})")
        data = self.read(data_at, size)
        if len(data) != size:
            raise self.fail("the archive changed while it was read")
        return data

    def short_problem(self, pos: int, header: bytes) -> str:
        if pos > 0:
            return f"truncated: the tar header at offset {pos} is incomplete"
        if not header:
            return "is empty, not a tar archive"
        return _compressed_problem(header) or "is not a tar archive: it is too short"

    def bad_header_problem(self, pos: int, header: bytes) -> str:
        if pos > 0:
            return f"tar header at offset {pos} is corrupt (bad checksum)"
        return _compressed_problem(header) or "is not a tar archive (no valid tar header at offset 0)"

    def header_name(self, header: bytes, pax: dict[str, str] | None, long_name: str | None) -> str:
        if pax is not None and "path" in pax:
            return pax["path"]
        if long_name is not None:
            return long_name
        name = self.decode(header[0:100].split(b"\0", 1)[0], 0)
        if header[257:265] == b"ustar\x0000":
            prefix = self.decode(header[345:500].split(b"\0", 1)[0], 0)
            if prefix:
                return f"{prefix}/{name}"
        return name

    def decode(self, raw: bytes, pos: int) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"tar entry name {raw!r} is not UTF-8") from None

    def pax_size(self, text: str, pos: int) -> int:
        if not text.isascii() or not text.isdigit() or int(text) > MAX_SIZE:
            raise self.fail(f"tar header at offset {pos}: pax size {text!r} is not a valid size")
        return int(text)

    def pax_records(self, data: bytes, pos: int) -> dict[str, str]:
        """POSIX pax records, `"%d %s=%s\\n"`, where the length counts the whole record."""
        records: dict[str, str] = {}
        at = 0
        while at < len(data):
            if not data[at:].strip(b"\0"):
                break  # some writers pad the record block with NULs
            space = data.find(b" ", at, at + 20)
            length_text = data[at:space]
            if space < 0 or not length_text.isdigit():
                raise self.fail(f"pax header at offset {pos} is malformed")
            end = at + int(length_text)
            if end > len(data) or end <= space + 1 or data[end - 1 : end] != b"\n":
                raise self.fail(f"pax header at offset {pos} is malformed")
            key, eq, value = data[space + 1 : end - 1].partition(b"=")
            if not eq or not key:
                raise self.fail(f"pax header at offset {pos} is malformed")
            try:
                text_key, text_value = key.decode("utf-8"), value.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail(f"pax header at offset {pos} is not UTF-8") from None
            if text_key in records:
                raise self.fail(f"pax header at offset {pos} sets {text_key!r} twice")
            records[text_key] = text_value
            at = end
        return records


_SIGNED_HEADER = struct.Struct("148b8x356b")
_COMPRESSION_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2", b"\xfd7zXZ\0": "xz"}


def _compressed_problem(start: bytes) -> str | None:
    """`docker save | gzip` and the like: say what to do instead of "not a tar archive"."""
    for magic, kind in _COMPRESSION_MAGIC.items():
        if start.startswith(magic):
            return f"is {kind}-compressed: an OCI archive is a plain tar (decompress it first)"
    return None


def _checksum_ok(header: bytes) -> bool:
    """The header checksum, summed as unsigned bytes (POSIX) or signed ones (some old tars)."""
    stored = _number(header[148:156])
    if stored is None:
        return False
    unsigned = sum(header[:148]) + 8 * 0x20 + sum(header[156:])
    signed = sum(_SIGNED_HEADER.unpack(header)) + 8 * 0x20
    return stored in (unsigned, signed)


def _number(field: bytes) -> int | None:
    """A numeric header field: octal digits (space/NUL padded), or GNU base-256 when the top bit is set."""
    if field[0] & 0x80:
        if field[0] & 0x40:
            return None  # negative
        return int.from_bytes(bytes([field[0] & 0x3F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if not all(0x30 <= c <= 0x37 for c in text):
        return None
    return int(text, 8)
