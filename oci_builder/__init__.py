"""oci-tar-builder: package WebAssembly modules and components as OCI image archives.

The library behind the `oci-tar-builder` command and the GitHub Action. Typical use::

    from oci_builder import BuildRequest, Format, build, plan_image

    plan = plan_image(BuildRequest(name="app", repo="ghcr.io/me", modules=["app.wasm"]))
    result = build([plan], Path("app.tar"))
    print(result.images[0].manifest.digest)
"""

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .builder import BuildRequest, BuildResult, BuiltImage, build, plan_image
    from .errors import InputError, OciBuilderError, OutputError, UsageError
    from .formats import Format, ImagePlan
    from .spec import Descriptor, Platform

# Loaded on first use (PEP 562): `import oci_builder` and `oci-tar-builder --version` stay fast.
_EXPORTS = {
    "BuildRequest": "builder",
    "BuildResult": "builder",
    "BuiltImage": "builder",
    "build": "builder",
    "plan_image": "builder",
    "InputError": "errors",
    "OciBuilderError": "errors",
    "OutputError": "errors",
    "UsageError": "errors",
    "Format": "formats",
    "ImagePlan": "formats",
    "Descriptor": "spec",
    "Platform": "spec",
}

__all__ = [
    "BuildRequest",
    "BuildResult",
    "BuiltImage",
    "Descriptor",
    "Format",
    "ImagePlan",
    "InputError",
    "OciBuilderError",
    "OutputError",
    "Platform",
    "UsageError",
    "__version__",
    "build",
    "plan_image",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
