"""Merging archives: images built by different jobs (ours or any tool's) into one archive, one tag.

A fleet ships one service as several images: a wasm image for runwasi, a Wasm OCI Artifact, linux/amd64
and linux/arm64 images built elsewhere in a matrix job. Merged under one name, they become one image
index, which `push` serves under the tag and from which each runtime picks its platform.

The index is written into the archive (index.json -> image index -> manifests, as buildx and `buildah
manifest push` write multi-platform images) rather than as one index.json entry per platform: containerd's
importer gives a name to one index.json entry only, and garbage-collects the other platforms' content.

Every source is untrusted: it is read through `OciArchive`, every blob is checked present at its
descriptor's size before the first byte is written, and hashed while the kernel copies it, so a
tampered blob fails the merge instead of landing in the output under a name it does not have.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from .archive import ArchiveWriter, atomic_output, docker_entry
from .digest import Progress
from .errors import InputError, UsageError
from .reader import MAX_NESTING, ArchiveError, OciArchive
from .reference import DEFAULT_TAG, ReferenceError, parse_reference
from .spec import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_TYPE_INDEX,
    Blob,
    Descriptor,
    Platform,
    index_json,
    name_annotations,
)

NAME_ANNOTATIONS = (ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME)
# docker buildx puts an attestation manifest (platform unknown/unknown) beside each image in its index,
# pointing at the image it describes; each belongs to its image, so two of them never clash.
ANNOTATION_DOCKER_REFERENCE_TYPE = "vnd.docker.reference.type"
ANNOTATION_DOCKER_REFERENCE_DIGEST = "vnd.docker.reference.digest"
ATTESTATION_MANIFEST = "attestation-manifest"


@dataclass(frozen=True)
class MergeResult:
    """What was written: each image manifest (with its platform and names), index.json's entries (an
    image index for each name several images share, else the image itself), where, and how many bytes."""

    images: tuple[Descriptor, ...]
    index: tuple[Descriptor, ...]
    path: Path | None = None
    size: int = 0


@dataclass(frozen=True)
class _Image:
    """One image manifest to write: where it comes from, its descriptor, and what it points at."""

    archive: OciArchive
    entry: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @property
    def is_attestation(self) -> bool:
        return self.entry.annotations.get(ANNOTATION_DOCKER_REFERENCE_TYPE) == ATTESTATION_MANIFEST


@dataclass(frozen=True)
class _Blob:
    archive: OciArchive
    descriptor: Descriptor


def merge_archives(
    sources: Sequence[Path],
    dest: Path | BinaryIO,
    *,
    name: str | None = None,
    mtime: int = 0,
    progress: Progress | None = None,
) -> MergeResult:
    """Write every image of `sources` into one archive at `dest` (a path, replaced atomically, or a file).

    `name` (`host/repo:tag`) names every image, so that all platforms share one reference; without it
    each keeps the names its archive records. Images that share a name are listed in one image index
    under that name. Raises UsageError for a bad `name`, and InputError (ArchiveError) naming the source
    for an unsafe, inconsistent or ambiguous input: before anything is written when the index, manifests
    and blob sizes tell, else (a blob that does not match its digest) before the output replaces `dest`.
    """
    if not sources:
        raise UsageError("merge", "give at least one archive to merge")
    names = _rename(name) if name is not None else None
    with contextlib.ExitStack() as stack:
        archives = [stack.enter_context(OciArchive.open(path)) for path in sources]
        images = _unique([image for archive in archives for image in _images(archive, names)])
        _refuse_ambiguous(images)
        blobs = _blobs(images)
        index, image_indexes = _index(images)
        result = MergeResult(tuple(image.entry for image in images), tuple(index))
        if isinstance(dest, Path):
            with atomic_output(dest) as f:
                _write(images, blobs, image_indexes, index, f, mtime, progress)
                size = f.tell()
            return replace(result, path=dest, size=size)
        _write(images, blobs, image_indexes, index, dest, mtime, progress)
        return result


def _rename(text: str) -> dict[str, str]:
    try:
        reference = parse_reference(text)
    except ReferenceError as exc:
        raise UsageError(f"--name {text!r}", str(exc)) from None
    if reference.digest is not None:
        raise UsageError(f"--name {text!r}", "names a digest: give a tag (HOST/REPOSITORY:TAG)")
    return name_annotations(reference.name, reference.tag or DEFAULT_TAG)


# ---------------------------------------------------------------------------------------------------
# What goes in


def _images(archive: OciArchive, names: Mapping[str, str] | None) -> list[_Image]:
    """The archive's image manifests in index order, nested indexes flattened, each with a platform."""
    top = archive.top_level()
    if not top:
        raise ArchiveError(archive.path, "index.json lists no image: nothing to merge")
    images: list[_Image] = []
    for i, descriptor in enumerate(top):
        own = {key: descriptor.annotations[key] for key in NAME_ANNOTATIONS if key in descriptor.annotations}
        images += _flatten(archive, descriptor, f"index.json manifests[{i}]", names or own, 0)
    return images


def _flatten(
    archive: OciArchive, descriptor: Descriptor, where: str, names: Mapping[str, str], depth: int
) -> list[_Image]:
    """The image manifests under `descriptor`, each named `names` (what index.json records above it)."""
    if descriptor.media_type in INDEX_MEDIA_TYPES:
        if depth >= MAX_NESTING:
            raise ArchiveError(archive.path, f"{where}: indexes nest deeper than {MAX_NESTING} levels")
        inner = f"index {descriptor.digest}"
        return [
            image
            for j, child in enumerate(archive.children(descriptor))
            for image in _flatten(archive, child, f"{inner} manifests[{j}]", names, depth + 1)
        ]
    if descriptor.media_type not in MANIFEST_MEDIA_TYPES:
        raise ArchiveError(
            archive.path, f"{where} is {descriptor.media_type!r}, not an image manifest or index"
        )
    config, *layers = archive.children(descriptor)
    annotations = {k: v for k, v in descriptor.annotations.items() if k not in NAME_ANNOTATIONS}
    entry = replace(
        descriptor,
        annotations={**annotations, **names},
        platform=descriptor.platform or _config_platform(archive, descriptor, config, where),
    )
    return [_Image(archive, entry, config, tuple(layers))]


def _config_platform(archive: OciArchive, manifest: Descriptor, config: Descriptor, where: str) -> Platform:
    """What the index entry leaves out (buildah and skopeo often do), from the config's os/architecture."""
    document = archive.read_json_blob(config.digest)
    platform = Platform.from_config(document) if isinstance(document, dict) else None
    if platform is None:
        raise ArchiveError(
            archive.path,
            f"{where}: manifest {manifest.digest} has no platform, and its config records no os and "
            "architecture: cannot tell which platform it serves",
        )
    return platform


def _unique(images: list[_Image]) -> list[_Image]:
    """Identical entries (same manifest under the same names) once, in first-seen order."""
    seen: dict[tuple[str, tuple[str | None, ...]], _Image] = {}
    for image in images:
        names = tuple(image.entry.annotations.get(key) for key in NAME_ANNOTATIONS)
        seen.setdefault((image.entry.digest, names), image)
    return list(seen.values())


def _refuse_ambiguous(images: list[_Image]) -> None:
    """Two images for one platform under one reference: a runtime could not tell which one to run."""
    claimed: dict[tuple[str, Platform, str | None], _Image] = {}
    for image in images:
        assert image.entry.platform is not None  # every entry got one in _flatten
        attests = image.entry.annotations.get(ANNOTATION_DOCKER_REFERENCE_DIGEST)
        first = claimed.setdefault((_reference_key(image.entry), image.entry.platform, attests), image)
        if first.entry.digest != image.entry.digest:
            raise InputError(
                _display_name(image.entry),
                f"two different images for platform {image.entry.platform}: "
                f"{first.entry.digest} from {first.archive.path} and {image.entry.digest} from "
                f"{image.archive.path}; give them different names, or leave one out",
            )


def _display_name(entry: Descriptor) -> str:
    names = (entry.annotations.get(key) for key in NAME_ANNOTATIONS)
    return next((name for name in names if name), "images without a name")


def _reference_key(entry: Descriptor) -> str:
    """The reference an entry is served under, normalised as push resolves it; '' when it has no name."""
    image_name = entry.annotations.get(ANNOTATION_IMAGE_NAME)
    if image_name:
        try:
            reference = parse_reference(image_name)
        except ReferenceError:
            return image_name
        return reference.canonical
    return entry.annotations.get(ANNOTATION_REF_NAME) or ""


def _blobs(images: list[_Image]) -> list[_Blob]:
    """Every blob the images reach, each once, children before the manifests that list them.

    Each descriptor is checked against its own archive (present, sha256, of its size), even when another
    source already supplied the blob: the manifests are copied as they are, so every size must hold.
    """
    found: dict[str, _Blob] = {}

    def visit(archive: OciArchive, descriptor: Descriptor, depth: int) -> None:
        if depth > MAX_NESTING:
            raise ArchiveError(archive.path, f"manifest {descriptor.digest}: nests deeper than {MAX_NESTING}")
        for child in archive.children(descriptor):
            visit(archive, child, depth + 1)
        if not descriptor.digest.startswith("sha256:"):
            raise ArchiveError(archive.path, f"blob {descriptor.digest}: only sha256 blobs can be merged")
        size = archive.blob_size(descriptor.digest)  # raises when it is missing
        if size != descriptor.size:
            raise ArchiveError(
                archive.path,
                f"blob {descriptor.digest} has {size} bytes but its descriptor says {descriptor.size}",
            )
        found.setdefault(descriptor.digest, _Blob(archive, descriptor))

    for image in images:
        visit(image.archive, image.entry, 0)
    return list(found.values())


def _index(images: list[_Image]) -> tuple[list[Descriptor], list[Blob]]:
    """index.json's entries, in first-seen order, and the image indexes they point at.

    Distinct images under one name become one image index, so that every runtime and registry sees one
    multi-platform image; an image alone under its name, or without a name, is listed as itself.
    """
    groups: dict[str, list[_Image]] = {}
    slots: list[list[_Image]] = []
    for image in images:
        key = _reference_key(image.entry)
        if key and key in groups:
            groups[key].append(image)
        else:
            slots.append([image])
            if key:
                groups[key] = slots[-1]
    entries: list[Descriptor] = []
    blobs: list[Blob] = []
    for slot in slots:
        children: dict[str, Descriptor] = {}
        for image in slot:
            children.setdefault(image.entry.digest, image.entry)
        if len(children) == 1:
            entries += [image.entry for image in slot]
            continue
        unnamed = [
            replace(
                child, annotations={k: v for k, v in child.annotations.items() if k not in NAME_ANNOTATIONS}
            )
            for child in children.values()
        ]
        blob = Blob(MEDIA_TYPE_INDEX, index_json(unnamed))
        names = {k: v for k, v in slot[0].entry.annotations.items() if k in NAME_ANNOTATIONS}
        blobs.append(blob)
        entries.append(blob.descriptor(annotations=names))
    return entries, blobs


# ---------------------------------------------------------------------------------------------------
# What comes out


def _write(
    images: list[_Image],
    blobs: list[_Blob],
    image_indexes: list[Blob],
    index: list[Descriptor],
    out: BinaryIO,
    mtime: int,
    progress: Progress | None,
) -> None:
    writer = ArchiveWriter(out, mtime=mtime)
    for blob in blobs:
        expected = blob.descriptor
        written = writer.add_stream_blob(
            expected.media_type, [blob.archive.blob_range(expected.digest)], progress
        )
        if written.digest != expected.digest:
            raise ArchiveError(
                blob.archive.path,
                f"does not match its digest: its content hashes to {written.digest}",
                blob.archive.blob_name(expected.digest),
            )
    for image_index in image_indexes:
        writer.add_blob(image_index)
    writer.finish_layout(index, _docker_entries(images))


def _docker_entries(images: list[_Image]) -> list[dict[str, object]]:
    """One entry per image manifest; each name goes to its first image only, as `docker load` would let a
    later one take it over."""
    repo_tags: dict[str, tuple[_Image, list[str]]] = {}
    claimed: set[str] = set()
    for image in images:
        if image.is_attestation:
            continue  # not an image docker can load
        tags = repo_tags.setdefault(image.entry.digest, (image, []))[1]
        name = image.entry.annotations.get(ANNOTATION_IMAGE_NAME)
        if name and name not in claimed:
            claimed.add(name)
            tags.append(name)
    return [docker_entry(image.config, image.layers, tags) for image, tags in repo_tags.values()]
