"""Test-side archive surgery with Python's tarfile: build an archive, then damage it one precise way.

`Editable` rewrites what the builder wrote (a layer byte, a size, a config field) and re-seals what must
be re-sealed (a changed manifest gets its new digest in index.json), so each test breaks one rule only.
`hostile_archive` adds one entry an extracting tool could be tricked by to an otherwise sound layout.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from layout import load

from oci_builder.cli import main


def build_with_cli(out: Path, *args: str) -> Path:
    """Build with the real command line (quiet), failing the test if it does not succeed."""
    status = main([*args, "-o", str(out), "-q"])
    assert status == 0, f"build {args} exited {status}"
    return out


def blob_path(digest: str) -> str:
    algorithm, encoded = digest.split(":", 1)
    return f"blobs/{algorithm}/{encoded}"


class Editable:
    """An archive's regular files in order, to change and save as a new tar."""

    def __init__(self, path: Path) -> None:
        self.files = dict(load(path).files)

    def json(self, name: str) -> Any:
        return json.loads(self.files[name])

    def set_json(self, name: str, value: Any) -> None:
        self.files[name] = json.dumps(value, separators=(",", ":")).encode()

    @property
    def index(self) -> dict[str, Any]:
        value: dict[str, Any] = self.json("index.json")
        return value

    def blob(self, digest: str) -> bytes:
        return self.files[blob_path(digest)]

    def blob_json(self, digest: str) -> Any:
        return json.loads(self.blob(digest))

    def put_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.files[blob_path(digest)] = data
        return digest

    def manifest_digest(self, position: int = 0) -> str:
        digest: str = self.index["manifests"][position]["digest"]
        return digest

    def manifest(self, position: int = 0) -> dict[str, Any]:
        value: dict[str, Any] = self.blob_json(self.manifest_digest(position))
        return value

    def layer_digest(self, position: int = 0, layer: int = 0) -> str:
        digest: str = self.manifest(position)["layers"][layer]["digest"]
        return digest

    def config_digest(self, position: int = 0) -> str:
        digest: str = self.manifest(position)["config"]["digest"]
        return digest

    def edit_manifest(self, edit: Callable[[dict[str, Any]], None], position: int = 0) -> str:
        """Change manifest `position`, store it under its new digest, and point index.json at it."""
        old = self.manifest_digest(position)
        manifest = self.blob_json(old)
        edit(manifest)
        data = json.dumps(manifest, separators=(",", ":")).encode()
        new = self.put_blob(data)
        del self.files[blob_path(old)]
        index = self.index
        for entry in index["manifests"]:
            if entry["digest"] == old:
                entry["digest"], entry["size"] = new, len(data)
        self.set_json("index.json", index)
        return new

    def edit_config(self, edit: Callable[[dict[str, Any]], None], position: int = 0) -> str:
        """Change the config of manifest `position`; manifest, index.json and manifest.json follow."""
        old = self.config_digest(position)
        config = self.blob_json(old)
        edit(config)
        data = json.dumps(config, separators=(",", ":")).encode()
        new = self.put_blob(data)
        del self.files[blob_path(old)]

        def point(manifest: dict[str, Any]) -> None:
            manifest["config"]["digest"], manifest["config"]["size"] = new, len(data)

        self.edit_manifest(point, position)
        if "manifest.json" in self.files:
            docker = self.json("manifest.json")
            for entry in docker:
                if entry["Config"] == blob_path(old):
                    entry["Config"] = blob_path(new)
            self.set_json("manifest.json", docker)
        return new

    def save(self, path: Path) -> Path:
        write_tar(path, list(self.files.items()))
        return path


def write_tar(path: Path, members: list[tuple[str, bytes]], fmt: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


HOSTILE_KINDS = (
    "dotdot",
    "nested-dotdot",
    "absolute",
    "symlink",
    "hardlink",
    "char-device",
    "block-device",
    "fifo",
    "duplicate",
    "dot-slash-duplicate",
    "file-over-directory",
    "long-name-dotdot",
)


def hostile_archive(sound: Path, kind: str, out: Path, absolute_target: Path) -> tuple[Path, str]:
    """`sound`'s entries plus one hostile entry; returns the archive and the entry name errors must show.

    `absolute_target` is where an absolute entry would land if anything extracted it.
    """
    files = list(load(sound).files.items())
    extra = tarfile.TarInfo()
    data: bytes | None = None
    fmt = tarfile.PAX_FORMAT
    if kind == "dotdot":
        extra.name, data = "../escaped.txt", b"escaped"
    elif kind == "nested-dotdot":
        extra.name, data = "blobs/../../escaped.txt", b"escaped"
    elif kind == "absolute":
        extra.name, data = str(absolute_target), b"escaped"
    elif kind == "symlink":
        extra.name, extra.type, extra.linkname = "blobs/sha256/link", tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hardlink":
        extra.name, extra.type, extra.linkname = "hard", tarfile.LNKTYPE, "index.json"
    elif kind in ("char-device", "block-device"):
        extra.name = "dev"
        extra.type = tarfile.CHRTYPE if kind == "char-device" else tarfile.BLKTYPE
        extra.devmajor, extra.devminor = 1, 3
    elif kind == "fifo":
        extra.name, extra.type = "pipe", tarfile.FIFOTYPE
    elif kind == "duplicate":
        extra.name, data = "index.json", b'{"schemaVersion":2,"manifests":[]}'
    elif kind == "dot-slash-duplicate":
        extra.name, data = "./index.json", b'{"schemaVersion":2,"manifests":[]}'
    elif kind == "file-over-directory":
        extra.name, data = "blobs", b"not a directory"
    elif kind == "long-name-dotdot":
        extra.name, data = "blobs/" + "d/" * 80 + "../" * 82 + "escaped.txt", b"escaped"
        fmt = tarfile.GNU_FORMAT
    else:
        raise ValueError(kind)
    with tarfile.open(out, "w", format=fmt) as tar:
        for name, content in files:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        if data is not None:
            extra.size = len(data)
        tar.addfile(extra, io.BytesIO(data) if data is not None else None)
    return out, extra.name
