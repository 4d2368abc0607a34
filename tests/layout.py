"""A test-side reading of archives with Python's tarfile, independent of the code under test.

`load` also runs our own `verify` on every archive first: the suite verifies every archive it builds.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verifyhelp import assert_verifies


@dataclass
class Layout:
    names: list[str]
    files: dict[str, bytes]

    def json(self, name: str) -> Any:
        return json.loads(self.files[name])

    @property
    def index(self) -> dict[str, Any]:
        value: dict[str, Any] = self.json("index.json")
        return value

    def blob(self, digest: str) -> bytes:
        algorithm, encoded = digest.split(":")
        data = self.files[f"blobs/{algorithm}/{encoded}"]
        assert hashlib.sha256(data).hexdigest() == encoded, f"blob {digest} does not hash to its name"
        return data

    def blob_json(self, digest: str) -> Any:
        return json.loads(self.blob(digest))

    def manifest(self, position: int = 0) -> dict[str, Any]:
        value: dict[str, Any] = self.blob_json(self.index["manifests"][position]["digest"])
        return value

    def config(self, position: int = 0) -> dict[str, Any]:
        value: dict[str, Any] = self.blob_json(self.manifest(position)["config"]["digest"])
        return value


def load(path: Path) -> Layout:
    assert_verifies(path)
    names: list[str] = []
    files: dict[str, bytes] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            names.append(member.name)
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                files[member.name] = f.read()
    return Layout(names, files)
