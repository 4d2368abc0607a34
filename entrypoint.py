"""The GitHub Action: the step's inputs in, an OCI archive and its digests out.

A thin shell over the library calls the CLI makes (`plan_image`, then `build`). The runner passes every
input declared in action.yml as an INPUT_* variable (hyphens kept: INPUT_AS-ARTIFACT), and action.yml is
read for the defaults too, so a `docker run` that sets only a few inputs behaves as the runner would.
The runner starts this once per job, so start-up counts: requests, which actions-toolkit imports only for
OIDC tokens we never ask for, is loaded lazily.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from oci_builder.builder import (
    BuildRequest,
    BuildResult,
    BuiltImage,
    build,
    created_from_environment,
    default_output,
    plan_image,
    push_registry,
)
from oci_builder.errors import OciBuilderError, OutputError, UsageError
from oci_builder.formats import Format, ImagePlan, manifest_annotations, rfc3339
from oci_builder.progress import human_size, print_summary
from oci_builder.spec import ANNOTATION_CREATED

if TYPE_CHECKING:
    from oci_builder.registry import Credential


def _defer_import(name: str) -> None:
    """Let `import name` return at once; the real module loads when one of its attributes is first used.

    importlib.util.LazyLoader does not do it: the import statement reads the module's __spec__, which makes
    a lazy module load there and then. A placeholder module has __spec__; its PEP 562 __getattr__ runs only
    for the attributes it lacks, that is, the real module's.
    """
    if name in sys.modules or importlib.util.find_spec(name) is None:
        return  # loaded already, or not installed: the real import fails and says so
    placeholder = types.ModuleType(name)

    def load(attribute: str) -> object:
        module = sys.modules[name]
        if module is placeholder:
            del sys.modules[name]
            module = importlib.import_module(name)
            vars(placeholder).update(vars(module))
        return getattr(module, attribute)

    vars(placeholder)["__getattr__"] = load
    sys.modules[name] = placeholder


# Loading requests would take ~50 ms on top of ~55 ms from start to outputs; only the OIDC client uses it.
_defer_import("requests")
from actions_toolkit import core  # type: ignore[import-untyped]  # noqa: E402
from actions_toolkit.command import issue_command  # type: ignore[import-untyped]  # noqa: E402

ACTION_YML = Path(__file__).resolve().with_name("action.yml")

ANNOTATION_SOURCE = "org.opencontainers.image.source"
ANNOTATION_REVISION = "org.opencontainers.image.revision"
GHCR = "ghcr.io"

# The library names its inputs by CLI flag; a user of the Action knows them by input name.
_INPUT_OF_FLAG = {
    "--name": "name",
    "--repo": "repo",
    "--tag": "tag",
    "--module": "module",
    "--layer": "layers",
    "--components": "components",
    "--as-artifact": "as-artifact",
    "--rootfs": "rootfs",
    "--created": "created",
    "--label": "labels",
    "--annotation": "annotations",
    "--username": "username",
    "--password-stdin": "password",
    "--push": "push",
}
_FLAG = re.compile(r"--[a-z][a-z-]*")


def input_env_name(name: str) -> str:
    """The runner's variable for an input: spaces become '_', hyphens stay (INPUT_AS-ARTIFACT)."""
    return "INPUT_" + name.replace(" ", "_").upper()


@functools.cache
def declared_inputs(action_yml: Path = ACTION_YML) -> dict[str, str]:
    """Every input action.yml declares, with its default as the runner would pass it ('' when none)."""
    with open(action_yml, encoding="utf-8") as f:
        metadata = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    inputs = metadata.get("inputs") or {}
    return {name: _scalar((spec or {}).get("default", "")) for name, spec in inputs.items()}


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = "" if value is None else str(value)
    # An expression default (`${{ github.token }}`) means something only to the runner, which evaluates it;
    # outside a workflow the input is simply not given.
    return "" if "${{" in text else text


def apply_defaults(defaults: Mapping[str, str]) -> None:
    """Give every declared input the runner's value when it is not set: its default from action.yml."""
    for name, default in defaults.items():
        key = input_env_name(name)
        if key not in os.environ:
            os.environ[key] = default


@dataclass(frozen=True)
class Inputs:
    """The step's inputs, read once, as typed values; nothing here is validated beyond its type."""

    request: BuildRequest
    output: str
    push: bool
    username: str
    password: str
    github_token: str


def _text(name: str) -> str:
    return str(core.get_input(name))


def _lines(name: str) -> list[str]:
    return [str(line) for line in core.get_multiline_input(name)]


def _flag(name: str) -> bool:
    try:
        return bool(core.get_boolean_input(name))
    except TypeError:
        raise UsageError(f"{name} {_text(name)!r}", "must be true or false") from None


def _paths(name: str) -> list[str]:
    """A list given one a line or separated by commas."""
    return [item.strip() for line in _lines(name) for item in line.split(",") if item.strip()]


def read_inputs(moment: datetime, env: Mapping[str, str]) -> Inputs:
    if not _text("name"):
        raise UsageError("name", "is required: the image's name (or give a build file in config)")
    fmt = read_format()
    created = created_from_environment(_text("created") or None, env)
    request = BuildRequest(
        name=_text("name"),
        repo=_text("repo") or None,
        tags=[_text("tag"), *_lines("tags")],
        modules=_paths("module"),
        layers=_lines("layers"),
        components=_text("components") or None,
        format=fmt,
        created=created,
        labels=_lines("labels"),
        # The user's annotations come last, so they override the ones taken from the GitHub context.
        annotations=[*context_annotations(created or moment, env), *_lines("annotations")],
    )
    return Inputs(
        request=request,
        output=_text("output"),
        push=_flag("push"),
        username=_text("username"),
        password=_text("password"),
        github_token=_text("github-token"),
    )


def read_format() -> Format:
    """`format`, or runwasi's booleans `as-artifact` and `rootfs` for two of its values; never a mix."""
    chosen = [name for name in ("as-artifact", "rootfs") if _flag(name)]
    if _text("format"):
        chosen.append("format")
    if len(chosen) > 1:
        raise UsageError(" and ".join(chosen), "are mutually exclusive: set one of them")
    if not chosen:
        return Format.IMAGE
    if chosen[0] != "format":
        return Format.ARTIFACT if chosen[0] == "as-artifact" else Format.ROOTFS
    try:
        return Format(_text("format"))
    except ValueError:
        allowed = ", ".join(f.value for f in Format)
        raise UsageError(f"format {_text('format')!r}", f"is not one of {allowed}") from None


def context_annotations(moment: datetime, env: Mapping[str, str]) -> list[str]:
    """The OCI annotations docker/metadata-action fills in from the workflow's context."""
    annotations = [f"{ANNOTATION_CREATED}={rfc3339(moment)}"]
    repository = env.get("GITHUB_REPOSITORY")
    if repository:
        server = env.get("GITHUB_SERVER_URL") or "https://github.com"
        annotations.append(f"{ANNOTATION_SOURCE}={server}/{repository}")
    if env.get("GITHUB_SHA"):
        annotations.append(f"{ANNOTATION_REVISION}={env['GITHUB_SHA']}")
    return annotations


def make_directories(directory: Path) -> list[Path]:
    """Create `directory` and any missing parents; return the ones created, outermost first."""
    missing: list[Path] = []
    while not directory.exists() and directory.parent != directory:
        missing.append(directory)
        directory = directory.parent
    if not directory.is_dir():
        raise OutputError("output", f"{directory} is not a directory")
    for path in reversed(missing):
        try:
            path.mkdir(exist_ok=True)
        except OSError as exc:
            raise OutputError("output", f"cannot create directory {path}: {exc.strerror or exc}") from None
    return missing[::-1]


def output_path(plan: ImagePlan, output: str, workspace: Path) -> tuple[Path, list[Path]]:
    """Where the archive goes, and the directories made for it; `DIR/` means NAME.tar inside DIR."""
    created: list[Path] = []
    if output.endswith("/"):
        created += make_directories(workspace / output)
    dest = Path(os.path.normpath(default_output(plan, output, cwd=workspace)))
    created += make_directories(dest.parent)
    return dest, created


def give_to_workspace_owner(paths: Sequence[Path], workspace: Path) -> None:
    """The container runs as root; later steps run on the host as the workspace's owner and must own these."""
    if os.geteuid() != 0:
        return
    owner = workspace.stat()
    for path in paths:
        try:
            # Never through a link: the workspace is the user's, and root here could chown anything.
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
        except FileNotFoundError:
            pass  # the build failed before writing it
        except OSError as exc:
            core.warning(f"cannot give {relative_to(path, workspace)} to uid {owner.st_uid}: {exc.strerror}")


def relative_to(path: Path, workspace: Path) -> str:
    """The path as later steps on the host can use it: relative to the workspace when it is inside."""
    path = Path(os.path.normpath(path))
    return str(path.relative_to(workspace)) if path.is_relative_to(workspace) else str(path)


def metadata(plan: ImagePlan, result: BuildResult, archive: str, pushed: list[str]) -> dict[str, object]:
    (image,) = result.images
    return {**image_metadata(plan, image, archive, result.size), "pushed": pushed}


def image_metadata(plan: ImagePlan, image: BuiltImage, archive: str, size: int) -> dict[str, object]:
    return {
        "annotations": manifest_annotations(plan),
        "image": image.references[0],
        "references": list(image.references),
        "digest": image.manifest.digest,
        "config-digest": image.config.digest,
        "path": archive,
        "size": size,
        "manifest": image.manifest.to_json(),
        "config": image.config.to_json(),
        "layers": [layer.to_json() for layer in image.layers],
    }


def summary_markdown(result: BuildResult, archive: str, pushed: list[str]) -> str:
    """The job summary: what `regctl manifest get` shows, as two tables."""
    (image,) = result.images
    platform = image.manifest.platform
    references = ", ".join(f"`{reference}`" for reference in image.references)
    platform_text = f"`{platform.os}/{platform.architecture}`" if platform else ""
    blobs = [("manifest", image.manifest), ("config", image.config)]
    blobs += [(f"layer {number}", layer) for number, layer in enumerate(image.layers, 1)]
    lines = [
        f"### oci-tar-builder: `{image.references[0]}`",
        "",
        "| Image | Platform | Digest |",
        "|---|---|---|",
        f"| {references} | {platform_text} | `{image.manifest.digest}` |",
        "",
        "| Blob | Media type | Digest | Size |",
        "|---|---|---|---|",
        *(f"| {what} | `{d.media_type}` | `{d.digest}` | {human_size(d.size)} |" for what, d in blobs),
        "",
        f"Archive: `{archive}` ({human_size(result.size)})",
        *(f"<br>Pushed: `{ref}`" for ref in pushed),
        "",
    ]
    return "\n".join(lines)


def report_error(exc: OciBuilderError, workspace: Path) -> None:
    """One `::error::` line in the Action's words: input names, not flags; paths as the user wrote them."""
    message = _FLAG.sub(lambda m: _INPUT_OF_FLAG.get(m.group(), m.group()), str(exc))
    if isinstance(exc, OutputError) and exc.subject != "output":
        message = f"output {message}"
    message = message.replace(f"{workspace}/", "")
    properties = {"file": relative_to(exc.path, workspace)} if exc.path is not None else {}
    issue_command("error", properties, message)


def check_push(inputs: Inputs, plan: ImagePlan) -> None:
    """Checked before building: a push needs `repo` to name the registry (Docker Hub is never guessed)
    and both credentials or neither."""
    if not inputs.push:
        return
    push_registry(plan)
    if bool(inputs.username) != bool(inputs.password):
        given, missing = ("username", "password") if inputs.username else ("password", "username")
        raise UsageError(given, f"is given without {missing}: give both, or neither to push anonymously")


def push_credential(inputs: Inputs, registry: str, env: Mapping[str, str]) -> Credential | None:
    """`username`/`password` when given; for ghcr.io without them, the workflow's token; else none.

    Other registries get no token: it would be a credential sent where it means nothing.
    """
    from oci_builder.registry import Credential

    if inputs.username:
        return Credential(inputs.username, inputs.password)
    if registry == GHCR and inputs.github_token:
        # ghcr.io takes the workflow's token with any user name; the actor's is the natural one.
        return Credential(env.get("GITHUB_ACTOR") or "github-actions", inputs.github_token)
    return None


def push(archive: Path, inputs: Inputs, registry: str) -> list[str]:
    """Push every tag of the image; the registry client is imported only by the jobs that push."""
    from oci_builder.registry import PushEvent, push_archive

    def log(event: PushEvent) -> None:
        if event.action != "uploading":
            core.info(str(event))

    credential = push_credential(inputs, registry, os.environ)
    pushed = push_archive(archive, credentials=credential, on_event=log, warn=core.warning)
    for ref in pushed:
        core.info(f"pushed {ref}")
    return [str(ref) for ref in pushed]


def run(workspace: Path) -> int:
    now = datetime.now(UTC).replace(microsecond=0)
    config = _text("config")
    if config:
        return run_build_file(workspace / config, workspace, now)
    inputs = read_inputs(now, os.environ)
    plan = plan_image(inputs.request, cwd=workspace, warn=core.warning)
    check_push(inputs, plan)
    dest, created_dirs = output_path(plan, inputs.output, workspace)
    archive = relative_to(dest, workspace)
    try:
        result = build_logged([plan], dest, workspace, now)
    finally:
        give_to_workspace_owner([*created_dirs, dest], workspace)
    pushed: list[str] = []
    if inputs.push:
        core.start_group(f"Push {', '.join(plan.references)}")
        try:
            pushed = push(dest, inputs, push_registry(plan))
        finally:
            core.end_group()

    (image,) = result.images
    outputs = {
        "digest": image.manifest.digest,
        "path": archive,
        "image": image.references[0],
        "config-digest": image.config.digest,
        "size": str(result.size),
        "pushed": "\n".join(pushed),
        "metadata": json.dumps(metadata(plan, result, archive, pushed), sort_keys=True),
    }
    publish(outputs, summary_markdown(result, archive, pushed))
    core.info(f"{image.references[0]} {image.manifest.digest} -> {archive}")
    return 0


def build_logged(plans: Sequence[ImagePlan], dest: Path, workspace: Path, now: datetime) -> BuildResult:
    """One archive, its inputs and summary in a log group, as both the single image and `config` do."""
    if not dest.is_relative_to(workspace):
        where = relative_to(dest, workspace)
        core.warning(f"output {where} is outside the workspace: later steps on the host will not see it")
    core.start_group(f"Build {', '.join(plan.reference for plan in plans)}")
    try:
        for layer in (layer for plan in plans for layer in plan.layers):
            core.info(f"{relative_to(layer.path, workspace)}: {layer.media_type}, {human_size(layer.size)}")
        result = build(plans, dest, now=now)
        print_summary(result)
    finally:
        core.end_group()
    return result


def publish(outputs: Mapping[str, str], summary: str) -> None:
    for name, value in outputs.items():
        core.set_output(name, value)
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as f:
            f.write(summary)


# The build file describes the images: with `config`, these inputs must keep their defaults.
BUILD_FILE_REPLACES = (
    "name",
    "repo",
    "tag",
    "tags",
    "module",
    "layers",
    "components",
    "as-artifact",
    "rootfs",
    "format",
    "labels",
    "annotations",
    "output",
)


def check_build_file_inputs(defaults: Mapping[str, str]) -> None:
    for name in BUILD_FILE_REPLACES:
        if _text(name) != defaults[name]:
            raise UsageError(name, "is not used with config: the build file describes the images")
    if _flag("push"):
        raise UsageError("push", "is not supported with config: push each archive in a later step")


def run_build_file(path: Path, workspace: Path, now: datetime) -> int:
    """The `config` input: every image of a build file, with the same context annotations as one image.

    `digest`, `image`, `config-digest`, `path` and `size` describe the first image; `metadata` holds them
    too, and under `images` an entry for every image, each with its archive's path.
    """
    from oci_builder.buildfile import load_build_file, plan_archives

    check_build_file_inputs(declared_inputs())
    created = created_from_environment(_text("created") or None, os.environ)
    build_file = load_build_file(path, default_created=created)
    # As for one image: the user's annotations override the context's, whose time is the file's `created`.
    build_file = build_file.with_default_annotations(
        context_annotations(build_file.created or now, os.environ)
    )
    archives = plan_archives(
        build_file, warn=lambda message: core.warning(message.replace(f"{workspace}/", ""))
    )
    owned: list[Path] = []
    images: list[dict[str, object]] = []
    summary: list[str] = []
    try:
        for archive in archives:
            owned += make_directories(archive.path.parent)
            owned.append(archive.path)
            where = relative_to(archive.path, workspace)
            result = build_logged(archive.plans, archive.path, workspace, now)
            for plan, image in zip(archive.plans, result.images, strict=True):
                images.append(image_metadata(plan, image, where, result.size))
                summary.append(summary_markdown(BuildResult((image,), result.path, result.size), where, []))
                core.info(f"{image.references[0]} {image.manifest.digest} -> {where}")
    finally:
        give_to_workspace_owner(owned, workspace)
    first = images[0]
    outputs = {name: str(first[name]) for name in ("digest", "path", "image", "config-digest", "size")}
    outputs["pushed"] = ""
    outputs["metadata"] = json.dumps({**first, "pushed": [], "images": images}, sort_keys=True)
    publish(outputs, "".join(summary))
    return 0


def main() -> int:
    for name in ("password", "github-token"):
        secret_input = os.environ.get(input_env_name(name), "")
        for secret in dict.fromkeys([secret_input, secret_input.strip(), *secret_input.splitlines()]):
            if secret.strip():
                core.set_secret(secret)
    workspace = Path(os.path.normpath(os.environ.get("GITHUB_WORKSPACE") or os.getcwd()))
    try:
        apply_defaults(declared_inputs())
        return run(workspace)
    except OciBuilderError as exc:
        report_error(exc, workspace)
        return 1
    except Exception as exc:
        if core.is_debug():
            import traceback

            traceback.print_exc(file=sys.stdout)
        core.error(f"internal error: {exc!r} (re-run with debug logging for the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
