"""The `oci-tar-builder` command: runwasi's flags unchanged, as a thin shell over the library.

The bare flag form builds, as runwasi's tool does; other verbs are subcommands. Errors are one line on
stderr, exit 2 for usage and 1 for failures; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import OciBuilderError, UsageError

if TYPE_CHECKING:
    from .formats import Format, ImagePlan
    from .progress import TerminalProgress
    from .registry import Credential, PushEvent

# Each command imports what it needs when it runs: `--version` and `--help` stay fast, and a build
# never loads the HTTP stack.

PROG = "oci-tar-builder"


class _ArgumentParser(argparse.ArgumentParser):
    """argparse prints usage and exits itself; we want its complaints as our one-line UsageError."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError("", message)


def _build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=PROG,
        description="Package WebAssembly modules and components as an OCI image archive (a tar holding an "
        "OCI image layout and docker's manifest.json).",
        epilog="The bare form above builds an archive, as runwasi's oci-tar-builder does. "
        "`build -f FILE` builds the images a YAML build file describes.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-n", "--name", required=True, help="image name; also the entrypoint NAME.wasm")
    parser.add_argument("-r", "--repo", help="repository prefix, e.g. ghcr.io/containerd/runwasi")
    parser.add_argument(
        "-t",
        "--tag",
        action="append",
        dest="tags",
        metavar="TAG",
        help="image tag (default: latest); repeat for more tags of the same image",
    )
    parser.add_argument(
        "-m",
        "--module",
        action="append",
        default=[],
        dest="modules",
        metavar="PATH",
        help="a wasm module or component; repeatable (one layer each)",
    )
    parser.add_argument(
        "-l",
        "--layer",
        action="append",
        default=[],
        dest="layers",
        metavar="MEDIATYPE=PATH",
        help="an extra layer of the given media type; repeatable",
    )
    parser.add_argument("-c", "--components", metavar="DIR", help="add every *.wasm file in DIR as a layer")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--format",
        choices=[f.value for f in _formats()],
        help="what to write: image (runwasi's, the default), artifact, rootfs, envoy, envoy-compat",
    )
    kind.add_argument(
        "-a",
        "--as-artifact",
        action="store_const",
        const="artifact",
        dest="format",
        help="write a CNCF Wasm OCI Artifact (application/wasm layer, wasm config): --format artifact",
    )
    kind.add_argument(
        "--rootfs",
        action="store_const",
        const="rootfs",
        dest="format",
        help="put the wasm file at /NAME.wasm in a tar layer, for runtimes that need a root filesystem",
    )
    parser.add_argument(
        "-o",
        "--out-path",
        metavar="PATH",
        help="archive to write (parent directories are created); default ./NAME.tar",
    )
    parser.add_argument(
        "--created",
        metavar="TIME",
        help="creation time (RFC 3339 or Unix seconds) for reproducible builds; default $SOURCE_DATE_EPOCH",
    )
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        dest="labels",
        metavar="KEY=VALUE",
        help="image config label; repeatable",
    )
    parser.add_argument(
        "--annotation",
        action="append",
        default=[],
        dest="annotations",
        metavar="KEY=VALUE",
        help="manifest annotation; repeatable",
    )
    standard = parser.add_argument_group("standard annotations (org.opencontainers.image.*, on the manifest)")
    for flag, key in _STANDARD_ANNOTATIONS.items():
        standard.add_argument(flag, metavar=key.upper(), help=f"org.opencontainers.image.{key}")
    parser.add_argument(
        "--push",
        action="store_true",
        help="then push the image to REPO/NAME:TAG for each tag (--repo must name the registry)",
    )
    _add_registry_flags(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return parser


# --created also sets org.opencontainers.image.created; `--version` is the program's own.
_STANDARD_ANNOTATIONS = {
    "--title": "title",
    "--description": "description",
    "--image-version": "version",
    "--source": "source",
    "--revision": "revision",
}


def _formats() -> list[Format]:
    from .formats import Format

    return list(Format)


def _standard_annotations(args: argparse.Namespace) -> list[str]:
    """The shortcut flags as KEY=VALUE annotations; explicit --annotation entries come after and win."""
    given = ((key, getattr(args, flag[2:].replace("-", "_"))) for flag, key in _STANDARD_ANNOTATIONS.items())
    return [f"org.opencontainers.image.{key}={value}" for key, value in given if value is not None]


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _is_short_file_flag(arg: str) -> bool:
    """`-fFILE`, argparse's attached form; not a value that merely starts with "-f" after a space."""
    return arg.startswith("-f") and len(arg) > 2 and not arg.startswith("--")


def run_build(argv: Sequence[str]) -> int:
    if any(arg in ("-f", "--file") or arg.startswith("--file=") or _is_short_file_flag(arg) for arg in argv):
        return run_build_file(argv)
    args = _build_parser().parse_args(argv)
    from .builder import (
        BuildRequest,
        created_from_environment,
        default_output,
        plan_image,
        push_registry,
    )
    from .formats import Format
    from .reference import DEFAULT_TAG

    fmt = Format(args.format or Format.IMAGE.value)
    request = BuildRequest(
        name=args.name,
        repo=args.repo,
        tags=args.tags or [DEFAULT_TAG],
        modules=args.modules,
        layers=args.layers,
        components=args.components,
        format=fmt,
        created=created_from_environment(args.created, os.environ),
        labels=args.labels,
        annotations=[*_standard_annotations(args), *args.annotations],
    )
    plan = plan_image(request, warn=_warn)
    dest = default_output(plan, args.out_path)
    credential = _push_credential(args) if args.push else None
    if args.push:
        push_registry(plan)
    _build_and_report([plan], dest, args.quiet)
    if args.push:
        _push(dest, [], None, credential, args)
    return 0


def _build_file_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=f"{PROG} build",
        description="Build the images a YAML build file describes: into one archive when the file sets a "
        "top-level `output`, else into one archive each.",
    )
    parser.add_argument("-f", "--file", required=True, type=Path, metavar="FILE", help="the build file")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return parser


def run_build_file(argv: Sequence[str]) -> int:
    args = _build_file_parser().parse_args(argv)
    from .builder import created_from_environment
    from .buildfile import load_build_file, plan_archives

    build_file = load_build_file(args.file, default_created=created_from_environment(None, os.environ))
    # Every image is checked before the first archive is written.
    for archive in plan_archives(build_file, warn=_warn):
        _build_and_report(archive.plans, archive.path, args.quiet)
    return 0


def _build_and_report(plans: Sequence[ImagePlan], dest: Path, quiet: bool) -> None:
    """Write one archive, with a progress line on a terminal, then its summary on stdout."""
    from .builder import build
    from .progress import print_summary, terminal_progress

    with terminal_progress(sum(layer.size for plan in plans for layer in plan.layers), quiet) as progress:
        result = build(plans, dest, progress=progress)
    print_summary(result)


def _add_registry_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "registry access (credentials otherwise come from docker's config.json)"
    )
    group.add_argument(
        "--username", metavar="USER", help="user name for the registry (with --password-stdin)"
    )
    group.add_argument(
        "--password-stdin", action="store_true", help="read the password or token from standard input"
    )
    group.add_argument(
        "--ca-file",
        type=Path,
        metavar="PEM",
        help="also trust this CA certificate (the system store, or $SSL_CERT_FILE, is always trusted)",
    )
    group.add_argument(
        "--insecure",
        action="append",
        default=[],
        metavar="REGISTRY",
        help="allow plain HTTP to REGISTRY (host[:port]); loopback registries always may; repeatable",
    )


def _push_credential(args: argparse.Namespace) -> Credential | None:
    """--username with the password on stdin (never as an argument, where `ps` and logs would show it)."""
    if args.password_stdin and not args.username:
        raise UsageError("--password-stdin", "needs --username")
    if not args.username:
        return None
    from .registry import Credential

    if not args.password_stdin:
        raise UsageError("--username", "needs --password-stdin: a password is not taken as an argument")
    password = sys.stdin.read().rstrip("\r\n")
    if not password:
        raise UsageError("--password-stdin", "standard input held no password")
    return Credential(args.username, password)


class _PushDisplay:
    """A line per blob and a progress line for large uploads, on stderr and only when it is a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self._upload: TerminalProgress | None = None

    def event(self, event: PushEvent) -> None:
        if not self.enabled:
            return
        self.close()
        from .progress import TerminalProgress

        if event.action == "uploading":
            self._upload = TerminalProgress.for_terminal(event.descriptor.size, False, label="pushing")
            return
        print(event, file=sys.stderr)

    def progress(self, n: int) -> None:
        if self._upload is not None:
            self._upload(n)

    def close(self) -> None:
        """Clear an unfinished progress line, so an error after it starts on a clean line."""
        if self._upload is not None:
            self._upload.close()
            self._upload = None


def _push(
    archive: Path,
    references: Sequence[str],
    repo: str | None,
    credential: Credential | None,
    args: argparse.Namespace,
) -> None:
    from .registry import push_archive

    display = _PushDisplay(args.quiet)
    try:
        pushed = push_archive(
            archive,
            references,
            repo=repo,
            credentials=credential,
            ca_file=args.ca_file,
            insecure=args.insecure,
            on_event=display.event,
            progress=display.progress,
            warn=_warn,
        )
    finally:
        display.close()
    for ref in pushed:
        print(f"pushed {ref}")


def _push_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=f"{PROG} push",
        description="Push every image of an OCI archive (ours or any tool's) to a registry.",
        epilog="With no REF, each image goes to the name the archive records (io.containerd.image.name), "
        "or with --repo to REPOSITORY:TAG for each tag it records (org.opencontainers.image.ref.name). "
        "Several images for one REF are pushed as an image index.",
    )
    parser.add_argument("archive", metavar="ARCHIVE", type=Path, help="an OCI image layout in a tar")
    parser.add_argument("references", nargs="*", metavar="REF", help="where to push: HOST/REPOSITORY[:TAG]")
    parser.add_argument("--repo", metavar="REPOSITORY", help="push to REPOSITORY under the archive's tags")
    _add_registry_flags(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return parser


def run_push(argv: Sequence[str]) -> int:
    args = _push_parser().parse_args(argv)
    if args.references and args.repo:
        raise UsageError(
            "--repo", "is for pushing under the archive's tags; with REF arguments, leave it out"
        )
    _push(args.archive, args.references, args.repo, _push_credential(args), args)
    return 0


def _inspect_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=f"{PROG} inspect",
        description="Show each image of an OCI archive (ours or any tool's): name, digest, platform, config "
        "and layers, and for a Wasm OCI Artifact its os, architecture and component imports and exports.",
    )
    parser.add_argument("archive", metavar="ARCHIVE", type=Path, help="an OCI image layout in a tar")
    parser.add_argument("--json", action="store_true", help="print one JSON document, for scripts")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return parser


def run_inspect(argv: Sequence[str]) -> int:
    args = _inspect_parser().parse_args(argv)
    import json

    from .inspection import images_json, inspect_archive, render_text
    from .reader import OciArchive

    with OciArchive.open(args.archive) as archive:
        images = inspect_archive(archive)
    if args.json:
        json.dump({"archive": str(args.archive), "images": images_json(images)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render_text(images, sys.stdout)
    return 0


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _byte_size(text: str) -> int:
    """A size as bytes, or with a binary suffix: 512, 64K, 10MiB, 64G."""
    match = re.fullmatch(r"(\d+)\s*([KMGT]?)(?:i?B)?", text.strip(), re.IGNORECASE)
    if not match or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: give bytes, or a number with K, M, G or T")
    return int(match[1]) * _SIZE_UNITS[match[2].upper()]


def _verify_parser() -> argparse.ArgumentParser:
    from .verify import DEFAULT_MAX_EXPANDED

    parser = _ArgumentParser(
        prog=f"{PROG} verify",
        description="Check an OCI archive: every blob against its digest and size, the index, manifests "
        "and configs against image-spec v1.1, wasm and gzip layers, and docker's manifest.json against the "
        "index. Prints every problem, one a line, and exits 1 if there is any.",
    )
    parser.add_argument("archive", metavar="ARCHIVE", type=Path, help="an OCI image layout in a tar")
    parser.add_argument(
        "--max-expanded-size",
        type=_byte_size,
        default=DEFAULT_MAX_EXPANDED,
        metavar="SIZE",
        help="give up on a gzip layer that expands beyond SIZE (bytes, or with K/M/G/T; default 64G)",
    )
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return parser


def run_verify(argv: Sequence[str]) -> int:
    args = _verify_parser().parse_args(argv)
    from .verify import verify_archive

    result = verify_archive(args.archive, max_expanded=args.max_expanded_size)
    for problem in result.problems:
        print(problem)
    if result.problems:
        count = len(result.problems)
        print(f"{PROG}: {args.archive}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    images = f"{result.images} image{'s' if result.images != 1 else ''}"
    print(f"ok: {args.archive} ({images}, {result.blobs} blob{'s' if result.blobs != 1 else ''} verified)")
    return 0


def _merge_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=f"{PROG} merge",
        description="Combine the images of several OCI archives (ours or any tool's: buildah, skopeo, "
        "docker buildx) into one archive; images that share a name become one multi-platform image index.",
        epilog="With --name, every image gets that one reference, so `push` serves all platforms under "
        "its tag. Two different images for one platform under one name are refused.",
    )
    parser.add_argument("archives", nargs="+", metavar="ARCHIVE", type=Path, help="OCI archives to merge")
    parser.add_argument("-o", "--out-path", required=True, type=Path, metavar="PATH", help="archive to write")
    parser.add_argument(
        "--name", metavar="REF", help="name every image REF (HOST/REPOSITORY:TAG); default: keep their names"
    )
    parser.add_argument(
        "--created",
        metavar="TIME",
        help="tar entry time (RFC 3339 or Unix seconds) for reproducible output; default $SOURCE_DATE_EPOCH",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return parser


def run_merge(argv: Sequence[str]) -> int:
    args = _merge_parser().parse_args(argv)
    from .builder import created_from_environment
    from .merge import merge_archives
    from .progress import terminal_progress
    from .spec import ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, MEDIA_TYPE_INDEX, Descriptor

    created = created_from_environment(args.created, os.environ)
    # The sources' sizes bound the bytes copied (shared blobs are copied once).
    total = sum(path.stat().st_size for path in args.archives if path.is_file())
    with terminal_progress(total, args.quiet, label="copying") as progress:
        result = merge_archives(
            args.archives,
            args.out_path,
            name=args.name,
            mtime=int(created.timestamp()) if created else 0,
            progress=progress,
        )

    def reference(descriptor: Descriptor) -> str:
        names = descriptor.annotations
        return names.get(ANNOTATION_IMAGE_NAME) or names.get(ANNOTATION_REF_NAME) or "-"

    for image in result.images:
        platform = str(image.platform) if image.platform else "-"
        print(f"image    {reference(image)}  {platform}  {image.digest}")
    for entry in result.index:
        if entry.media_type == MEDIA_TYPE_INDEX:
            print(f"index    {reference(entry)}  {entry.digest}")
    print(f"archive  {result.path}")
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "build": run_build,
    "push": run_push,
    "inspect": run_inspect,
    "verify": run_verify,
    "merge": run_merge,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:  # answered before the build parser loads the formats it lists
        print(f"{PROG} {__version__}")
        return 0
    debug = "--debug" in args
    command: Callable[[Sequence[str]], int] = run_build
    if args and args[0] in COMMANDS:
        command = COMMANDS[args.pop(0)]
    try:
        return command(args)
    except OciBuilderError as exc:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as a program killed by SIGPIPE would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: internal error: {exc!r} (run with --debug for the traceback)", file=sys.stderr)
        return 1
