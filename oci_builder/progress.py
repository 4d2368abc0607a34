"""What a user sees while and after building: a progress line on a terminal, a summary on stdout.

Progress goes to stderr and only when stderr is a terminal, so logs and pipes stay clean; results go to
stdout, one fact a line, so scripts can parse them.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .builder import BuildResult

_MIN_BYTES = 16 << 20
_INTERVAL = 0.1


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class TerminalProgress:
    """A single rewritten line: bytes done of the total, percent and rate."""

    def __init__(self, total: int, stream: TextIO | None = None, *, label: str = "hashing") -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.label = label
        self.done = 0
        self._start = time.monotonic()
        self._shown = 0.0

    @classmethod
    def for_terminal(cls, total: int, quiet: bool, *, label: str = "hashing") -> TerminalProgress | None:
        if quiet or total < _MIN_BYTES or not sys.stderr.isatty():
            return None
        return cls(total, label=label)

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._shown >= _INTERVAL or self.done >= self.total:
            self._shown = now
            rate = self.done / max(now - self._start, 1e-6)
            percent = 100 * self.done // max(self.total, 1)
            self.stream.write(
                f"\r{self.label} {human_size(self.done)} of {human_size(self.total)} ({percent}%, "
                f"{human_size(int(rate))}/s)\x1b[K"
            )
            self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()


@contextlib.contextmanager
def terminal_progress(
    total: int, quiet: bool, *, label: str = "hashing"
) -> Iterator[TerminalProgress | None]:
    """A progress line for the block's work when it is worth one; cleared however the block ends."""
    progress = TerminalProgress.for_terminal(total, quiet, label=label)
    try:
        yield progress
    finally:
        if progress:
            progress.close()


def print_summary(result: BuildResult, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    for image in result.images:
        for layer in image.layers:
            out.write(f"layer    {layer.digest}  {layer.size:>10}  {layer.media_type}\n")
        out.write(f"config   {image.config.digest}  {image.config.size:>10}  {image.config.media_type}\n")
        for reference in image.references:
            out.write(f"image    {reference}\n")
        out.write(f"digest   {image.manifest.digest}\n")
    if result.path is not None:
        out.write(f"archive  {result.path}\n")
