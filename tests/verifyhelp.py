"""One call for any test that builds an archive: check it with `verify` and fail with every problem found.

from verifyhelp import assert_verifies
assert_verifies(result.path)
"""

from __future__ import annotations

from pathlib import Path

from oci_builder.verify import Verification, verify_archive


def assert_verifies(path: Path) -> Verification:
    """Verify the archive at `path`; on any problem fail the test, listing them all."""
    result = verify_archive(path)
    assert result.ok, f"{path} does not verify:\n" + "\n".join(result.problems)
    assert result.images > 0, f"{path} verifies but holds no image"
    return result
