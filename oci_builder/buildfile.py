"""Build files: one YAML file describes several images, built into one archive or into one archive each.

    output: dist/all.tar          # optional: every image in this one archive; else one archive per image
    created: 2024-01-01T00:00:00Z # optional, as --created; else $SOURCE_DATE_EPOCH, else now
    images:                       # required, at least one
      - name: hello               # required
        repo: ghcr.io/me          # optional
        tags: [v1, latest]        # or `tag: v1`; default latest
        modules: [hello.wasm]     # or `module: hello.wasm`, or `components: DIR`
        layers:                   # optional: {mediaType: TYPE, path: PATH} mappings or "TYPE=PATH" strings
          - {mediaType: text/plain, path: notes.txt}
        format: image             # a Format value: image, artifact, rootfs, ...
        annotations: {k: v}       # optional
        labels: {k: v}            # optional
        output: dist/hello.tar    # only without a top-level output; default NAME.tar; DIR/ means DIR/NAME.tar

Relative paths are taken from the build file's directory, as docker compose does. Scalars are taken as
written: `tag: 1.10` is the tag "1.10", never the number 1.1.

Why not `yaml.safe_load`: an error must point at its line, so the file is composed into nodes (each keeps
its position) and checked here against the schema. PyYAML also keeps the last of two equal keys without a
word and expands aliases (a billion-laughs file is a few hundred bytes): duplicates, anchors and aliases are
refused, and the size and the nesting are bounded. Every error is one line, `FILE:LINE:COLUMN: WHERE: what`.
Errors found later, when `plan_image` checks names and files, are placed at the value they are about.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import yaml

from .builder import BuildRequest, default_output, parse_created, parse_key_values, plan_image
from .errors import InputError, OciBuilderError, UsageError, Warn
from .formats import Format, ImagePlan
from .reference import DEFAULT_TAG
from .spec import is_valid_media_type

MAX_SIZE = 1 << 20
MAX_DEPTH = 16
"""Our schema nests five levels deep; PyYAML composes recursively, so depth is bounded before it runs."""

_TOP_KEYS = ("output", "created", "images")
_IMAGE_KEYS = (
    "name",
    "repo",
    "tag",
    "tags",
    "module",
    "modules",
    "components",
    "layers",
    "format",
    "annotations",
    "labels",
    "output",
)
_LAYER_KEYS = ("mediaType", "path")
_NULL_TAG = "tag:yaml.org,2002:null"
_STANDARD_TAGS = "tag:yaml.org,2002:"
# libyaml's parser, when PyYAML has it, reads a file at the size bound ten times faster; same positions.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# plan_image names its inputs by CLI flag; a build file's reader knows them by key.
_KEYS_OF_FLAG = {
    "--name": ("name",),
    "--repo": ("repo",),
    "--repo/--name": ("repo", "name"),
    "--tag": ("tags", "tag"),
    "--module": ("modules", "module"),
    "--components": ("components",),
    "--layer": ("layers",),
    "--label": ("labels",),
    "--annotation": ("annotations",),
    "--as-artifact": ("format",),
    "--rootfs": ("format",),
    "--format": ("format",),
}
_FLAG = re.compile(r"--[a-z][a-z-]*")

Node = yaml.Node


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Spot:
    """Where a value was written: `value` is None for a whole key's value, else one item as written."""

    key: str
    value: str | None
    location: Location


@dataclass(frozen=True)
class BuildFileImage:
    """One image of a build file; its paths (and `output`) are relative to the build file's directory."""

    request: BuildRequest
    output: str | None
    where: str
    location: Location
    spots: tuple[Spot, ...]


@dataclass(frozen=True)
class BuildFile:
    """`created` is the time every image gets: the file's, else the default it was loaded with."""

    path: Path
    directory: Path
    images: tuple[BuildFileImage, ...]
    created: datetime | None = None
    output: str | None = None
    output_location: Location | None = None

    def with_default_annotations(self, annotations: Sequence[str]) -> BuildFile:
        """Every image with these KEY=VALUE annotations first, so that its own override them."""
        images = tuple(
            replace(
                image, request=replace(image.request, annotations=[*annotations, *image.request.annotations])
            )
            for image in self.images
        )
        return replace(self, images=images)


@dataclass(frozen=True)
class ArchivePlan:
    """One archive to write and the images it holds, in the build file's order."""

    path: Path
    plans: tuple[ImagePlan, ...]


def load_build_file(path: Path, *, default_created: datetime | None = None) -> BuildFile:
    """Read and check a build file; `default_created` applies when the file sets no `created`."""
    schema = _Schema(path)
    root = schema.compose(_read_text(path))
    if root is None:
        schema.fail(None, "", "the build file is empty: it needs a list of images (`images:`)")
    top = schema.mapping(root, "", _TOP_KEYS)
    if "images" not in top:
        schema.fail(root, "", "missing required key 'images'")
    created = default_created
    if "created" in top:
        text = schema.string(top["created"][1], "created")
        try:
            created = parse_created(text, "created")
        except UsageError as exc:
            schema.fail(top["created"][1], "created", f"{text!r}: {exc.problem}")
    output: str | None = None
    output_location: Location | None = None
    if "output" in top:
        output = schema.string(top["output"][1], "output")
        output_location = schema.at(top["output"][1])
        if not output or output.endswith("/"):
            schema.fail(top["output"][1], "output", "names the one archive of every image: give a file name")
    images_node = top["images"][1]
    if not isinstance(images_node, yaml.SequenceNode) or not images_node.value:
        got = "an empty list" if isinstance(images_node, yaml.SequenceNode) else _shown(images_node)
        schema.fail(images_node, "images", f"expected a list of at least one image, got {got}")
    images = tuple(
        schema.image(node, index, created, output_location) for index, node in enumerate(images_node.value)
    )
    return BuildFile(path, path.parent, images, created, output, output_location)


def plan_archives(build_file: BuildFile, *, warn: Warn | None = None) -> list[ArchivePlan]:
    """Check every image as `plan_image` does and say which archives to write; nothing is written yet."""
    plans = [_plan(build_file, image, warn) for image in build_file.images]
    if build_file.output is not None:
        dest = _absolute(build_file.directory / build_file.output)
        if dest.is_dir():
            raise UsageError(
                str(build_file.output_location),
                f"output: {dest} is a directory; give the file name of the archive",
                path=build_file.path,
            )
        _check_unique_references(build_file, plans)
        return [ArchivePlan(dest, tuple(plans))]
    archives: list[ArchivePlan] = []
    written: dict[str, BuildFileImage] = {}
    for image, plan in zip(build_file.images, plans, strict=True):
        dest = _absolute(_image_output(build_file.directory, image.output, plan))
        first = written.setdefault(str(dest), image)
        if first is not image:
            spot = next((s for s in image.spots if s.key == "output"), None)
            raise UsageError(
                str(spot.location if spot else image.location),
                f"{image.where}: its archive {dest} is also the one of {first.where} (line "
                f"{first.location.line}): give each image its own output, or a top-level output for all",
                path=build_file.path,
            )
        archives.append(ArchivePlan(dest, (plan,)))
    return archives


def _absolute(path: Path) -> Path:
    """Archives are named in full, as a build from flags names them."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _image_output(directory: Path, output: str | None, plan: ImagePlan) -> Path:
    if output is not None and output.endswith("/"):
        return default_output(plan, None, cwd=directory / output)
    return default_output(plan, output, cwd=directory)


def _check_unique_references(build_file: BuildFile, plans: Sequence[ImagePlan]) -> None:
    owners: dict[str, BuildFileImage] = {}
    for image, plan in zip(build_file.images, plans, strict=True):
        for reference in plan.references:
            first = owners.setdefault(reference, image)
            if first is not image:
                raise UsageError(
                    str(image.location),
                    f"{image.where}: {reference} is also {first.where} (line {first.location.line}): "
                    "one archive holds each reference once",
                    path=build_file.path,
                )


def _plan(build_file: BuildFile, image: BuildFileImage, warn: Warn | None) -> ImagePlan:
    def located(message: str) -> None:
        if warn is not None:
            warn(f"{image.location}: {image.where}: {_in_keys(message)}")

    try:
        return plan_image(image.request, cwd=build_file.directory, warn=located)
    except OciBuilderError as exc:
        raise _placed(exc, build_file, image) from None


def _placed(exc: OciBuilderError, build_file: BuildFile, image: BuildFileImage) -> OciBuilderError:
    """The same error, at the value it is about and in the build file's words (keys, not flags)."""
    flag, _, shown = exc.subject.partition(" ")
    keys = _KEYS_OF_FLAG.get(flag, ())
    spots = [spot for spot in image.spots if spot.key in keys]
    spot = next(
        (
            s
            for s in spots
            if s.value is not None
            and (
                repr(s.value) in shown
                or (exc.path is not None and exc.path == build_file.directory / s.value)
            )
        ),
        spots[0] if spots else None,
    )
    if spot is None:
        where, location, text = image.where, image.location, str(exc)
    else:
        where, location = f"{image.where}.{spot.key}", spot.location
        text = f"{shown}: {exc.problem}" if shown and shown not in exc.problem else exc.problem
    return type(exc)(str(location), f"{where}: {_in_keys(text)}", path=build_file.path)


def _in_keys(message: str) -> str:
    return _FLAG.sub(lambda m: _KEYS_OF_FLAG.get(m.group(), (m.group(),))[0], message)


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SIZE + 1)
    except FileNotFoundError:
        raise InputError(str(path), "no such file", path=path) from None
    except IsADirectoryError:
        raise InputError(str(path), "is a directory, not a build file", path=path) from None
    except OSError as exc:
        raise InputError(str(path), exc.strerror or str(exc), path=path) from None
    if len(data) > MAX_SIZE:
        raise UsageError(
            str(path), f"is larger than {MAX_SIZE >> 20} MiB: too large for a build file", path=path
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise UsageError(f"{path}:{line}:{column}", "not UTF-8 text", path=path) from None


def _shown(node: Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "nothing" if node.tag == _NULL_TAG else repr(node.value)


class _Schema:
    """Turns composed YAML nodes into checked values, failing with the position of the offending node."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def at(self, node: object) -> Location:
        """The 1-based position of a node or of a mark (PyYAML has two Mark classes); none means 1:1."""
        mark = node.start_mark if isinstance(node, Node) else node
        line, column = getattr(mark, "line", 0), getattr(mark, "column", 0)
        return Location(str(self.path), line + 1, column + 1)

    def fail(self, node: object, where: str, problem: str) -> NoReturn:
        raise UsageError(str(self.at(node)), f"{where}: {problem}" if where else problem, path=self.path)

    def compose(self, text: str) -> Node | None:
        try:
            self._check_events(text)
            return yaml.compose(text, Loader=_LOADER)
        except yaml.MarkedYAMLError as exc:
            what = ", ".join(part for part in (exc.context, exc.problem) if part)
            self.fail(exc.problem_mark or exc.context_mark, "", f"invalid YAML: {what}")
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, exc.position) + 1
            column = exc.position - text.rfind("\n", 0, exc.position)
            raise UsageError(
                f"{self.path}:{line}:{column}",
                f"invalid YAML: {exc.reason} (#x{exc.character:04x})",
                path=self.path,
            ) from None
        except yaml.YAMLError as exc:
            self.fail(None, "", f"invalid YAML: {str(exc).splitlines()[0]}")

    def _check_events(self, text: str) -> None:
        """Refuse what the schema never needs and a hostile file would use, before anything is composed."""
        depth = 0
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.AliasEvent) or (isinstance(event, yaml.NodeEvent) and event.anchor):
                self.fail(
                    event.start_mark, "", "YAML anchors and aliases are not supported: write values out"
                )
            tag = event.tag if isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent) else None
            if tag and not tag.startswith(_STANDARD_TAGS):
                self.fail(event.start_mark, "", f"the YAML tag {tag} is not supported")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    self.fail(event.start_mark, "", f"nested more than {MAX_DEPTH} levels deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1

    def mapping(self, node: Node, where: str, allowed: Sequence[str] | None) -> dict[str, tuple[Node, Node]]:
        """The mapping's keys with their key and value nodes; unknown or repeated keys are errors."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, where, f"expected a mapping, got {_shown(node)}")
        fields: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL_TAG:
                self.fail(key_node, where, f"keys must be strings, not {_shown(key_node)}")
            key = str(key_node.value)
            if key in fields:
                first = fields[key][0].start_mark.line + 1
                self.fail(key_node, where, f"duplicate key {key!r} (first on line {first})")
            if allowed is not None and key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(key_node, where, f"unknown key {key!r}{hint}; allowed: {', '.join(allowed)}")
            fields[key] = (key_node, value_node)
        return fields

    def string(self, node: Node, where: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL_TAG:
            self.fail(node, where, f"expected a string, got {_shown(node)}")
        return str(node.value)

    def strings(self, node: Node, where: str) -> list[tuple[str, Node]]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, where, f"expected a list of strings, got {_shown(node)}")
        return [(self.string(item, f"{where}[{i}]"), item) for i, item in enumerate(node.value)]

    def image(
        self,
        node: Node,
        index: int,
        created: datetime | None,
        top_output: Location | None,
    ) -> BuildFileImage:
        where = f"images[{index}]"
        fields = self.mapping(node, where, _IMAGE_KEYS)
        spots: list[Spot] = []

        def value_node(key: str) -> Node:
            spots.append(Spot(key, None, self.at(fields[key][1])))
            return fields[key][1]

        def text(key: str) -> str | None:
            if key not in fields:
                return None
            value = self.string(value_node(key), f"{where}.{key}")
            spots.append(Spot(key, value, self.at(fields[key][1])))
            return value

        def texts(one: str, many: str) -> list[str] | None:
            """A list under `many`, or a single string under `one`, but not both."""
            if one in fields and many in fields:
                self.fail(fields[many][0], where, f"give {one} or {many}, not both")
            if one in fields:
                return [text(one) or ""]
            if many not in fields:
                return None
            items = self.strings(value_node(many), f"{where}.{many}")
            spots.extend(Spot(many, value, self.at(item)) for value, item in items)
            return [value for value, _ in items]

        if "name" not in fields:
            self.fail(node, where, "missing required key 'name'")
        name = text("name") or ""
        repo = text("repo")
        tags = texts("tag", "tags")
        modules = texts("module", "modules") or []
        components = text("components")
        if modules and components is not None:
            self.fail(fields["components"][0], where, "give module(s) or components, not both")
        if not modules and not components:
            present = next((fields[k][1] for k in ("modules", "components") if k in fields), node)
            self.fail(present, where, "no wasm to package: give module, modules or components")
        fmt = Format.IMAGE
        if "format" in fields:
            value = text("format") or ""
            try:
                fmt = Format(value)
            except ValueError:
                choices = ", ".join(f.value for f in Format)
                self.fail(fields["format"][1], f"{where}.format", f"{value!r} is not one of {choices}")
        layers = self.layers(value_node("layers"), f"{where}.layers", spots) if "layers" in fields else []
        labels = self.key_values(value_node("labels"), f"{where}.labels") if "labels" in fields else []
        annotations = (
            self.key_values(value_node("annotations"), f"{where}.annotations")
            if "annotations" in fields
            else []
        )
        output = text("output")
        if output is not None and top_output is not None:
            self.fail(
                fields["output"][1],
                f"{where}.output",
                f"not with the top-level output (line {top_output.line}), which holds every image",
            )
        request = BuildRequest(
            name=name,
            repo=repo,
            tags=[DEFAULT_TAG] if tags is None else tags,
            modules=modules,
            layers=layers,
            components=components,
            format=fmt,
            created=created,
            labels=labels,
            annotations=annotations,
        )
        return BuildFileImage(request, output, where, self.at(node), tuple(spots))

    def layers(self, node: Node, where: str, spots: list[Spot]) -> list[str]:
        """Each layer as MEDIATYPE=PATH, as --layer takes it."""
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, where, f"expected a list of layers, got {_shown(node)}")
        layers: list[str] = []
        for i, item in enumerate(node.value):
            item_where = f"{where}[{i}]"
            if isinstance(item, yaml.MappingNode):
                fields = self.mapping(item, item_where, _LAYER_KEYS)
                for key in _LAYER_KEYS:
                    if key not in fields:
                        self.fail(item, item_where, f"missing required key {key!r}")
                type_node, path_node = fields["mediaType"][1], fields["path"][1]
                media_type = self.string(type_node, f"{item_where}.mediaType")
                path = self.string(path_node, f"{item_where}.path")
            elif isinstance(item, yaml.ScalarNode) and item.tag != _NULL_TAG:
                type_node = path_node = item
                media_type, _, path = str(item.value).partition("=")
            else:
                self.fail(
                    item, item_where, f"expected {{mediaType, path}} or 'MEDIATYPE=PATH', got {_shown(item)}"
                )
            if not is_valid_media_type(media_type):
                self.fail(type_node, item_where, f"media type {media_type!r} is not of the form type/subtype")
            if not path:
                self.fail(path_node, item_where, "the layer's path is empty")
            spots.append(Spot("layers", path, self.at(path_node)))
            layers.append(f"{media_type}={path}")
        return layers

    def key_values(self, node: Node, where: str) -> list[str]:
        """A mapping of strings as KEY=VALUE items; a key `=` would split elsewhere is refused here."""
        items: list[str] = []
        for key, (key_node, value_node) in self.mapping(node, where, None).items():
            value = self.string(value_node, f"{where}.{key}")
            item = f"{key}={value}"
            try:
                valid = parse_key_values([item], where) == {key: value}
            except UsageError:
                valid = False
            if not valid:
                self.fail(
                    key_node,
                    where,
                    f"{key!r} is not a valid key: a letter or digit, then letters, digits, . _ / -",
                )
            items.append(item)
        return items
