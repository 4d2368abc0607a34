"""The wasm reader on hand-encoded binaries: every branch of the import/export grammar, and every refusal.

Real toolchain output (wat2wasm modules, componentize-py components checked against `jco wit`) is tested in
test_component_world.py; here the encodings are spelled out byte by byte from Binary.md.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from oci_builder.wasm import ComponentWorld, WasmFormatError, WasmKind, read_wasm

MODULE_HEADER = b"\0asm\x01\x00\x00\x00"
COMPONENT_HEADER = b"\0asm\x0d\x00\x01\x00"


def leb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + leb(len(payload)) + payload


def name(text: str, tag: int = 0) -> bytes:
    raw = text.encode()
    return bytes([tag]) + leb(len(raw)) + raw


def vec(items: list[bytes]) -> bytes:
    return leb(len(items)) + b"".join(items)


# externdescs, one of each kind of Binary.md's grammar
CORE_MODULE = b"\x00\x11" + leb(0)
FUNC = b"\x01" + leb(3)
VALUE_EQ = b"\x02\x00" + leb(1)
VALUE_TYPE = b"\x02\x01\x73"
TYPE_EQ = b"\x03\x00" + leb(2)
TYPE_SUB_RESOURCE = b"\x03\x01"
COMPONENT = b"\x04" + leb(200)
INSTANCE = b"\x05" + leb(1)


def read(data: bytes) -> object:
    return read_wasm(io.BytesIO(data))


def test_core_module_is_a_module_without_world() -> None:
    data = MODULE_HEADER + section(1, b"\x01\x60\x00\x00") + section(0, name("custom")[1:] + b"xyz")
    info = read_wasm(io.BytesIO(data))
    assert info.kind is WasmKind.MODULE
    assert info.world is None


def test_module_from_wat2wasm(tmp_path: Path) -> None:
    wat = tmp_path / "m.wat"
    wat.write_text(
        '(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))) (func (export "_start")))'
    )
    subprocess.run(["wat2wasm", str(wat), "-o", str(tmp_path / "m.wasm")], check=True)
    with open(tmp_path / "m.wasm", "rb") as f:
        assert read_wasm(f).kind is WasmKind.MODULE


def test_component_imports_and_exports_every_externdesc() -> None:
    imports = [
        name("wasi:cli/environment@0.2.0") + INSTANCE,
        name("example:app/store@1.0.0", tag=1) + INSTANCE,
        name("log") + FUNC,
        name("core-thing") + CORE_MODULE,
        name("v1") + VALUE_EQ,
        name("v2") + VALUE_TYPE,
        name("t1") + TYPE_EQ,
        name("res") + TYPE_SUB_RESOURCE,
        name("nested") + COMPONENT,
    ]
    exports = [
        name("example:app/handler@1.0.0") + b"\x05" + leb(4) + b"\x00",
        name("run") + b"\x01" + leb(7) + b"\x01" + FUNC,
        name("core") + b"\x00\x11" + leb(0) + b"\x00",
        name("ty") + b"\x03" + leb(1) + b"\x01" + TYPE_SUB_RESOURCE,
    ]
    data = (
        COMPONENT_HEADER
        + section(1, MODULE_HEADER)  # a nested core module is skipped, not parsed
        + section(10, vec(imports[:3]))
        + section(7, b"\x00")
        + section(10, vec(imports[3:]))
        + section(11, vec(exports))
        + section(0, name("component-name")[1:] + b"\x00")
    )
    info = read_wasm(io.BytesIO(data))
    assert info.kind is WasmKind.COMPONENT
    assert info.world == ComponentWorld(
        imports=(
            "wasi:cli/environment@0.2.0",
            "example:app/store@1.0.0",
            "log",
            "core-thing",
            "v1",
            "v2",
            "t1",
            "res",
            "nested",
        ),
        exports=("example:app/handler@1.0.0", "run", "core", "ty"),
    )


def test_nested_component_sections_are_not_top_level() -> None:
    inner = COMPONENT_HEADER + section(10, vec([name("inner:only/thing") + INSTANCE]))
    data = (
        COMPONENT_HEADER + section(4, inner) + section(11, vec([name("outer") + b"\x04" + leb(0) + b"\x00"]))
    )
    info = read_wasm(io.BytesIO(data))
    assert info.world == ComponentWorld(imports=(), exports=("outer",))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"\x7fELF\x02\x01\x01\x00", "not a WebAssembly binary: it starts with 7f454c46"),
        (b"\0as", "not a WebAssembly binary"),
        (b"\0asm\x01\x00", "truncated: the header needs 8 bytes, the file has 6"),
        (b"\0asm\x02\x00\x00\x00", "unknown WebAssembly version/layer 02000000"),
        (MODULE_HEADER + b"\x01\x10\x00", "claims 16 bytes but only 1 remain: the file is truncated"),
        (MODULE_HEADER + b"\x01", "truncated at offset 9"),
        (MODULE_HEADER + b"\x01\xff\xff\xff\xff\x7f", "is out of range"),
        (MODULE_HEADER + b"\x01\xff\xff\xff\xff\xff\x01", "longer than 5 bytes"),
        (
            COMPONENT_HEADER + section(10, vec([name("x", tag=7) + FUNC])),
            "unknown import/export name encoding 0x07",
        ),
        (COMPONENT_HEADER + section(10, vec([name("x") + b"\x09\x00"])), "unknown externdesc 0x09"),
        (COMPONENT_HEADER + section(10, vec([name("x") + b"\x00\x10\x00"])), "is not a module (0x11)"),
        (COMPONENT_HEADER + section(10, vec([name("x") + FUNC]) + b"\x00"), "1 bytes left over"),
        (COMPONENT_HEADER + section(10, leb(1000) + name("x") + FUNC), "claims 1000 entries"),
        (COMPONENT_HEADER + section(11, vec([name("x") + b"\x09" + leb(0) + b"\x00"])), "unknown sort 0x09"),
        (
            COMPONENT_HEADER + section(11, vec([name("x") + b"\x00\x07" + leb(0) + b"\x00"])),
            "unknown core sort 0x07",
        ),
        (COMPONENT_HEADER + section(11, vec([name("x") + b"\x01" + leb(0) + b"\x02"])), "optional flag 0x02"),
        (COMPONENT_HEADER + section(10, vec([b"\x00\x02\xff\xfe" + FUNC])), "is not UTF-8"),
        (COMPONENT_HEADER + section(10, vec([b"\x00" + leb(70000)])), "is 70000 bytes long"),
    ],
)
def test_malformed_binaries_are_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(WasmFormatError) as info:
        read(data)
    assert message in str(info.value)
