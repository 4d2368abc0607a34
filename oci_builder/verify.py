"""`verify`: check an archive against image-spec v1.1 and against itself, and report every problem found.

What is checked: every blob matches its name and every descriptor's size; index, manifests and configs
have the fields image-spec requires, with the right types; digests, media types and annotations follow
the spec's grammars; wasm layers are WebAssembly binaries; gzip layers are gzip, decompressed as a bounded
stream (and their diff_ids checked); a Wasm OCI Artifact's config agrees with its layer; docker's
manifest.json agrees with the index. Problems are collected, not raised, so one run shows them all.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from .digest import blob_path, digest_problem
from .progress import human_size
from .reader import (
    JSON_LIMIT,
    MAX_NESTING,
    ArchiveError,
    JsonError,
    OciArchive,
    normalise_name,
    parse_json,
)
from .reference import ReferenceError, parse_reference
from .spec import (
    ANNOTATION_CREATED,
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_EMPTY,
    MEDIA_TYPE_IMAGE_CONFIG,
    MEDIA_TYPE_INDEX,
    MEDIA_TYPE_WASM_CONFIG,
    MEDIA_TYPE_WASM_LAYER,
    OCI_LAYOUT,
    Descriptor,
    Platform,
    annotations_problems,
    descriptor_problems,
    json_type_name,
    media_type_problem,
    size_problem,
    string_list_problem,
)
from .wasm import MAGIC, WasmFormatError, WasmInfo, WasmKind, read_wasm

DEFAULT_MAX_EXPANDED = 64 << 30
"""How far a gzip layer may expand before we call it a bomb; real layers stay far below."""
_OUT_CHUNK = 1 << 20
_KIND_NAMES: dict[type, str] = {str: "a string", dict: "an object", list: "an array"}

# annotations.md: the grammar of org.opencontainers.image.ref.name
_REF_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF_NAME = re.compile(rf"{_REF_COMPONENT}(?:/{_REF_COMPONENT})*")
# RFC 3339 section 5.6 date-time; datetime then checks the ranges.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII)


@dataclass(frozen=True)
class Verification:
    """The outcome: `problems` one line each (empty means the archive is sound), and what was covered."""

    problems: tuple[str, ...]
    images: int
    blobs: int

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_archive(path: Path, *, max_expanded: int = DEFAULT_MAX_EXPANDED) -> Verification:
    """Open and verify; an archive unsafe to read at all raises ArchiveError instead of reporting."""
    with OciArchive.open(path) as archive:
        return verify(archive, max_expanded=max_expanded)


def verify(archive: OciArchive, *, max_expanded: int = DEFAULT_MAX_EXPANDED) -> Verification:
    checker = _Verifier(archive, max_expanded)
    checker.run()
    return Verification(tuple(checker.problems), len(checker.images), len(checker.hashed))


def is_wasm_media_type(media_type: str) -> bool:
    """`application/wasm` or a `+wasm` structured suffix: raw WebAssembly, not e.g. spin's `+data` layers."""
    return media_type == MEDIA_TYPE_WASM_LAYER or media_type.endswith("+wasm")


def is_gzip_media_type(media_type: str) -> bool:
    return media_type.endswith(("+gzip", ".tar.gzip"))


def _is_tar_layer(media_type: str) -> bool:
    return ".tar" in media_type


@dataclass(frozen=True)
class _ImageRecord:
    """What docker's manifest.json must repeat of a manifest: its config and layers."""

    config: str
    layers: list[str]


class _Verifier:
    def __init__(self, archive: OciArchive, max_expanded: int) -> None:
        self.archive = archive
        self.max_expanded = max_expanded
        self.problems: list[str] = []
        self.hashed: dict[str, bool] = {}
        self.visited: set[tuple[str, str]] = set()
        self.images: dict[str, _ImageRecord] = {}
        self.names: dict[str, list[str]] = {}
        self.uncompressed: dict[str, str] = {}
        self.wasm: dict[str, WasmInfo] = {}

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def run(self) -> None:
        self.check_layout()
        if not self.archive.has_entry("index.json"):
            self.problem("index.json: missing: not an OCI image layout")
        else:
            index = self.json_entry("index.json")
            if index is not None:
                self.check_index(index, "index.json", MEDIA_TYPE_INDEX, 0)
        self.check_docker_manifest()
        self.check_every_blob()

    # Documents -----------------------------------------------------------------------------------------

    def check_layout(self) -> None:
        if not self.archive.has_entry("oci-layout"):
            self.problem("oci-layout: missing (image-layout.md requires it)")
            return
        layout = self.json_entry("oci-layout")
        if layout is None:
            return
        expected = OCI_LAYOUT["imageLayoutVersion"]
        if not isinstance(layout, dict) or layout.get("imageLayoutVersion") != expected:
            self.problem(f'oci-layout: must be {{"imageLayoutVersion": "{expected}"}}')

    def check_index(self, doc: Any, where: str, media_type: str, depth: int) -> None:
        if not self.is_object(doc, where):
            return
        self.check_common(doc, where, media_type)
        manifests = doc.get("manifests")
        if manifests is None:
            self.problem(f"{where}: manifests is missing")
        elif not isinstance(manifests, list):
            self.problem(f"{where}: manifests must be an array, not {json_type_name(manifests)}")
        else:
            for i, value in enumerate(manifests):
                self.check_index_entry(value, f"{where} manifests[{i}]", depth)

    def check_index_entry(self, value: Any, where: str, depth: int) -> None:
        descriptor = self.descriptor(value, where)
        if descriptor is None or not self.check_blob(descriptor, where):
            return
        name = descriptor.annotations.get(ANNOTATION_IMAGE_NAME)
        if name is not None:
            self.names.setdefault(descriptor.digest, []).append(name)
        if not self.first_visit(descriptor):
            return
        inner = f"{'index' if descriptor.media_type in INDEX_MEDIA_TYPES else 'manifest'} {descriptor.digest}"
        if descriptor.media_type in MANIFEST_MEDIA_TYPES:
            doc = self.json_blob(descriptor, where)
            if doc is not None:
                self.check_manifest(doc, inner, descriptor)
        elif descriptor.media_type in INDEX_MEDIA_TYPES:
            if depth >= MAX_NESTING:
                self.problem(f"{where}: indexes nest deeper than {MAX_NESTING} levels")
                return
            doc = self.json_blob(descriptor, where)
            if doc is not None:
                self.check_index(doc, inner, descriptor.media_type, depth + 1)

    def check_manifest(self, doc: Any, where: str, descriptor: Descriptor) -> None:
        if not self.is_object(doc, where):
            return
        self.check_common(doc, where, descriptor.media_type)
        config = self.descriptor_field(doc, "config", where)
        layers: list[Descriptor | None] = []
        raw_layers = doc.get("layers")
        if raw_layers is None:
            self.problem(f"{where}: layers is missing")
        elif not isinstance(raw_layers, list):
            self.problem(f"{where}: layers must be an array, not {json_type_name(raw_layers)}")
        else:
            layers = [self.descriptor(value, f"{where} layers[{i}]") for i, value in enumerate(raw_layers)]
        if config is not None and config.media_type == MEDIA_TYPE_EMPTY and not doc.get("artifactType"):
            self.problem(f"{where}: artifactType is required when config is the empty descriptor")
        config_present = config is not None and self.check_blob(config, f"{where} config")
        for i, layer in enumerate(layers):
            if layer is None or not self.check_present(layer, f"{where} layers[{i}]"):
                continue
            if self.first_visit(layer):
                self.check_layer(
                    layer, f"{where} layers[{i}]"
                )  # a gzip layer is hashed here, while gunzipped
            self.hash(layer.digest, f"{where} layers[{i}]")
        valid_layers = [layer for layer in layers if layer is not None]
        if config is not None and config_present:
            self.check_config(config, f"{where} config", descriptor.platform, valid_layers)
        if config is not None and len(valid_layers) == len(layers):
            self.images[descriptor.digest] = _ImageRecord(
                config.digest, [layer.digest for layer in valid_layers]
            )

    def check_common(self, doc: dict[str, Any], where: str, media_type: str) -> None:
        """What indexes and manifests share: schemaVersion 2, an optional matching mediaType, and so on."""
        version = doc.get("schemaVersion")
        if version is None:
            self.problem(f"{where}: schemaVersion is missing")
        elif version != 2 or not isinstance(version, int) or isinstance(version, bool):
            self.problem(f"{where}: schemaVersion must be 2, not {version!r}")
        if doc.get("mediaType") is not None and doc["mediaType"] != media_type:
            self.problem(f"{where}: mediaType {doc['mediaType']!r} is not the expected {media_type!r}")
        if doc.get("artifactType") is not None and (problem := media_type_problem(doc["artifactType"])):
            self.problem(f"{where}: artifactType {problem}")
        if doc.get("subject") is not None:
            self.problems += descriptor_problems(doc["subject"], f"{where} subject")
        self.check_annotations(doc.get("annotations"), where)

    def check_annotations(self, value: Any, where: str) -> None:
        problems = annotations_problems(value, where)
        self.problems += problems
        if not problems:
            self.check_known_annotations(value, where)

    def check_known_annotations(self, value: dict[str, str] | None, where: str) -> None:
        """The pre-defined annotations whose values have a grammar (annotations.md)."""
        if not value:
            return
        ref_name = value.get(ANNOTATION_REF_NAME)
        if ref_name is not None and not _REF_NAME.fullmatch(ref_name):
            self.problem(f"{where}: annotation {ANNOTATION_REF_NAME} {ref_name!r} breaks the ref grammar")
        created = value.get(ANNOTATION_CREATED)
        if created is not None and (problem := _rfc3339_problem(created)):
            self.problem(f"{where}: annotation {ANNOTATION_CREATED} {problem}")

    def check_config(
        self, config: Descriptor, where: str, platform: Platform | None, layers: Sequence[Descriptor]
    ) -> None:
        if config.media_type in (MEDIA_TYPE_IMAGE_CONFIG, MEDIA_TYPE_DOCKER_CONFIG):
            check: Callable[[dict[str, Any], str, Platform | None, Sequence[Descriptor]], None]
            check = self.check_image_config
        elif config.media_type == MEDIA_TYPE_WASM_CONFIG:
            check = self.check_wasm_config
        else:
            return
        doc = self.json_blob(config, where)
        if doc is not None and self.is_object(doc, where):
            check(doc, where, platform, layers)

    def check_image_config(
        self, doc: dict[str, Any], where: str, platform: Platform | None, layers: Sequence[Descriptor]
    ) -> None:
        """config.md: architecture, os and rootfs are required; optional fields may be null."""
        self.required_strings(doc, where, "architecture", "os")
        self.optional_types(doc, where, str, "author", "variant", "os.version")
        self.optional_types(doc, where, dict, "config")
        self.optional_types(doc, where, list, "history")
        self.check_created(doc, where)
        if doc.get("os.features") is not None and (problem := string_list_problem(doc["os.features"])):
            self.problem(f"{where}: os.features {problem}")
        if isinstance(doc.get("config"), dict):
            self.check_execution(doc["config"], f"{where} config")
        self.check_platform(doc, where, platform)
        rootfs = doc.get("rootfs")
        if rootfs is None:
            self.problem(f"{where}: rootfs is missing")
            return
        if not self.is_object(rootfs, f"{where} rootfs"):
            return
        if rootfs.get("type") != "layers":
            self.problem(f"{where}: rootfs.type must be 'layers', not {rootfs.get('type')!r}")
        diff_ids = rootfs.get("diff_ids")
        if not isinstance(diff_ids, list):
            self.problem(f"{where}: rootfs.diff_ids must be an array, not {json_type_name(diff_ids)}")
            return
        for i, diff_id in enumerate(diff_ids):
            if problem := digest_problem(diff_id):
                self.problem(f"{where}: rootfs.diff_ids[{i}]: {problem}")
        if layers and all(_is_tar_layer(layer.media_type) for layer in layers):
            self.check_diff_ids(diff_ids, where, layers)

    def check_diff_ids(self, diff_ids: list[Any], where: str, layers: Sequence[Descriptor]) -> None:
        if len(diff_ids) != len(layers):
            self.problem(f"{where}: rootfs.diff_ids has {len(diff_ids)} entries for {len(layers)} layers")
            return
        for i, (diff_id, layer) in enumerate(zip(diff_ids, layers, strict=True)):
            expected = (
                layer.digest if layer.media_type.endswith(".tar") else self.uncompressed.get(layer.digest)
            )
            if expected is not None and diff_id != expected:
                self.problem(
                    f"{where}: rootfs.diff_ids[{i}] is {diff_id} but layer {i} unpacks to {expected}"
                )

    def check_execution(self, value: dict[str, Any], where: str) -> None:
        self.optional_types(value, where, str, "User", "WorkingDir", "StopSignal")
        self.optional_types(value, where, dict, "ExposedPorts", "Volumes")
        for key in ("Env", "Entrypoint", "Cmd"):
            if value.get(key) is not None and (problem := string_list_problem(value[key])):
                self.problem(f"{where}: {key} {problem}")
        labels = value.get("Labels")
        if labels is not None:
            self.problems += [p.replace("annotation", "label") for p in annotations_problems(labels, where)]

    def check_wasm_config(
        self, doc: dict[str, Any], where: str, platform: Platform | None, layers: Sequence[Descriptor]
    ) -> None:
        """The CNCF TAG Runtime Wasm OCI Artifact config, checked against the layer it describes."""
        self.required_strings(doc, where, "created", "architecture", "os")
        self.check_created(doc, where)
        self.optional_types(doc, where, str, "author")
        self.check_platform(doc, where, platform)
        layer_digests = doc.get("layerDigests")
        if not isinstance(layer_digests, list):
            self.problem(
                f"{where}: layerDigests must be an array of digests, not {json_type_name(layer_digests)}"
            )
        elif layer_digests != [layer.digest for layer in layers]:
            self.problem(f"{where}: layerDigests {layer_digests} are not the manifest's layer digests")
        if len(layers) != 1:
            self.problem(f"{where}: a Wasm OCI Artifact has exactly one layer, this one has {len(layers)}")
        component = doc.get("component")
        if component is not None:
            if not self.is_object(component, f"{where} component"):
                return
            for key in ("imports", "exports"):
                if (problem := string_list_problem(component.get(key))) is not None:
                    self.problem(f"{where}: component.{key} {problem}")
            if component.get("target") is not None and not isinstance(component["target"], str):
                self.problem(f"{where}: component.target must be a string or null")
        info = self.wasm.get(layers[0].digest) if len(layers) == 1 else None
        if info is not None:
            self.check_world(component, where, info)

    def check_world(self, component: Any, where: str, info: WasmInfo) -> None:
        if info.kind is WasmKind.MODULE:
            if component is not None:
                self.problem(f"{where}: component is set but the layer is a core module")
            return
        if component is None:
            self.problem(f"{where}: component is null but the layer is a component")
            return
        assert info.world is not None
        for key, actual in (("imports", info.world.imports), ("exports", info.world.exports)):
            given = component.get(key)
            if isinstance(given, list) and sorted(map(str, given)) != sorted(actual):
                self.problem(f"{where}: component.{key} {given} differ from the layer's {list(actual)}")

    def check_platform(self, doc: dict[str, Any], where: str, platform: Platform | None) -> None:
        if platform is None:
            return
        config_side = (doc.get("os"), doc.get("architecture"))
        if config_side != (platform.os, platform.architecture):
            self.problem(
                f"{where}: os/architecture {config_side[0]}/{config_side[1]} differ from the descriptor's "
                f"platform {platform.os}/{platform.architecture}"
            )

    def check_created(self, doc: dict[str, Any], where: str) -> None:
        created = doc.get("created")
        if isinstance(created, str) and (problem := _rfc3339_problem(created)):
            self.problem(f"{where}: created {problem}")

    def required_strings(self, doc: dict[str, Any], where: str, *keys: str) -> None:
        for key in keys:
            if key not in doc or doc[key] is None:
                self.problem(f"{where}: {key} is missing")
            elif not isinstance(doc[key], str):
                self.problem(f"{where}: {key} must be a string, not {json_type_name(doc[key])}")

    def optional_types(self, doc: dict[str, Any], where: str, kind: type, *keys: str) -> None:
        for key in keys:
            value = doc.get(key)
            if value is not None and not isinstance(value, kind):
                self.problem(f"{where}: {key} must be {_KIND_NAMES[kind]}, not {json_type_name(value)}")

    def is_object(self, value: Any, where: str) -> bool:
        if not isinstance(value, dict):
            self.problem(f"{where}: must be a JSON object, not {json_type_name(value)}")
            return False
        return True

    # Descriptors and blobs -----------------------------------------------------------------------------

    def descriptor(self, value: Any, where: str) -> Descriptor | None:
        """The descriptor if its blob can be looked for (valid digest and size), reporting every problem."""
        problems = descriptor_problems(value, where)
        if not problems:
            descriptor = Descriptor.from_json(value, where)
            self.check_known_annotations(dict(descriptor.annotations), where)
            return descriptor
        self.problems += problems
        if isinstance(value, dict) and digest_problem(value.get("digest")) is None:
            media_type = value.get("mediaType")
            if size_problem(value.get("size")) is None:
                annotations = value.get("annotations")
                return Descriptor(
                    media_type if isinstance(media_type, str) else "",
                    value["digest"],
                    value["size"],
                    annotations if isinstance(annotations, dict) else {},
                )
        return None

    def descriptor_field(self, doc: dict[str, Any], key: str, where: str) -> Descriptor | None:
        if key not in doc:
            self.problem(f"{where}: {key} is missing")
            return None
        return self.descriptor(doc[key], f"{where} {key}")

    def first_visit(self, descriptor: Descriptor) -> bool:
        key = (descriptor.digest, descriptor.media_type)
        if key in self.visited:
            return False
        self.visited.add(key)
        return True

    def check_blob(self, descriptor: Descriptor, where: str) -> bool:
        """Present, of the descriptor's size, and matching its digest; False when it is missing."""
        if not self.check_present(descriptor, where):
            return False
        self.hash(descriptor.digest, where)
        return True

    def check_present(self, descriptor: Descriptor, where: str) -> bool:
        """Present and of the descriptor's size (a wrong size is reported, not fatal)."""
        if not self.archive.has_blob(descriptor.digest):
            self.problem(f"{where}: blob {descriptor.digest} is missing from the archive")
            return False
        size = self.archive.blob_size(descriptor.digest)
        if size != descriptor.size:
            self.problem(
                f"{where}: blob {descriptor.digest} has {size} bytes, the descriptor says {descriptor.size}"
            )
        return True

    def hash(self, digest: str, where: str, sink: BinaryIO | None = None) -> None:
        """Stream the blob through its hash (and a sink, which a blob already hashed is read again for)."""
        if digest in self.hashed and sink is None:
            return
        try:
            actual = self.archive.hash_blob(digest, sink)
        except ArchiveError as exc:
            self.problem(f"{where}: {exc.problem}")
            return
        if digest not in self.hashed and actual != digest:
            self.problem(f"{where}: blob {digest} does not match its digest: its content hashes to {actual}")
        self.hashed[digest] = actual == digest

    def json_entry(self, name: str) -> Any:
        try:
            return self.archive.read_json_entry(name)
        except ArchiveError as exc:
            self.problem(f"{name}: {exc.problem}")
            return None

    def json_blob(self, descriptor: Descriptor, where: str) -> Any:
        size = self.archive.blob_size(descriptor.digest)
        if size > JSON_LIMIT:
            self.problem(
                f"{where}: blob {descriptor.digest} is {size} bytes, over the {JSON_LIMIT}-byte JSON limit"
            )
            return None
        try:
            return parse_json(self.archive.read_entry(self.archive.blob_name(descriptor.digest)))
        except JsonError as exc:
            self.problem(f"{where}: blob {descriptor.digest} is not valid JSON: {exc}")
        except ArchiveError as exc:
            self.problem(f"{where}: {exc.problem}")
        return None

    def check_layer(self, layer: Descriptor, where: str) -> None:
        if is_wasm_media_type(layer.media_type):
            self.check_wasm_layer(layer, where)
        if is_gzip_media_type(layer.media_type):
            sink = _Gunzip(self.max_expanded)
            self.hash(layer.digest, where, cast(BinaryIO, sink))
            problem = sink.finish()
            if problem:
                self.problem(f"{where}: gzip layer {layer.digest} {problem}")
            else:
                self.uncompressed[layer.digest] = "sha256:" + sink.hasher.hexdigest()

    def check_wasm_layer(self, layer: Descriptor, where: str) -> None:
        with self.archive.open_blob(layer.digest) as f:
            head = f.read(len(MAGIC))
            if head != MAGIC:
                starts = f"starts with {head.hex()}" if head else "is empty"
                self.problem(
                    f"{where}: wasm layer {layer.digest} does not start with the wasm magic: it {starts}"
                )
                return
            f.seek(0)
            try:
                self.wasm[layer.digest] = read_wasm(f)
            except WasmFormatError as exc:
                self.problem(f"{where}: wasm layer {layer.digest} is not a valid WebAssembly binary: {exc}")

    # docker's manifest.json, and blobs nothing points at ------------------------------------------------

    def check_docker_manifest(self) -> None:
        try:
            entries = self.archive.docker_manifest()
        except ArchiveError as exc:
            self.problem(f"manifest.json: {exc.problem}")
            return
        for i, entry in enumerate(entries or []):
            self.check_docker_entry(entry, f"manifest.json[{i}]")

    def check_docker_entry(self, entry: dict[str, Any], where: str) -> None:
        config: Any = entry.get("Config")
        layers: Any = entry.get("Layers")
        tags: Any = entry.get("RepoTags")
        ok = True
        if not isinstance(config, str):
            self.problem(f"{where}: Config must be a string, not {json_type_name(config)}")
            ok = False
        if (problem := string_list_problem(layers)) is not None:
            self.problem(f"{where}: Layers {problem}")
            ok = False
        if tags is not None and (problem := string_list_problem(tags)) is not None:
            self.problem(f"{where}: RepoTags {problem}")
            tags = None
        if not ok:
            return
        for path in [config, *layers]:
            if not self.archive.has_entry(path):
                self.problem(f"{where}: {path} is not in the archive")
        wanted = (normalise_name(config), [normalise_name(layer) for layer in layers])
        matches = [
            digest
            for digest, image in self.images.items()
            if wanted == (blob_path(image.config), [blob_path(layer) for layer in image.layers])
        ]
        if not matches:
            self.problem(f"{where}: its Config and Layers match no image manifest in index.json")
            return
        names = [name for digest in matches for name in self.names.get(digest, [])]
        for tag in tags or []:
            if names and not any(_same_reference(tag, name) for name in names):
                self.problem(
                    f"{where}: RepoTags {tag!r} is not an {ANNOTATION_IMAGE_NAME} of that image in index.json"
                )

    def check_every_blob(self) -> None:
        """image-layout.md: every blob's content matches its name, whether or not anything points at it."""
        for name in list(self.archive.files()):
            if not name.startswith("blobs/"):
                continue
            parts = name.split("/")
            digest = ":".join(parts[1:])
            problem = digest_problem(digest) if len(parts) == 3 else "is not blobs/<algorithm>/<encoded>"
            if problem:
                self.problem(f"{name}: not a blob name: {problem}")
            else:
                self.hash(digest, name)


def _same_reference(a: str, b: str) -> bool:
    """docker writes `x:1` where containerd writes `docker.io/library/x:1`: compare what they name."""
    try:
        ra, rb = parse_reference(a), parse_reference(b)
    except ReferenceError:
        return a == b
    return ra.canonical == rb.canonical


def _rfc3339_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be an RFC 3339 time string, not {json_type_name(value)}"
    if _RFC3339.fullmatch(value):
        try:
            datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
            return None
        except ValueError:
            pass
    return f"{value!r} is not an RFC 3339 date-time"


class _Gunzip:
    """A write-only sink that gunzips every member of a gzip stream, bounded, hashing what comes out.

    It never raises: copy_hashed keeps hashing the compressed bytes whatever is wrong with them, and the
    first problem is kept for `finish`. Output is taken a chunk at a time, so a bomb costs no memory.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.expanded = 0
        self.members = 0
        self.problem: str | None = None
        self.hasher = hashlib.sha256()
        self._z = zlib.decompressobj(wbits=31)
        self._pending = False

    def write(self, data: bytes | memoryview) -> int:
        if self.problem is None:
            try:
                self._feed(bytes(data))
            except zlib.error as exc:
                where = "" if self.members == 0 else f" after member {self.members}"
                self.problem = f"is not valid gzip{where}: {exc}"
        return len(data)

    def _feed(self, data: bytes) -> None:
        while self.problem is None:
            if self._z.eof:
                if not data:
                    return
                self._z = zlib.decompressobj(wbits=31)
            self._pending = True
            out = self._z.decompress(data, _OUT_CHUNK)
            self.expanded += len(out)
            if self.expanded > self.limit:
                self.problem = f"expands to more than the {human_size(self.limit)} limit on uncompressed size"
                return
            self.hasher.update(out)
            if self._z.eof:
                self.members += 1
                self._pending = False
                data = self._z.unused_data
                continue
            data = self._z.unconsumed_tail
            if not data and len(out) < _OUT_CHUNK:
                return

    def finish(self) -> str | None:
        """The first problem met, or None when the stream ended cleanly after at least one member."""
        if self.problem is None and self._pending:
            self.problem = "is truncated: the gzip stream does not end"
        elif self.problem is None and self.members == 0:
            self.problem = "is empty, not gzip"
        return self.problem
