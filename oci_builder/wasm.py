"""The WebAssembly binary reader: module or component, and a component's top-level imports and exports.

It walks section headers and seeks over payloads it does not need, so even a 1 GiB module costs a few
reads. Every length is checked against what is left of the enclosing section or file before anything is
read, so a hostile or truncated binary ends in WasmFormatError, never in a hang or a huge allocation.
Format: WebAssembly/component-model design/mvp/Binary.md.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"\0asm"
MODULE_VERSION = b"\x01\x00\x00\x00"
COMPONENT_LAYER = b"\x01\x00"

_SECTION_IMPORT = 10
_SECTION_EXPORT = 11
_MAX_NAME = 1 << 16


class WasmFormatError(ValueError):
    """Not a WebAssembly binary, or a malformed one; the message gives the byte offset."""


class WasmKind(enum.Enum):
    MODULE = "module"
    COMPONENT = "component"


@dataclass(frozen=True)
class ComponentWorld:
    """What a component imports and exports at top level, in the binary's order."""

    imports: tuple[str, ...]
    exports: tuple[str, ...]


@dataclass(frozen=True)
class WasmInfo:
    kind: WasmKind
    world: ComponentWorld | None = None


def read_wasm(f: BinaryIO) -> WasmInfo:
    """Read a whole binary's structure from a seekable file positioned at its start."""
    start = f.tell()
    end = f.seek(0, os.SEEK_END)
    f.seek(start)
    preamble = f.read(8)
    kind = _kind(preamble)
    reader = _Reader(f, start + 8, end)
    imports: list[str] = []
    exports: list[str] = []
    while reader.pos < end:
        section_start = reader.pos
        section_id = reader.byte()
        size = reader.u32()
        if size > end - reader.pos:
            raise WasmFormatError(
                f"section {section_id} at offset {section_start} claims {size} bytes but only "
                f"{end - reader.pos} remain: the file is truncated"
            )
        payload_end = reader.pos + size
        if kind is WasmKind.COMPONENT and section_id in (_SECTION_IMPORT, _SECTION_EXPORT):
            section = _Reader(f, reader.pos, payload_end)
            if section_id == _SECTION_IMPORT:
                imports.extend(section.vec(section.import_name))
            else:
                exports.extend(section.vec(section.export_name))
            if section.pos != payload_end:
                raise WasmFormatError(
                    f"section {section_id} at offset {section_start} has {payload_end - section.pos} "
                    "bytes left over after its entries"
                )
        reader.seek(payload_end)
    world = ComponentWorld(tuple(imports), tuple(exports)) if kind is WasmKind.COMPONENT else None
    return WasmInfo(kind, world)


def _kind(preamble: bytes) -> WasmKind:
    if len(preamble) < 4 or preamble[:4] != MAGIC:
        if not preamble:
            raise WasmFormatError("the file is empty")
        raise WasmFormatError(f"not a WebAssembly binary: it starts with {preamble[:4].hex()}, not 0061736d")
    if len(preamble) < 8:
        raise WasmFormatError(f"truncated: the header needs 8 bytes, the file has {len(preamble)}")
    version = preamble[4:8]
    if version == MODULE_VERSION:
        return WasmKind.MODULE
    if version[2:4] == COMPONENT_LAYER:
        return WasmKind.COMPONENT
    raise WasmFormatError(f"unknown WebAssembly version/layer {version.hex()} at offset 4")


class _Reader:
    """Bounded reads from [pos, end) of a seekable file."""

    def __init__(self, f: BinaryIO, pos: int, end: int) -> None:
        self.f = f
        self.pos = pos
        self.end = end
        f.seek(pos)

    def seek(self, pos: int) -> None:
        self.pos = pos
        self.f.seek(pos)

    def bytes(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise WasmFormatError(
                f"truncated at offset {self.pos}: need {n} bytes, {self.end - self.pos} left"
            )
        data = self.f.read(n)
        if len(data) != n:
            raise WasmFormatError(f"truncated at offset {self.pos}: the file ended early")
        self.pos += n
        return data

    def byte(self) -> int:
        return self.bytes(1)[0]

    def u32(self) -> int:
        """Unsigned LEB128, at most 5 bytes, value below 2**32."""
        start = self.pos
        result = 0
        for shift in range(0, 35, 7):
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                if result >= 1 << 32:
                    raise WasmFormatError(f"LEB128 u32 at offset {start} is out of range")
                return result
        raise WasmFormatError(f"LEB128 u32 at offset {start} is longer than 5 bytes")

    def s33(self) -> None:
        """A signed LEB128 of up to 33 bits (a valtype): only skipped."""
        start = self.pos
        for _ in range(5):
            if not self.byte() & 0x80:
                return
        raise WasmFormatError(f"LEB128 s33 at offset {start} is longer than 5 bytes")

    def name(self) -> str:
        start = self.pos
        n = self.u32()
        if n > _MAX_NAME:
            raise WasmFormatError(f"name at offset {start} is {n} bytes long")
        raw = self.bytes(n)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WasmFormatError(f"name at offset {start} is not UTF-8") from exc

    def vec(self, item: Callable[[], str]) -> list[str]:
        count = self.u32()
        # Each entry takes at least 3 bytes, so a count larger than that bound is a lie we can refuse early.
        if count > (self.end - self.pos) // 3 + 1:
            raise WasmFormatError(
                f"vector at offset {self.pos} claims {count} entries in {self.end - self.pos} bytes"
            )
        return [item() for _ in range(count)]

    def extern_name(self) -> str:
        start = self.pos
        tag = self.byte()
        if tag not in (0x00, 0x01):
            raise WasmFormatError(f"unknown import/export name encoding 0x{tag:02x} at offset {start}")
        return self.name()

    def import_name(self) -> str:
        name = self.extern_name()
        self.extern_desc()
        return name

    def export_name(self) -> str:
        name = self.extern_name()
        self.sort_idx()
        if self.optional():
            self.extern_desc()
        return name

    def optional(self) -> bool:
        start = self.pos
        flag = self.byte()
        if flag > 1:
            raise WasmFormatError(f"optional flag 0x{flag:02x} at offset {start} is neither 0 nor 1")
        return flag == 1

    def sort_idx(self) -> None:
        start = self.pos
        sort = self.byte()
        if sort == 0x00:
            core_sort = self.byte()
            if core_sort not in (0x00, 0x01, 0x02, 0x03, 0x04, 0x10, 0x11, 0x12):
                raise WasmFormatError(f"unknown core sort 0x{core_sort:02x} at offset {start + 1}")
        elif sort > 0x05:
            raise WasmFormatError(f"unknown sort 0x{sort:02x} at offset {start}")
        self.u32()

    def extern_desc(self) -> None:
        start = self.pos
        kind = self.byte()
        if kind == 0x00:
            if self.byte() != 0x11:
                raise WasmFormatError(f"core extern at offset {start} is not a module (0x11)")
            self.u32()
        elif kind in (0x01, 0x04, 0x05):
            self.u32()
        elif kind == 0x02:
            if self.optional():
                self.s33()
            else:
                self.u32()
        elif kind == 0x03:
            if not self.optional():
                self.u32()
        else:
            raise WasmFormatError(f"unknown externdesc 0x{kind:02x} at offset {start}")
