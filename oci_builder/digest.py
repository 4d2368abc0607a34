"""Digests and blob I/O: every blob is named by the SHA-256 of its bytes, so hashing is the floor of our cost.

`copy_hashed` reads each input byte once: the calling thread reads and hashes (hashlib releases the GIL on
large buffers) while a writer thread drains a small, fixed pool of buffers, so memory stays constant and
the copy hides behind the hash.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import queue
import re
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import InputError

CHUNK_SIZE = 1 << 20
_BUFFERS = 4

# image-spec descriptor.md: algorithm-component (separator component)* ":" encoded
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_SHA256_HEX_RE = re.compile(r"[a-f0-9]{64}")
_LOWER_HEX_RE = re.compile(r"[a-f0-9]+")
# image-spec descriptor.md's registered algorithms, and the length of their hex encoding.
_REGISTERED = {"sha256": 64, "sha512": 128}

Progress = Callable[[int], None]
"""Called with the number of bytes just processed."""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_problem(value: object) -> str | None:
    """Why `value` is not a digest image-spec accepts (None when it is); sha256 must be 64 lowercase hex."""
    if not isinstance(value, str):
        return f"digest must be a string, not {type(value).__name__}"
    if not _DIGEST_RE.fullmatch(value):
        return f"digest {value!r} does not match the grammar algorithm:encoded"
    algorithm, encoded = value.split(":", 1)
    hex_digits = _REGISTERED.get(algorithm)
    if hex_digits is None:
        return f"digest {value!r}: unsupported algorithm {algorithm!r} (registered: sha256, sha512)"
    if len(encoded) != hex_digits or not _LOWER_HEX_RE.fullmatch(encoded):
        return f"digest {value!r}: {algorithm} needs {hex_digits} lowercase hex digits"
    return None


def blob_path(digest: str) -> str:
    """Where image-layout.md puts a blob: `blobs/<algorithm>/<encoded>`; ValueError for a bad digest."""
    problem = digest_problem(digest)
    if problem:
        raise ValueError(problem)
    algorithm, encoded = digest.split(":", 1)
    return f"blobs/{algorithm}/{encoded}"


def hex_of(digest: str) -> str:
    """The encoded part of a sha256 digest: the blob's file name under blobs/sha256/."""
    algorithm, _, encoded = digest.partition(":")
    if algorithm != "sha256" or not _SHA256_HEX_RE.fullmatch(encoded):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return encoded


class ShortReadError(Exception):
    """The source ended before `size` bytes, or went on past it: it changed while we read it."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"expected {expected} bytes, read {got}: the file changed while it was read")
        self.expected = expected
        self.got = got


def copy_hashed(
    src: BinaryIO,
    dst: BinaryIO | None,
    size: int,
    hasher: hashlib._Hash | None = None,
    progress: Progress | None = None,
    *,
    to_end: bool = True,
) -> hashlib._Hash:
    """Copy exactly `size` bytes from src to dst (or only hash them when dst is None).

    Returns the hasher, updated with the bytes; a caller may pass one in to hash a blob made of parts.
    Raises ShortReadError if src holds fewer than `size` bytes from its position, or, with `to_end`, more.
    """
    h = hasher if hasher is not None else hashlib.sha256()
    if dst is None or size <= CHUNK_SIZE:
        _copy_serial(src, dst, size, h, progress)
    else:
        _copy_pipelined(src, dst, size, h, progress)
    if to_end and src.read(1):
        raise ShortReadError(size, size + 1)
    return h


def _copy_serial(
    src: BinaryIO, dst: BinaryIO | None, size: int, h: hashlib._Hash, progress: Progress | None
) -> None:
    buf = bytearray(min(CHUNK_SIZE, max(size, 1)))
    view = memoryview(buf)
    done = 0
    while done < size:
        n = src.readinto(view[: min(len(buf), size - done)])  # type: ignore[attr-defined]
        if not n:
            raise ShortReadError(size, done)
        chunk = view[:n]
        h.update(chunk)
        if dst is not None:
            dst.write(chunk)
        done += n
        if progress:
            progress(n)


def _copy_pipelined(
    src: BinaryIO, dst: BinaryIO, size: int, h: hashlib._Hash, progress: Progress | None
) -> None:
    free: queue.Queue[bytearray] = queue.Queue()
    for _ in range(_BUFFERS):
        free.put(bytearray(CHUNK_SIZE))
    filled: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
    failure: list[BaseException] = []

    def write() -> None:
        while (item := filled.get()) is not None:
            buf, n = item
            if not failure:
                try:
                    dst.write(memoryview(buf)[:n])
                except BaseException as exc:  # handed to the reading thread, which re-raises it
                    failure.append(exc)
            free.put(buf)

    writer = threading.Thread(target=write, name="blob-writer", daemon=True)
    writer.start()
    done = 0
    try:
        while done < size and not failure:
            buf = free.get()
            n = src.readinto(memoryview(buf)[: min(CHUNK_SIZE, size - done)])  # type: ignore[attr-defined]
            if not n:
                free.put(buf)
                raise ShortReadError(size, done)
            h.update(memoryview(buf)[:n])
            filled.put((buf, n))
            done += n
            if progress:
                progress(n)
    finally:
        filled.put(None)
        writer.join()
    if failure:
        raise failure[0]


@dataclass(frozen=True)
class FileRange:
    """`size` bytes of a file from `offset`: a whole input file (offset 0, `size` its size when it was
    checked), or a blob inside another archive.

    The file must not change while it is read (its size and mtime are compared before and after).
    """

    path: Path
    size: int
    offset: int = 0


BlobPart = bytes | FileRange
"""A blob is written from parts: bytes we made (tar headers, padding) and input files, in order."""


def parts_size(parts: Sequence[BlobPart]) -> int:
    return sum(len(p) if isinstance(p, bytes) else p.size for p in parts)


def copy_parts(
    parts: Sequence[BlobPart], dst: BinaryIO | None, progress: Progress | None = None
) -> hashlib._Hash:
    """Stream every part into dst (or only hash when dst is None); the hasher covers the whole blob.

    An input file that changes while it is read (its size or mtime moves) fails the copy: what was hashed
    might not be what was written.
    """
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes):
            h.update(part)
            if dst is not None:
                dst.write(part)
            continue
        try:
            src = open(part.path, "rb", buffering=0)  # noqa: SIM115 (closed just below)
        except OSError as exc:
            raise InputError(str(part.path), exc.strerror or str(exc), path=part.path) from None
        with src:
            before = os.fstat(src.fileno())
            _check_size(part, before.st_size)
            src.seek(part.offset)
            try:
                if dst is not None and _is_file(dst):
                    _copy_file_alongside(src, dst, part, h, progress)
                else:  # into memory (a BytesIO, a GzipFile over one): an OSError here is the input's
                    with _reading(part):
                        copy_hashed(src, dst, part.size, h, progress, to_end=False)
            except ShortReadError as exc:
                raise InputError(str(part.path), str(exc), path=part.path) from None
            after = os.fstat(src.fileno())
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                raise InputError(str(part.path), "the file changed while it was read", path=part.path)
    return h


@contextlib.contextmanager
def _reading(part: FileRange) -> Iterator[None]:
    """Blame the input file, not the archive being written, for an I/O error while reading `part`."""
    try:
        yield
    except OSError as exc:
        raise InputError(str(part.path), f"read failed: {exc.strerror or exc}", path=part.path) from None


def _check_size(part: FileRange, file_size: int) -> None:
    """A whole file must still have the size it was checked with; a range must still fit in its file."""
    end = part.offset + part.size
    if file_size < end or (part.offset == 0 and file_size != part.size):
        wanted = "exactly" if part.offset == 0 else "at least"
        problem = f"the file changed: it has {file_size} bytes, not {wanted} {end}"
        raise InputError(str(part.path), problem, path=part.path)


def _is_file(stream: BinaryIO) -> bool:
    """A plain file stream, whose descriptor receives exactly what is written to it (not a GzipFile)."""
    if not isinstance(stream, io.BufferedWriter | io.BufferedRandom | io.FileIO):
        return False
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _copy_file_alongside(
    src: BinaryIO, dst: BinaryIO, part: FileRange, h: hashlib._Hash, progress: Progress | None
) -> None:
    """The kernel copies src into dst on the other core while this thread reads and hashes it.

    Both read the same pages from the page cache, so the copy costs no wall time: the build runs at the
    speed of one SHA-256 pass.
    """
    dst.flush()
    start = dst.tell()
    failure: list[BaseException] = []

    def copy() -> None:
        try:
            _kernel_copy(src.fileno(), dst.fileno(), part.size, part.offset, start)
        except BaseException as exc:  # handed to the hashing thread, which re-raises it
            failure.append(exc)

    copier = threading.Thread(target=copy, name="blob-copy", daemon=True)
    copier.start()
    try:
        with _reading(part):
            copy_hashed(src, None, part.size, h, progress, to_end=False)
    finally:
        copier.join()
    if failure:
        raise failure[0]
    dst.seek(start + part.size)


_NO_KERNEL_COPY = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM}


def _kernel_copy(in_fd: int, out_fd: int, size: int, in_offset: int, out_offset: int) -> None:
    """copy_file_range at explicit offsets (file positions untouched); pread/pwrite where it is refused."""
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(in_fd, out_fd, size - done, in_offset + done, out_offset + done)
            if not n:
                raise ShortReadError(size, done)
            done += n
    except OSError as exc:
        if exc.errno not in _NO_KERNEL_COPY:
            raise
        while done < size:
            chunk = os.pread(in_fd, min(CHUNK_SIZE, size - done), in_offset + done)
            if not chunk:
                raise ShortReadError(size, done) from None
            view = memoryview(chunk)
            while view:
                written = os.pwrite(out_fd, view, out_offset + done)
                view = view[written:]
                done += written
