"""Our pure-Python component reader against independent truth: a componentize-py build read by `jco wit`."""

from __future__ import annotations

from pathlib import Path

from realtools import jco_wit, wit_imports_exports

from oci_builder.wasm import WasmKind, read_wasm


def test_component_world_matches_jco(component_wasm: Path, jco: Path) -> None:
    jco_imports, jco_exports = wit_imports_exports(jco_wit(component_wasm))
    with open(component_wasm, "rb") as f:
        info = read_wasm(f)
    assert info.kind is WasmKind.COMPONENT
    assert info.world is not None
    assert list(info.world.imports) == jco_imports
    assert list(info.world.exports) == jco_exports


def test_component_world_has_what_the_wit_declares(component_wasm: Path) -> None:
    with open(component_wasm, "rb") as f:
        world = read_wasm(f).world
    assert world is not None
    # Named in tests/data/components/wit/world.wit; wasi:cli's version is whatever componentize-py links.
    for name in ("wasi:logging/logging@0.1.0-draft", "example:app/config@1.0.0", "clock-ms"):
        assert name in world.imports
    assert any(name.startswith("wasi:cli/environment@0.2.") for name in world.imports)
    for name in ("example:app/handler@1.0.0", "greet"):
        assert name in world.exports


def test_hello_example_is_a_core_module(hello_wasm: Path) -> None:
    with open(hello_wasm, "rb") as f:
        info = read_wasm(f)
    assert info.kind is WasmKind.MODULE
    assert info.world is None
