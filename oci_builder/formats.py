"""What each wasm image format puts in its layers, config and manifest annotations.

One consumer, one shape (REFERENCE.md section 1): runwasi's wasm OCI image (raw wasm layers, the
`containerd.runwasi.layers` label), the CNCF Wasm OCI Artifact (one `application/wasm` layer, the wasm
config with the component's world), a rootfs image (the wasm file inside a tar layer) for runtimes that
need a root filesystem, and Istio's two Envoy plugin variants. A format sees the validated inputs and the
layer descriptors once written.
"""

from __future__ import annotations

import enum
import gzip
import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .archive import single_file_tar
from .digest import BlobPart, FileRange, copy_parts, hex_of
from .spec import (
    ANNOTATION_CREATED,
    ANNOTATION_TITLE,
    LABEL_RUNWASI_LAYERS,
    MEDIA_TYPE_ENVOY_CONFIG,
    MEDIA_TYPE_ENVOY_LAYER,
    MEDIA_TYPE_GZIP_TAR_LAYER,
    MEDIA_TYPE_IMAGE_CONFIG,
    MEDIA_TYPE_RUNWASI_LAYER,
    MEDIA_TYPE_TAR_LAYER,
    MEDIA_TYPE_WASM_CONFIG,
    MEDIA_TYPE_WASM_LAYER,
    Blob,
    Descriptor,
    Platform,
    json_blob,
    name_annotations,
)
from .wasm import WasmInfo, WasmKind

WASM_ARCHITECTURE = "wasm"
MODULE_OS = "wasip1"
COMPONENT_OS = "wasip2"
ROOTFS_FILE_MODE = 0o755
# crun picks its wasm handler for images carrying this annotation; Istio marks its compat variant with it.
ANNOTATION_WASM_VARIANT = "module.wasm.image/variant"
# Istio's loaders look for these names (github.com/solo-io/wasm spec, and spec-compat.md).
ENVOY_PLUGIN_FILE = "plugin.wasm"
ENVOY_RUNTIME_CONFIG_FILE = "runtime-config.json"
ENVOY_RUNTIME_CONFIG = b'{"type":"envoy_proxy"}'
ENVOY_COMPAT_MAX = 256 << 20
"""envoy-compat gzips the plugin in memory (the tar header needs the compressed size first)."""


class Format(enum.Enum):
    IMAGE = "image"
    ARTIFACT = "artifact"
    ROOTFS = "rootfs"
    ENVOY = "envoy"
    ENVOY_COMPAT = "envoy-compat"

    @property
    def single_module(self) -> bool:
        """Every format but runwasi's image packs exactly one wasm file, and nothing else."""
        return self is not Format.IMAGE

    @property
    def has_image_config(self) -> bool:
        """Formats whose config is an OCI image config, the only kind with labels."""
        return self in (Format.IMAGE, Format.ROOTFS, Format.ENVOY_COMPAT)


@dataclass(frozen=True)
class LayerInput:
    """One input file, checked when the build was planned. `origin` names where it came from, for errors."""

    path: Path
    media_type: str
    size: int
    origin: str
    wasm: WasmInfo | None = None


@dataclass(frozen=True)
class ImagePlan:
    """A validated description of one image: everything needed to write it, nothing left to check."""

    reference_name: str
    tags: tuple[str, ...]
    entry_name: str
    format: Format
    layers: tuple[LayerInput, ...]
    created: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    author: str | None = None

    @property
    def references(self) -> tuple[str, ...]:
        return tuple(f"{self.reference_name}:{tag}" for tag in self.tags)

    @property
    def reference(self) -> str:
        return self.references[0]


@dataclass(frozen=True)
class LayerBlob:
    """A layer to write: its parts, and its diff_id when that is not its own digest (compressed layers)."""

    media_type: str
    parts: tuple[BlobPart, ...]
    diff_id: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def layer_blobs(plan: ImagePlan, mtime: int) -> list[LayerBlob]:
    if plan.format is Format.ROOTFS:
        (layer,) = plan.layers
        header, trailer = single_file_tar(rootfs_file(plan), layer.size, ROOTFS_FILE_MODE, mtime)
        return [LayerBlob(MEDIA_TYPE_TAR_LAYER, (header, FileRange(layer.path, layer.size), trailer))]
    if plan.format is Format.ENVOY:
        # Istio wants two layers: the runtime config (also the manifest's config) and the plugin itself.
        (layer,) = plan.layers
        return [
            LayerBlob(
                MEDIA_TYPE_ENVOY_CONFIG,
                (ENVOY_RUNTIME_CONFIG,),
                None,
                {ANNOTATION_TITLE: ENVOY_RUNTIME_CONFIG_FILE},
            ),
            LayerBlob(
                MEDIA_TYPE_ENVOY_LAYER,
                (FileRange(layer.path, layer.size),),
                None,
                {ANNOTATION_TITLE: ENVOY_PLUGIN_FILE},
            ),
        ]
    if plan.format is Format.ENVOY_COMPAT:
        return [_gzip_tar_layer(plan.layers[0], ENVOY_PLUGIN_FILE, mtime)]
    return [LayerBlob(layer.media_type, (FileRange(layer.path, layer.size),)) for layer in plan.layers]


def _gzip_tar_layer(layer: LayerInput, name: str, mtime: int) -> LayerBlob:
    """A one-file tar, gzipped (Istio's compat variant accepts no other layer type).

    Compressed in memory: Envoy plugins are small, and the compressed size is the blob's size, which the
    tar header in front of it must state before its bytes are written. mtime 0 in the gzip header and a
    fixed level keep it reproducible.
    """
    header, trailer = single_file_tar(name, layer.size, 0o644, mtime)
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=9, mtime=0) as gz:
        uncompressed = copy_parts((header, FileRange(layer.path, layer.size), trailer), gz)  # type: ignore[arg-type]
    return LayerBlob(
        MEDIA_TYPE_GZIP_TAR_LAYER, (compressed.getvalue(),), "sha256:" + uncompressed.hexdigest()
    )


def rootfs_file(plan: ImagePlan) -> str:
    """The wasm file's name at the root of the filesystem: the image name's last component."""
    return plan.entry_name.rsplit("/", 1)[-1] + ".wasm"


def platform(plan: ImagePlan) -> Platform:
    if plan.format is Format.ARTIFACT and _is_component(plan.layers[0]):
        return Platform(COMPONENT_OS, WASM_ARCHITECTURE)
    return Platform(MODULE_OS, WASM_ARCHITECTURE)


def config_blob(
    plan: ImagePlan, layers: Sequence[Descriptor], diff_ids: Sequence[str], now: datetime
) -> Blob:
    """The config, once the layers are written: some formats name the layers' digests in it."""
    if plan.format is Format.ARTIFACT:
        return _artifact_config(plan, layers, now)
    if plan.format is Format.ENVOY:
        return Blob(MEDIA_TYPE_ENVOY_CONFIG, ENVOY_RUNTIME_CONFIG)
    value: dict[str, Any] = {
        "architecture": WASM_ARCHITECTURE,
        "os": MODULE_OS,
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    labels = dict(plan.labels)
    if plan.format is Format.ROOTFS:
        value["config"] = {"Entrypoint": [f"/{rootfs_file(plan)}"]}
        value["rootfs"]["diff_ids"] = list(diff_ids)
    elif plan.format is Format.ENVOY_COMPAT:
        value["config"] = {}
        value["rootfs"]["diff_ids"] = list(diff_ids)
    else:
        value["config"] = {"Entrypoint": [f"{plan.entry_name}.wasm"]}
        # Without layers in rootfs, two images with equal configs would share an ID (image-spec PR 1173).
        joined = "".join(hex_of(layer.digest) for layer in layers)
        labels[LABEL_RUNWASI_LAYERS] = hashlib.sha256(joined.encode()).hexdigest()
    if labels:
        value["config"]["Labels"] = labels
    if plan.created is not None:
        value["created"] = rfc3339(plan.created)
    if plan.author is not None:
        value["author"] = plan.author
    return json_blob(MEDIA_TYPE_IMAGE_CONFIG, value)


def _artifact_config(plan: ImagePlan, layers: Sequence[Descriptor], now: datetime) -> Blob:
    (layer,) = plan.layers
    component: dict[str, Any] | None = None
    if _is_component(layer):
        assert layer.wasm is not None and layer.wasm.world is not None
        component = {
            "exports": list(layer.wasm.world.exports),
            "imports": list(layer.wasm.world.imports),
            "target": None,
        }
    value = {
        "created": rfc3339(plan.created or now),
        "author": plan.author,
        "architecture": WASM_ARCHITECTURE,
        "os": platform(plan).os,
        "layerDigests": [d.digest for d in layers],
        "component": component,
    }
    return json_blob(MEDIA_TYPE_WASM_CONFIG, value)


def _is_component(layer: LayerInput) -> bool:
    return layer.wasm is not None and layer.wasm.kind is WasmKind.COMPONENT


def manifest_annotations(plan: ImagePlan) -> dict[str, str]:
    annotations = dict(plan.annotations)
    if plan.format is Format.ROOTFS:
        annotations.setdefault(ANNOTATION_WASM_VARIANT, "compat-smart")
    elif plan.format is Format.ENVOY_COMPAT:
        annotations.setdefault(ANNOTATION_WASM_VARIANT, "compat")
    if plan.created is not None:
        annotations.setdefault(ANNOTATION_CREATED, rfc3339(plan.created))
    annotations.update(name_annotations(plan.reference_name, plan.tags[0]))
    return annotations


def artifact_type(plan: ImagePlan) -> str | None:
    """OCI 1.1's artifactType for the artifact formats: their config's media type, which is what
    registries report for them anyway; images (runnable by a container runtime) carry none."""
    if plan.format is Format.ARTIFACT:
        return MEDIA_TYPE_WASM_CONFIG
    if plan.format is Format.ENVOY:
        return MEDIA_TYPE_ENVOY_CONFIG
    return None


def layer_media_type_for_module(fmt: Format) -> str:
    return MEDIA_TYPE_WASM_LAYER if fmt is Format.ARTIFACT else MEDIA_TYPE_RUNWASI_LAYER
