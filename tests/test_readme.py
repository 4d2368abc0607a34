"""The README's quick start works as written, and prints what the README shows."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from realtools import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.S)


def test_quick_start_prints_what_the_readme_shows(tmp_path: Path) -> None:
    blocks = _code_blocks(_section("Quick start"))
    command = next(line for line in blocks[0].splitlines() if line.startswith("oci-tar-builder "))
    shown = blocks[1].splitlines()
    shutil.copytree(REPO_ROOT / "examples", tmp_path / "examples")
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    result = subprocess.run(
        shlex.split(command), cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    printed = result.stdout.splitlines()
    assert printed[:-1] == shown[:-1]
    assert printed[-1] == f"archive  {tmp_path / 'dist' / 'hello.tar'}"
