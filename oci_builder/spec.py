"""The image-spec objects we write, and their canonical JSON.

Canonical JSON (sorted keys, no insignificant whitespace, UTF-8) makes every digest a pure function of the
content: the same inputs give the same bytes on any machine, which is what reproducible archives rest on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .digest import sha256_digest

MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_TAR_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_RUNWASI_LAYER = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"
MEDIA_TYPE_WASM_CONFIG = "application/vnd.wasm.config.v0+json"
MEDIA_TYPE_WASM_LAYER = "application/wasm"

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"

LABEL_RUNWASI_LAYERS = "containerd.runwasi.layers"

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out


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
