"""`inspect`: what an archive holds, image by image, as text modelled on `regctl manifest get`, or as JSON.

The view is built first (ImageView), then rendered, so the text and the JSON always say the same thing.
Reading goes through OciArchive, so manifests and configs are checked against their digests; layers are
described from their descriptors and not read (`verify` reads them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from .progress import human_size
from .reader import MAX_NESTING, ArchiveError, OciArchive
from .spec import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_IMAGE_CONFIG,
    MEDIA_TYPE_WASM_CONFIG,
    Descriptor,
    Platform,
    annotations_problems,
)


@dataclass(frozen=True)
class ComponentView:
    """A component's top-level world, as the artifact's config states it."""

    imports: tuple[str, ...]
    exports: tuple[str, ...]
    target: str | None


@dataclass(frozen=True)
class WasmView:
    """What a Wasm OCI Artifact's config says about its module or component."""

    os: str | None
    architecture: str | None
    component: ComponentView | None


@dataclass(frozen=True)
class ImageView:
    """One entry of index.json (or of a nested index): a manifest with its config and layers, or an index."""

    name: str | None
    descriptor: Descriptor
    annotations: Mapping[str, str]
    platform: Platform | None
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    wasm: WasmView | None = None
    manifests: tuple[ImageView, ...] = ()

    @property
    def total_size(self) -> int:
        """The layers' sizes added up, as regctl counts it."""
        return sum(layer.size for layer in self.layers)


def inspect_archive(archive: OciArchive) -> list[ImageView]:
    return [_view(archive, descriptor, 0) for descriptor in archive.top_level()]


def _view(archive: OciArchive, descriptor: Descriptor, depth: int) -> ImageView:
    name = descriptor.annotations.get(ANNOTATION_IMAGE_NAME) or descriptor.annotations.get(
        ANNOTATION_REF_NAME
    )
    if descriptor.media_type not in MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES:
        return ImageView(name, descriptor, {}, descriptor.platform)
    children = archive.children(descriptor)
    annotations = _annotations(archive, descriptor)
    if descriptor.media_type in INDEX_MEDIA_TYPES:
        if depth >= MAX_NESTING:
            raise ArchiveError(archive.path, f"indexes nest deeper than {MAX_NESTING} levels")
        manifests = tuple(_view(archive, child, depth + 1) for child in children)
        return ImageView(name, descriptor, annotations, descriptor.platform, manifests=manifests)
    config, *layers = children
    platform, wasm = descriptor.platform, None
    if config.media_type in (MEDIA_TYPE_IMAGE_CONFIG, MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_WASM_CONFIG):
        document = archive.read_json_blob(config.digest)
        if not isinstance(document, dict):
            raise ArchiveError(archive.path, f"config {config.digest} must be a JSON object")
        platform = platform or Platform.from_config(document)
        if config.media_type == MEDIA_TYPE_WASM_CONFIG:
            wasm = WasmView(
                _text(document.get("os")), _text(document.get("architecture")), _component(document)
            )
    return ImageView(name, descriptor, annotations, platform, config, tuple(layers), wasm)


def _annotations(archive: OciArchive, descriptor: Descriptor) -> dict[str, str]:
    """The manifest's (or index's) own annotations; children() has already checked the digest."""
    value = archive.read_json_blob(descriptor.digest).get("annotations")
    problems = annotations_problems(value, f"{descriptor.digest}")
    if problems:
        raise ArchiveError(archive.path, problems[0])
    return dict(value or {})


def _component(document: dict[str, Any]) -> ComponentView | None:
    value = document.get("component")
    if not isinstance(value, dict):
        return None
    return ComponentView(
        _names(value.get("imports")), _names(value.get("exports")), _text(value.get("target"))
    )


def _names(value: Any) -> tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# JSON --------------------------------------------------------------------------------------------------


def images_json(images: list[ImageView]) -> list[dict[str, Any]]:
    return [_image_json(image) for image in images]


def _image_json(image: ImageView) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": image.name,
        "mediaType": image.descriptor.media_type,
        "digest": image.descriptor.digest,
        "size": image.descriptor.size,
        "annotations": dict(image.annotations),
        "indexAnnotations": dict(image.descriptor.annotations),
        "platform": image.platform.to_json() if image.platform else None,
        "artifactType": image.descriptor.artifact_type,
    }
    if image.descriptor.media_type in INDEX_MEDIA_TYPES:
        out["manifests"] = [_image_json(child) for child in image.manifests]
        return out
    out["totalSize"] = image.total_size
    out["config"] = image.config.to_json() if image.config else None
    out["layers"] = [layer.to_json() for layer in image.layers]
    if image.wasm is not None:
        component = image.wasm.component
        out["wasm"] = {
            "os": image.wasm.os,
            "architecture": image.wasm.architecture,
            "component": None
            if component is None
            else {
                "imports": list(component.imports),
                "exports": list(component.exports),
                "target": component.target,
            },
        }
    return out


# Text --------------------------------------------------------------------------------------------------

_Line = tuple[str, str, str | None]
"""(indent, label, value): a label alone heads a section, a value alone is a list item, neither is a blank."""
_BLANK: _Line = ("", "", None)


def render_text(images: list[ImageView], out: TextIO) -> None:
    """regctl's layout: `Label:` then the value in one aligned column, a blank line between sections."""
    for i, image in enumerate(images):
        if i:
            out.write("\n")
        lines = _image_lines(image, "")
        width = max(len(indent) + len(label) + 2 for indent, label, value in lines if label and value)
        for indent, label, value in lines:
            if not label:
                out.write(f"{indent}{value}\n" if value else "\n")
            elif value is None:
                out.write(f"{indent}{label}:\n")
            else:
                out.write(f"{f'{indent}{label}:':<{width}}{value}\n")


def _image_lines(image: ImageView, indent: str) -> list[_Line]:
    lines: list[_Line] = []
    if image.name:
        lines.append((indent, "Name", image.name))
    lines.append((indent, "MediaType", image.descriptor.media_type))
    if image.descriptor.artifact_type:
        lines.append((indent, "ArtifactType", image.descriptor.artifact_type))
    lines.append((indent, "Digest", image.descriptor.digest))
    lines += _annotation_lines("Annotations", image.annotations, indent)
    if image.descriptor.annotations and image.descriptor.annotations != image.annotations:
        lines += _annotation_lines("Index Annotations", image.descriptor.annotations, indent)
    if image.platform:
        lines.append((indent, "Platform", str(image.platform)))
    if image.descriptor.media_type in INDEX_MEDIA_TYPES:
        lines += [_BLANK, (indent, "Manifests", None)]
        for child in image.manifests:
            lines += [_BLANK, *_image_lines(child, indent + "  ")]
        return lines
    if image.descriptor.media_type not in MANIFEST_MEDIA_TYPES:
        lines.append((indent, "Size", _size_text(image.descriptor.size)))
        return lines
    lines.append((indent, "Total Size", _size_text(image.total_size)))
    if image.wasm is not None:
        lines += _wasm_lines(image.wasm, indent)
    if image.config is not None:
        lines += [_BLANK, (indent, "Config", None), *_descriptor_lines(image.config, indent + "  ")]
    lines += [_BLANK, (indent, "Layers", None)]
    for layer in image.layers:
        lines += [_BLANK, *_descriptor_lines(layer, indent + "  ")]
    return lines


def _wasm_lines(wasm: WasmView, indent: str) -> list[_Line]:
    inner = indent + "  "
    lines: list[_Line] = [_BLANK, (indent, "Wasm", None)]
    lines += [
        (inner, "OS", wasm.os or "(not set)"),
        (inner, "Architecture", wasm.architecture or "(not set)"),
    ]
    component = wasm.component
    if component is None:
        return [*lines, (inner, "Kind", "core module")]
    lines.append((inner, "Kind", "component"))
    if component.target:
        lines.append((inner, "Target", component.target))
    for label, names in (("Imports", component.imports), ("Exports", component.exports)):
        lines.append((inner, label, None if names else "(none)"))
        lines += [(inner + "  ", "", name) for name in names]
    return lines


def _descriptor_lines(descriptor: Descriptor, indent: str) -> list[_Line]:
    lines: list[_Line] = [
        (indent, "Digest", descriptor.digest),
        (indent, "MediaType", descriptor.media_type),
        (indent, "Size", _size_text(descriptor.size)),
    ]
    return lines + _annotation_lines("Annotations", descriptor.annotations, indent)


def _annotation_lines(heading: str, annotations: Mapping[str, str], indent: str) -> list[_Line]:
    if not annotations:
        return []
    return [
        (indent, heading, None),
        *((indent + "  ", key, annotations[key]) for key in sorted(annotations)),
    ]


def _size_text(size: int) -> str:
    text = human_size(size)
    return text if size < 1024 else f"{text} ({size} bytes)"
