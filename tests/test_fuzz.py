"""Fuzzing with hypothesis: mutated archives and mutated wasm binaries end in clean errors, never a traceback.

Archives we built are damaged the ways real damage and real attacks look (flipped bytes, truncation, tar
headers copied over others, headers whose size or name lies under a valid checksum, hostile headers
inserted), then opened, inspected and verified. Wasm binaries get the same treatment and are fed to
read_wasm. Only OciBuilderError (ArchiveError is one) and WasmFormatError may come out; hypothesis's
deadline is what bounds the time of each example, so a hang fails the test.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import tarfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tamper import build_with_cli

from oci_builder.cli import main
from oci_builder.errors import OciBuilderError
from oci_builder.inspection import inspect_archive
from oci_builder.reader import OciArchive
from oci_builder.verify import verify
from oci_builder.wasm import WasmFormatError, read_wasm

BLOCK = 512


@dataclass(frozen=True)
class Seed:
    data: bytes
    headers: list[int]
    contents: list[tuple[int, int]]


FUZZ = settings(
    max_examples=250,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory, hello_wasm: Path) -> dict[str, Seed]:
    """Sound archives of each format, with where their tar headers and entries' bytes are."""
    work = tmp_path_factory.mktemp("fuzz-seeds")
    layer = work / "layer.tar.gz"
    layer.write_bytes(gzip.compress(b"some file content " * 200))
    builds = {
        "image": ["-n", "app", "-t", "1", "-t", "2", "-m", str(hello_wasm)],
        "gzip": [
            "-n",
            "app",
            "-m",
            str(hello_wasm),
            "--layer",
            f"application/vnd.oci.image.layer.v1.tar+gzip={layer}",
        ],
        "artifact": ["-n", "app", "-a", "-m", str(hello_wasm)],
        "rootfs": ["-n", "app", "--rootfs", "-m", str(hello_wasm)],
    }
    out = {}
    for name, args in builds.items():
        path = build_with_cli(work / f"{name}.tar", *args)
        with tarfile.open(path) as tar:
            members = tar.getmembers()
        headers = [member.offset for member in members]
        contents = [(m.offset_data, m.size) for m in members if m.size]
        out[name] = Seed(path.read_bytes(), headers, contents)
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _fix_checksum(header: bytearray) -> None:
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)


def _set_field(data: bytearray, at: int, start: int, value: bytes, width: int) -> None:
    header = bytearray(data[at : at + BLOCK])
    if len(header) < BLOCK:
        return
    header[start : start + width] = value[:width].ljust(width, b"\0")
    _fix_checksum(header)
    data[at : at + BLOCK] = header


HOSTILE_NAMES = [
    b"../x",
    b"/abs",
    b"index.json",
    b"./index.json",
    b"blobs",
    b"blobs/sha256",
    b"oci-layout",
    b"a/../b",
]
TYPEFLAGS = [b"0", b"1", b"2", b"3", b"5", b"6", b"7", b"x", b"g", b"L", b"K", b"S", b"\0"]


def mutated_archive(data_object: st.DataObject, seed: Seed) -> bytes:
    """Apply 1-4 drawn mutations (drawing small choices, never the bytes: examples stay cheap to keep)."""
    draw = data_object.draw
    original, headers = seed.data, seed.headers
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(
            st.sampled_from(
                ["content", "content", "flip", "truncate", "splice", "size", "name", "type", "insert", "zero"]
            )
        )
        header = draw(st.sampled_from(headers))
        if op == "content":  # the tar stays sound: a blob, a JSON document or a layer is damaged
            start, size = draw(st.sampled_from(seed.contents))
            at = start + draw(st.integers(0, size - 1))
            if at < len(data):
                data[at] = draw(st.one_of(st.integers(0, 255), st.sampled_from(b'{}[]",:0 ')))
        elif op == "flip" and data:
            at = draw(st.one_of(st.integers(0, len(data) - 1), st.integers(header, header + BLOCK - 1)))
            if at < len(data):
                data[at] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif op == "splice":
            source = draw(st.sampled_from(headers))
            data[header : header + BLOCK] = original[source : source + BLOCK]
        elif op == "size":
            size = draw(st.one_of(st.integers(0, 4096), st.integers(0, 1 << 33)))
            _set_field(data, header, 124, b"%011o" % size, 12)
        elif op == "name":
            _set_field(data, header, 0, draw(st.sampled_from(HOSTILE_NAMES)), 100)
        elif op == "type":
            _set_field(data, header, 156, draw(st.sampled_from(TYPEFLAGS)), 1)
        elif op == "insert":
            info = tarfile.TarInfo(draw(st.sampled_from(HOSTILE_NAMES)).decode())
            info.type = draw(st.sampled_from(TYPEFLAGS))
            info.size = draw(st.integers(0, 2048))
            block = info.tobuf(tarfile.USTAR_FORMAT)
            data[header:header] = block + bytes(draw(st.binary(max_size=64))).ljust(
                -info.size % BLOCK + info.size, b"\0"
            )
        elif op == "zero":
            data[header : header + BLOCK] = bytes(BLOCK)
    return bytes(data)


def exercise(path: Path) -> None:
    """Everything a user can do with an archive; only our own errors may escape it."""
    try:
        with OciArchive.open(path) as archive:
            try:
                inspect_archive(archive)
            except OciBuilderError:
                event("inspect refused")
            found = verify(archive, max_expanded=1 << 26)
            event("verified clean" if found.ok else "verify found problems")
    except OciBuilderError as exc:
        message = str(exc)
        assert message and "\n" not in message, message
        event("refused at open")
    out, err = io.StringIO(), io.StringIO()
    for command in (["verify"], ["inspect"], ["inspect", "--json"]):
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([command[0], str(path), *command[1:]])
        assert status in (0, 1), err.getvalue()
        assert "internal error" not in err.getvalue(), err.getvalue()


@FUZZ
@given(data=st.data())
def test_mutated_archives_end_in_clean_errors(
    seeds: dict[str, Seed], scratch: Path, data: st.DataObject
) -> None:
    seed = seeds[data.draw(st.sampled_from(sorted(seeds)))]
    path = scratch / "mutated.tar"
    path.write_bytes(mutated_archive(data, seed))
    exercise(path)


# Wasm ------------------------------------------------------------------------------------------------


def _leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@pytest.fixture(scope="module")
def wasm_seeds(hello_wasm: Path, component_wasm: Path) -> dict[str, bytes]:
    return {"module": hello_wasm.read_bytes(), "component": component_wasm.read_bytes()}


LEB_TRAPS = [b"\xff\xff\xff\xff\x0f", b"\x80\x80\x80\x80\x80\x01", b"\xff\xff\xff\xff\x7f", b"\x00", b"\x7f"]


def mutated_wasm(data_object: st.DataObject, seed: bytes) -> bytes:
    draw = data_object.draw
    data = bytearray(seed)
    # the component's top-level imports are near the start, its exports near the end
    near_ends = st.one_of(
        st.integers(0, min(len(data), 16384) - 1), st.integers(max(0, len(data) - 60000), len(data) - 1)
    )
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "leb", "delete"]))
        at = draw(st.one_of(near_ends, st.integers(0, len(data))))
        if op == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "leb":
            data[at:at] = draw(st.sampled_from(LEB_TRAPS))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


@st.composite
def crafted_component(draw: st.DrawFn) -> bytes:
    """A component header and sections of fuzzed bytes: the import/export parser gets them all."""
    out = bytearray(b"\0asm\x0d\x00\x01\x00")
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from([10, 11, 0, 7, 255]))
        payload = draw(st.binary(max_size=96))
        size = draw(st.one_of(st.just(len(payload)), st.integers(0, 1 << 32)))
        out += bytes([section]) + _leb(size) + payload
    return bytes(out)


def _read(data: bytes) -> None:
    with contextlib.suppress(WasmFormatError):
        read_wasm(io.BytesIO(data))


@FUZZ
@given(data=st.data())
def test_mutated_wasm_binaries_end_in_clean_errors(wasm_seeds: dict[str, bytes], data: st.DataObject) -> None:
    _read(mutated_wasm(data, wasm_seeds[data.draw(st.sampled_from(sorted(wasm_seeds)))]))


@settings(max_examples=400, deadline=timedelta(seconds=2))
@given(crafted_component())
def test_crafted_components_end_in_clean_errors(binary: bytes) -> None:
    _read(binary)
