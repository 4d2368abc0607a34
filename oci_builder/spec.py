"""The image-spec objects we write, their canonical JSON, and the grammar checks for those we read.

Canonical JSON (sorted keys, no insignificant whitespace, UTF-8) makes every digest a pure function of the
content: the same inputs give the same bytes on any machine, which is what reproducible archives rest on.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .digest import digest_problem, sha256_digest

MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_TAR_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_GZIP_TAR_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_ENVOY_CONFIG = "application/vnd.module.wasm.config.v1+json"
MEDIA_TYPE_ENVOY_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
MEDIA_TYPE_RUNWASI_LAYER = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"
MEDIA_TYPE_WASM_CONFIG = "application/vnd.wasm.config.v0+json"
MEDIA_TYPE_WASM_LAYER = "application/wasm"
MEDIA_TYPE_EMPTY = "application/vnd.oci.empty.v1+json"
# Docker's schema 2 types: other tools' archives may hold them, and registries serve them.
MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MANIFEST_MEDIA_TYPES = frozenset({MEDIA_TYPE_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({MEDIA_TYPE_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST})

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_TITLE = "org.opencontainers.image.title"

LABEL_RUNWASI_LAYERS = "containerd.runwasi.layers"

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}

# RFC 6838 section 4.2: type "/" subtype, restricted-name characters, at most 127 each.
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}")
MAX_SIZE = (1 << 63) - 1
"""Descriptor sizes are int64 in image-spec."""


class SpecError(ValueError):
    """A JSON document breaks an image-spec rule; the message says where (`index.json manifests[0]: ...`)."""


def is_valid_media_type(value: str) -> bool:
    return bool(_MEDIA_TYPE.fullmatch(value))


def name_annotations(name: str, tag: str) -> dict[str, str]:
    """How an image is named in a layout: containerd reads the first, OCI tools the second."""
    return {ANNOTATION_IMAGE_NAME: f"{name}:{tag}", ANNOTATION_REF_NAME: tag}


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        """`os/architecture[/variant]`, as docker and containerd write platforms."""
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)

    @classmethod
    def from_config(cls, document: Mapping[str, Any]) -> Platform | None:
        """A config's os, architecture and variant: the platform an index entry may leave out."""
        os, architecture, variant = (document.get(key) for key in ("os", "architecture", "variant"))
        if not isinstance(os, str) or not isinstance(architecture, str):
            return None
        return cls(os, architecture, variant if isinstance(variant, str) else None)

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_json(cls, value: Any, where: str) -> Platform:
        """A descriptor's `platform`, checked; raises SpecError naming `where`."""
        _raise_if_any(platform_problems(value, where))
        return cls(value["os"], value["architecture"], value.get("variant"))


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def from_json(cls, value: Any, where: str) -> Descriptor:
        """A descriptor read from someone else's JSON, checked; raises SpecError naming `where`.

        `urls` and `data` are checked but not kept: we never fetch from URLs and always read the blob.
        """
        _raise_if_any(descriptor_problems(value, where))
        platform = value.get("platform")
        return cls(
            value["mediaType"],
            value["digest"],
            value["size"],
            dict(value.get("annotations") or {}),
            Platform.from_json(platform, f"{where} platform") if platform is not None else None,
            value.get("artifactType"),
        )


def _raise_if_any(problems: list[str]) -> None:
    if problems:
        raise SpecError("; ".join(problems))


_JSON_TYPE_NAMES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}


def json_type_name(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages about documents users did not write in Python."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def media_type_problem(value: Any) -> str | None:
    """Why `value` is not a media type image-spec accepts (RFC 6838 section 4.2), or None."""
    if not isinstance(value, str):
        return f"must be a string, not {json_type_name(value)}"
    if not is_valid_media_type(value):
        return f"{value!r} is not a media type (RFC 6838 type/subtype)"
    return None


def size_problem(value: Any) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return f"must be an integer, not {json_type_name(value)}"
    if not 0 <= value <= MAX_SIZE:
        return f"{value} is outside 0..2^63-1"
    return None


def string_list_problem(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"must be an array of strings, not {json_type_name(value)}"
    for i, item in enumerate(value):
        if not isinstance(item, str):
            return f"[{i}] must be a string, not {json_type_name(item)}"
    return None


def annotations_problems(value: Any, where: str) -> list[str]:
    """image-spec annotations.md: a map of string keys to string values (null or absent means none)."""
    if value is None:
        return []
    if not isinstance(value, dict):
        return [f"{where}: annotations must be an object of strings, not {json_type_name(value)}"]
    return [
        f"{where}: annotation {key!r} must be a string, not {json_type_name(item)}"
        for key, item in value.items()
        if not isinstance(item, str)
    ]


def platform_problems(value: Any, where: str) -> list[str]:
    """image-index.md: architecture and os are required strings; the optional fields have fixed types."""
    if not isinstance(value, dict):
        return [f"{where}: must be an object, not {json_type_name(value)}"]
    problems = [f"{where}: {key} is missing" for key in ("architecture", "os") if value.get(key) is None]
    for key in ("architecture", "os", "os.version", "variant"):
        if value.get(key) is not None and not isinstance(value[key], str):
            problems.append(f"{where}: {key} must be a string, not {json_type_name(value[key])}")
    for key in ("os.features", "features"):
        if value.get(key) is not None and (problem := string_list_problem(value[key])):
            problems.append(f"{where}: {key} {problem}")
    return problems


def descriptor_problems(value: Any, where: str) -> list[str]:
    """Every way `value` breaks image-spec descriptor.md; an empty list means it is a valid descriptor."""
    if not isinstance(value, dict):
        return [f"{where}: a descriptor must be an object, not {json_type_name(value)}"]
    problems: list[str] = []
    checks = (("mediaType", media_type_problem), ("digest", _digest_problem), ("size", size_problem))
    for key, check in checks:
        if key not in value:
            problems.append(f"{where}: {key} is missing")
        elif problem := check(value[key]):
            problems.append(f"{where}: {key} {problem}")
    if value.get("artifactType") is not None and (problem := media_type_problem(value["artifactType"])):
        problems.append(f"{where}: artifactType {problem}")
    if value.get("urls") is not None and (problem := string_list_problem(value["urls"])):
        problems.append(f"{where}: urls {problem}")
    if value.get("data") is not None and (problem := _base64_problem(value["data"])):
        problems.append(f"{where}: data {problem}")
    problems += annotations_problems(value.get("annotations"), where)
    if value.get("platform") is not None:
        problems += platform_problems(value["platform"], f"{where} platform")
    return problems


def _digest_problem(value: Any) -> str | None:
    problem = digest_problem(value)
    # digest_problem's messages start with "digest ...": drop the word, the caller names the field.
    return problem.removeprefix("digest ") if problem else None


def _base64_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be a base64 string, not {json_type_name(value)}"
    try:
        binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error:
        return "is not valid base64"
    return None


@dataclass(frozen=True)
class Blob:
    """A small blob held in memory (configs, manifests), with its descriptor's media type."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    def descriptor(self, **extra: Any) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.data), **extra)


def json_blob(media_type: str, value: Any) -> Blob:
    return Blob(media_type, canonical_json(value))


def manifest_blob(
    config: Descriptor,
    layers: list[Descriptor],
    annotations: Mapping[str, str],
    artifact_type: str | None = None,
) -> Blob:
    value: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations:
        value["annotations"] = dict(annotations)
    if artifact_type:
        value["artifactType"] = artifact_type
    return json_blob(MEDIA_TYPE_MANIFEST, value)


def index_json(manifests: list[Descriptor]) -> bytes:
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [m.to_json() for m in manifests],
        }
    )
