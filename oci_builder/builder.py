"""Building: raw inputs become a validated ImagePlan, and plans become an archive.

Everything that can be wrong with the inputs is found in `plan_image`, before a byte is written; `build`
then only streams. The CLI and the Action both call these two functions.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from . import formats
from .archive import MTIME_MAX, TAR_NAME_MAX, ArchiveWriter, atomic_output, docker_entry
from .digest import Progress
from .errors import InputError, UsageError, Warn
from .formats import Format, ImagePlan, LayerInput
from .reference import DEFAULT_TAG, ReferenceError, check_prefix, check_tag, parse_name
from .spec import Descriptor, is_valid_media_type, manifest_blob, name_annotations
from .wasm import WasmFormatError, WasmInfo, read_wasm

# image-spec annotations.md: keys are reverse-domain names; we accept what labels usually are too.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


@dataclass(frozen=True)
class BuildRequest:
    """The inputs as a user gives them (runwasi's flags, or the Action's inputs), not yet checked."""

    name: str
    repo: str | None = None
    tags: Sequence[str] = (DEFAULT_TAG,)
    modules: Sequence[str] = ()
    layers: Sequence[str] = ()
    components: str | None = None
    format: Format = Format.IMAGE
    created: datetime | None = None
    labels: Sequence[str] = ()
    annotations: Sequence[str] = ()
    author: str | None = None


@dataclass(frozen=True)
class BuiltImage:
    references: tuple[str, ...]
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class BuildResult:
    images: tuple[BuiltImage, ...]
    path: Path | None = None
    size: int = 0


def parse_created(text: str, subject: str = "--created") -> datetime:
    """A time given as RFC 3339 (`2024-01-02T03:04:05Z`) or as Unix seconds (SOURCE_DATE_EPOCH's form)."""
    value = text.strip()
    try:
        if value.isdigit():
            moment = datetime.fromtimestamp(int(value), UTC)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise UsageError(
            f"{subject} {text!r}", "not a time: give RFC 3339 (2024-01-02T03:04:05Z) or Unix seconds"
        ) from None
    if moment.tzinfo is None:
        raise UsageError(f"{subject} {text!r}", "the time needs a zone offset, such as Z or +02:00")
    if not 0 <= moment.timestamp() <= MTIME_MAX:
        raise UsageError(f"{subject} {text!r}", "tar headers store times from 1970 to 2242 only")
    return moment.astimezone(UTC).replace(microsecond=0)


def created_from_environment(explicit: str | None, env: Mapping[str, str]) -> datetime | None:
    """`--created` wins; else SOURCE_DATE_EPOCH (reproducible-builds.org); else None, meaning now."""
    if explicit:
        return parse_created(explicit)
    epoch = env.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        if not epoch.isdigit():
            raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r}", "must be a whole number of seconds since 1970")
        return parse_created(epoch, "SOURCE_DATE_EPOCH")
    return None


def parse_key_values(items: Sequence[str], subject: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _KEY.fullmatch(key):
            raise UsageError(f"{subject} {item!r}", "expected KEY=VALUE with a non-empty key")
        out[key] = value
    return out


def plan_image(request: BuildRequest, *, cwd: Path | None = None, warn: Warn | None = None) -> ImagePlan:
    """Check every input and return the plan; raises UsageError or InputError naming the culprit."""
    base = cwd or Path.cwd()
    name, tags = _check_names(request)
    if request.modules and request.components:
        raise UsageError("--module and --components", "are mutually exclusive: give one or the other")
    if not request.modules and not request.components:
        raise UsageError("--module", "no input: give --module PATH (repeatable) or --components DIR")
    fmt = request.format
    module_type = formats.layer_media_type_for_module(fmt)
    layers: list[LayerInput] = []
    if request.components:
        paths = _component_files(base / request.components, request.components, warn)
        layers += [_wasm_input(p, module_type, f"--components {request.components}") for p in paths]
    layers += [_wasm_input(base / m, module_type, "--module") for m in request.modules]
    for spec in request.layers:
        media_type, sep, path = spec.partition("=")
        if not sep or not path:
            raise UsageError(f"--layer {spec!r}", "expected MEDIATYPE=PATH")
        if not is_valid_media_type(media_type):
            raise UsageError(
                f"--layer {spec!r}", f"media type {media_type!r} is not of the form type/subtype"
            )
        layers.append(_file_input(base / path, media_type, "--layer"))
    if fmt.single_module:
        if len(layers) != 1:
            raise UsageError(
                format_flag(fmt), f"takes exactly one wasm module or component; {len(layers)} were given"
            )
        if request.layers:
            raise UsageError("--layer", f"cannot be combined with the {fmt.value} format")
    if request.labels and not fmt.has_image_config:
        raise UsageError(
            "--label", f"the {fmt.value} format has no image config to hold labels; use --annotation"
        )
    plan = ImagePlan(
        reference_name=name,
        tags=tags,
        entry_name=request.name,
        format=fmt,
        layers=tuple(layers),
        created=request.created,
        labels=parse_key_values(request.labels, "--label"),
        annotations=parse_key_values(request.annotations, "--annotation"),
        author=request.author,
    )
    _check_format_limits(plan)
    return plan


def _check_format_limits(plan: ImagePlan) -> None:
    """What a format cannot hold, found before anything is written."""
    if plan.format is Format.ROOTFS and len(formats.rootfs_file(plan).encode()) > TAR_NAME_MAX:
        raise UsageError(
            f"--name {plan.entry_name!r}",
            f"its last component makes a file name longer than the {TAR_NAME_MAX} bytes a tar entry holds",
        )
    if plan.format is Format.ENVOY_COMPAT and plan.layers[0].size > formats.ENVOY_COMPAT_MAX:
        layer = plan.layers[0]
        raise InputError(
            f"{layer.origin} {layer.path}",
            f"is {layer.size} bytes; envoy-compat compresses the plugin in memory and takes at most "
            f"{formats.ENVOY_COMPAT_MAX >> 20} MiB",
            path=layer.path,
        )


def format_flag(fmt: Format) -> str:
    """The flag a user gave for a format, for messages: runwasi's own, or --format."""
    return {Format.ARTIFACT: "--as-artifact", Format.ROOTFS: "--rootfs"}.get(fmt, f"--format {fmt.value}")


def _check_names(request: BuildRequest) -> tuple[str, tuple[str, ...]]:
    try:
        name_ref = parse_name(request.name)
        if name_ref.domain:
            raise ReferenceError(f"{request.name!r} names a registry; put it in --repo")
    except ReferenceError as exc:
        raise UsageError(f"--name {request.name!r}", str(exc)) from None
    repo = request.repo.rstrip("/") if request.repo else None
    if repo is not None:
        try:
            check_prefix(repo)
        except ReferenceError as exc:
            raise UsageError(f"--repo {request.repo!r}", str(exc)) from None
    if not request.tags:
        raise UsageError("--tag", "at least one tag is needed")
    for tag in request.tags:
        try:
            check_tag(tag)
        except ReferenceError as exc:
            raise UsageError(f"--tag {tag!r}", str(exc)) from None
    full = f"{repo}/{request.name}" if repo else request.name
    try:
        parse_name(full)
    except ReferenceError as exc:
        raise UsageError(f"--repo/--name {full!r}", str(exc)) from None
    return full, tuple(dict.fromkeys(request.tags))


def _component_files(directory: Path, given: str, warn: Warn | None) -> list[Path]:
    subject = f"--components {given}"
    try:
        entries = sorted(directory.iterdir(), key=lambda p: p.name)
    except FileNotFoundError:
        raise InputError(subject, "no such directory", path=directory) from None
    except NotADirectoryError:
        raise InputError(subject, "is not a directory", path=directory) from None
    except OSError as exc:
        raise InputError(subject, exc.strerror or str(exc), path=directory) from None
    wasm = [p for p in entries if p.suffix == ".wasm" and not p.is_dir()]
    if warn:
        for p in entries:
            if p not in wasm:
                warn(f"{subject}: skipping {p.name} (not a .wasm file)")
    if not wasm:
        raise InputError(subject, "holds no .wasm file", path=directory)
    return wasm


def _file_input(path: Path, media_type: str, origin: str) -> LayerInput:
    subject = f"{origin} {path}"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(subject, "no such file", path=path) from None
    except OSError as exc:
        raise InputError(subject, exc.strerror or str(exc), path=path) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(subject, "is a directory, not a file", path=path)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(subject, "is not a regular file", path=path)
    if not os.access(path, os.R_OK):
        raise InputError(subject, "permission denied", path=path)
    return LayerInput(path, media_type, st.st_size, origin)


def _wasm_input(path: Path, media_type: str, origin: str) -> LayerInput:
    layer = _file_input(path, media_type, origin)
    return LayerInput(layer.path, media_type, layer.size, origin, _read_wasm_file(path, origin))


def _read_wasm_file(path: Path, origin: str) -> WasmInfo:
    try:
        with open(path, "rb") as f:
            return read_wasm(f)
    except WasmFormatError as exc:
        raise InputError(f"{origin} {path}", str(exc), path=path) from None
    except OSError as exc:
        raise InputError(f"{origin} {path}", exc.strerror or str(exc), path=path) from None


def push_registry(plan: ImagePlan) -> str:
    """The registry a build's push goes to, checked before building: Docker Hub is never guessed."""
    domain = parse_name(plan.reference_name).domain
    if domain is None:
        raise UsageError(
            "--push", "needs a --repo that names the registry, e.g. ghcr.io/OWNER or localhost:5000"
        )
    return domain


def default_output(plan: ImagePlan, out: str | None, cwd: Path | None = None) -> Path:
    """runwasi's `-o` names the archive; no `-o`, or an existing directory, means `NAME.tar` there."""
    base = cwd or Path.cwd()
    filename = plan.entry_name.rsplit("/", 1)[-1] + ".tar"
    if not out:
        return base / filename
    path = base / out
    return path / filename if path.is_dir() else path


def build(
    plans: Sequence[ImagePlan],
    dest: Path | BinaryIO,
    *,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> BuildResult:
    """Write the images to `dest`: a path (replaced atomically) or an open binary file."""
    if isinstance(dest, Path):
        with atomic_output(dest) as f:
            result = _write(plans, f, progress, now)
            size = f.tell()
        return BuildResult(result.images, dest, size)
    return _write(plans, dest, progress, now)


def _write(
    plans: Sequence[ImagePlan], out: BinaryIO, progress: Progress | None, now: datetime | None
) -> BuildResult:
    moment = now or datetime.now(UTC).replace(microsecond=0)
    created = next((p.created for p in plans if p.created is not None), None)
    mtime = int(created.timestamp()) if created else 0
    writer = ArchiveWriter(out, mtime=mtime)
    images: list[BuiltImage] = []
    index: list[Descriptor] = []
    docker: list[dict[str, object]] = []
    for plan in plans:
        blobs = formats.layer_blobs(plan, mtime)
        layers = [
            replace(
                writer.add_stream_blob(blob.media_type, blob.parts, progress), annotations=blob.annotations
            )
            for blob in blobs
        ]
        diff_ids = [blob.diff_id or layer.digest for blob, layer in zip(blobs, layers, strict=True)]
        config = writer.add_blob(formats.config_blob(plan, layers, diff_ids, moment))
        platform = formats.platform(plan)
        artifact_type = formats.artifact_type(plan)
        manifest = writer.add_blob(
            manifest_blob(config, layers, formats.manifest_annotations(plan), artifact_type),
            platform=platform,
            annotations=name_annotations(plan.reference_name, plan.tags[0]),
            artifact_type=artifact_type,
        )
        images.append(BuiltImage(plan.references, manifest, config, tuple(layers)))
        for tag in plan.tags:
            index.append(replace(manifest, annotations=name_annotations(plan.reference_name, tag)))
        docker.append(docker_entry(config, layers, plan.references))
    writer.finish_layout(index, docker)
    return BuildResult(tuple(images))
