#!/usr/bin/env python3
"""Benchmarks for oci-tar-builder's speed and memory goals (issue 6), all measured in one run.

Every comparison runs its commands alternately, several times, and reports medians; outputs are removed and
dirty pages flushed (untimed) between runs so that no run pays for another's writeback. Peak memory is each
child process's max RSS (wait4). Usage:

    .venv/bin/python bench/bench.py [--size-mib 1024] [--repeat 5] [--skip build,buildah,push,startup]

It needs GNU time (`apt-get install time`), and buildah, skopeo and docker-registry for those rows.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLI = str(BIN / "oci-tar-builder")
HASH_PASS = (
    "import hashlib,sys\n"
    "h=hashlib.sha256();b=bytearray(1<<20);m=memoryview(b)\n"
    "with open(sys.argv[1],'rb',buffering=0) as f:\n"
    "    while (n:=f.readinto(b)): h.update(m[:n])\n"
    "print(h.hexdigest())\n"
)


@dataclass
class Sample:
    seconds: float
    max_rss_kib: int


def timed(args: Sequence[str], env: dict[str, str] | None = None) -> Sample:
    """Run a command to completion: its wall time, and its peak RSS as GNU time reports it.

    GNU time (Debian package `time`) forks the command from a small process: a child forked from this
    benchmark would carry our resident pages into its own peak.
    """
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(
                f"benchmark command failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr.decode()}"
            )
        return Sample(seconds, int(rss.read().split()[-1]))


def settle(*paths: Path) -> None:
    """Untimed: remove previous outputs and write back dirty pages, so each run starts alike."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    os.sync()


def alternate(
    runs: dict[str, Callable[[], Sample]], repeat: int, cleanup: Callable[[], None]
) -> dict[str, list[Sample]]:
    """Run each command once per round, in turn, for `repeat` rounds."""
    results: dict[str, list[Sample]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            cleanup()
            results[name].append(run())
    return results


def median(samples: list[Sample]) -> float:
    return statistics.median(s.seconds for s in samples)


def peak(samples: list[Sample]) -> int:
    return max(s.max_rss_kib for s in samples)


def make_module(path: Path, size: int) -> None:
    """A valid core module of exactly `size` bytes: the header and one custom section of random bytes.

    The section size is a LEB128 padded to 5 bytes (the encoding allows it), so the sizes add up exactly.
    """
    name = b"bench"
    payload = size - 8 - 1 - 5 - 1 - len(name)
    content = 1 + len(name) + payload
    padded = bytes([(content >> (7 * i)) & 0x7F | (0x80 if i < 4 else 0) for i in range(5)])
    block = os.urandom(1 << 24)
    with open(path, "wb") as f:
        f.write(b"\0asm\x01\0\0\0" + b"\0" + padded + bytes([len(name)]) + name)
        left = payload
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
    assert path.stat().st_size == size


def env_without_epoch() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}


def bench_build(work: Path, module: Path, repeat: int) -> list[tuple[str, str, str]]:
    out = work / "out.tar"
    hash_cmd = [sys.executable, "-c", HASH_PASS, str(module)]
    runs: dict[str, Callable[[], Sample]] = {"sha256 pass": lambda: timed(hash_cmd)}
    for mode, flags in (("image", []), ("artifact", ["--as-artifact"]), ("rootfs", ["--rootfs"])):
        cmd = [CLI, "-n", "bench", "-m", str(module), "-o", str(out), "-q", *flags]
        runs[f"build {mode}"] = functools.partial(timed, cmd, env_without_epoch())
    results = alternate(runs, repeat, lambda: settle(out))
    base = median(results["sha256 pass"])
    rows = [
        ("sha256 pass (hashlib)", f"{base:.3f} s", f"peak RSS {peak(results['sha256 pass']) / 1024:.0f} MiB")
    ]
    for name in runs:
        if name.startswith("build"):
            rows.append(
                (
                    name,
                    f"{median(results[name]):.3f} s = {median(results[name]) / base:.2f} x sha256",
                    f"peak RSS {peak(results[name]) / 1024:.0f} MiB",
                )
            )
    return rows


def bench_buildah(work: Path, module: Path, repeat: int) -> list[tuple[str, str, str]]:
    storage = work / "buildah"
    out = work / "buildah.tar"
    ours = work / "ours.tar"
    script = (
        "set -e\n"
        f'b="buildah --root {storage}/root --runroot {storage}/run --storage-driver vfs"\n'
        "ctr=$($b from scratch)\n"
        f"$b copy $ctr {module} /bench.wasm >/dev/null\n"
        "$b config --entrypoint '[\"/bench.wasm\"]' --os wasip1 --arch wasm $ctr\n"
        f"$b commit -q $ctr oci-archive:{out} >/dev/null\n"
    )
    runs: dict[str, Callable[[], Sample]] = {
        "buildah (from scratch, copy, commit)": lambda: timed(["sh", "-c", script]),
        "oci-tar-builder --rootfs": lambda: timed(
            [CLI, "-n", "bench", "-m", str(module), "-o", str(ours), "-q", "--rootfs"], env_without_epoch()
        ),
    }
    results = alternate(runs, repeat, lambda: settle(out, ours, storage))
    theirs, mine = (median(results[name]) for name in runs)
    return [
        ("buildah rootfs image", f"{theirs:.3f} s", ""),
        ("oci-tar-builder --rootfs", f"{mine:.3f} s = {mine / theirs:.2f} x buildah", ""),
    ]


def bench_push(work: Path, module: Path, repeat: int) -> list[tuple[str, str, str]]:
    """Each push goes to a fresh registry: skopeo remembers where blobs went (its blob-info cache) and would
    mount them from an earlier round's repository instead of uploading."""
    sys.path.insert(0, str(REPO / "tests"))
    from realtools import Registry  # type: ignore[import-not-found]

    archive = work / "push.tar"
    build = [CLI, "-n", "bench", "-m", str(module), "-o", str(archive), "-q"]
    subprocess.run(build, check=True, env=env_without_epoch(), stdout=subprocess.DEVNULL)

    def fresh_registry_push(command: Callable[[str], list[str]]) -> Sample:
        registry = Registry(work / "registry")
        try:
            return timed(command(registry.host))
        finally:
            registry.stop()
            shutil.rmtree(work / "registry", ignore_errors=True)

    def ours(host: str) -> list[str]:
        return [CLI, "push", "-q", str(archive), f"{host}/bench:v1"]

    def skopeo(host: str) -> list[str]:
        return [
            "skopeo",
            "copy",
            "-q",
            "--dest-tls-verify=false",
            f"oci-archive:{archive}",
            f"docker://{host}/bench:v1",
        ]

    runs: dict[str, Callable[[], Sample]] = {
        "ours": functools.partial(fresh_registry_push, ours),
        "skopeo": functools.partial(fresh_registry_push, skopeo),
    }
    results = alternate(runs, repeat, settle)
    registry = Registry(work / "registry")
    try:
        timed(ours(registry.host))
        again = [timed(ours(registry.host)) for _ in range(repeat)]
    finally:
        registry.stop()
    first, theirs, repush = median(results["ours"]), median(results["skopeo"]), median(again)
    return [
        ("skopeo copy oci-archive: -> registry", f"{theirs:.3f} s", ""),
        (
            "oci-tar-builder push",
            f"{first:.3f} s = {first / theirs:.2f} x skopeo",
            f"peak RSS {peak(results['ours']) / 1024:.0f} MiB",
        ),
        ("re-push, unchanged", f"{repush:.3f} s = {repush / first:.3f} x first push", ""),
    ]


def bench_startup(work: Path, repeat: int) -> list[tuple[str, str, str]]:
    version = [timed([CLI, "--version"]) for _ in range(max(repeat, 10))]
    rows = [("oci-tar-builder --version", f"{median(version) * 1000:.0f} ms", "")]
    entrypoint = REPO / "entrypoint.py"
    if entrypoint.exists():
        workspace = work / "workspace"
        workspace.mkdir(exist_ok=True)
        shutil.copy(REPO / "examples" / "hello" / "hello.wasm", workspace / "hello.wasm")
        files = work / "files"
        files.mkdir(exist_ok=True)
        for name in ("output", "summary"):
            (files / name).touch()
        env = {
            **env_without_epoch(),
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_OUTPUT": str(files / "output"),
            "GITHUB_STEP_SUMMARY": str(files / "summary"),
            "INPUT_NAME": "hello",
            "INPUT_MODULE": "hello.wasm",
        }
        runs = [timed([sys.executable, str(entrypoint)], env) for _ in range(max(repeat, 10))]
        rows.append(("Action entrypoint, start to outputs", f"{median(runs) * 1000:.0f} ms", "small module"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="module size (default 1024 MiB)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds per comparison (default 5)")
    parser.add_argument("--skip", default="", help="comma list of: build, buildah, push, startup")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory(prefix="oci-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        module = work / "bench.wasm"
        make_module(module, args.size_mib << 20)
        rows: list[tuple[str, str, str]] = []
        if "build" not in skip:
            rows += bench_build(work, module, args.repeat)
        if "buildah" not in skip:
            rows += bench_buildah(work, module, args.repeat)
        if "push" not in skip:
            rows += bench_push(work, module, args.repeat)
        if "startup" not in skip:
            rows += bench_startup(work, args.repeat)
    cpus = os.cpu_count()
    python = sys.version.split()[0]
    print(f"\n{args.size_mib} MiB module, {args.repeat} rounds, medians; {cpus} CPUs, Python {python}\n")
    print("| measurement | time | notes |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
