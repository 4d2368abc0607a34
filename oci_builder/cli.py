"""The `oci-tar-builder` command: runwasi's flags unchanged, as a thin shell over the library.

The bare flag form builds, as runwasi's tool does; other verbs are subcommands. Errors are one line on
stderr, exit 2 for usage and 1 for failures; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from . import __version__
from .build import BuildRequest, build, created_from_environment, default_output, plan_image
from .errors import OciBuilderError, UsageError
from .formats import Format
from .progress import TerminalProgress, print_summary

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
        epilog="The bare form above builds an archive, as runwasi's oci-tar-builder does.",
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
        "-a",
        "--as-artifact",
        action="store_true",
        help="write a CNCF Wasm OCI Artifact (application/wasm layer, wasm config) instead of an image",
    )
    kind.add_argument(
        "--rootfs",
        action="store_true",
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
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return parser


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def run_build(argv: Sequence[str]) -> int:
    args = _build_parser().parse_args(argv)
    fmt = Format.ARTIFACT if args.as_artifact else Format.ROOTFS if args.rootfs else Format.IMAGE
    request = BuildRequest(
        name=args.name,
        repo=args.repo,
        tags=args.tags or ["latest"],
        modules=args.modules,
        layers=args.layers,
        components=args.components,
        format=fmt,
        created=created_from_environment(args.created, os.environ),
        labels=args.labels,
        annotations=args.annotations,
    )
    plan = plan_image(request, warn=_warn)
    dest = default_output(plan, args.out_path)
    progress = TerminalProgress.for_terminal(sum(layer.size for layer in plan.layers), args.quiet)
    try:
        result = build([plan], dest, progress=progress)
    finally:
        if progress:
            progress.close()
    print_summary(result)
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"build": run_build}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
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
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: internal error: {exc!r} (run with --debug for the traceback)", file=sys.stderr)
        return 1
