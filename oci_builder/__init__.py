"""oci-tar-builder: package WebAssembly modules and components as OCI image archives.

The library behind the `oci-tar-builder` command and the GitHub Action. Typical use::

    from oci_builder import BuildRequest, Format, build, plan_image

    plan = plan_image(BuildRequest(name="app", repo="ghcr.io/me", modules=["app.wasm"]))
    result = build([plan], Path("app.tar"))
    print(result.images[0].manifest.digest)
"""

__version__ = "0.1.0"

from .build import BuildRequest, BuildResult, BuiltImage, build, plan_image
from .errors import InputError, OciBuilderError, OutputError, UsageError
from .formats import Format, ImagePlan
from .spec import Descriptor, Platform

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
