"""What a push would send where, decided before any request: references, tags, digests, credentials."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from registry_support import make_archive

from oci_builder.errors import UsageError
from oci_builder.reader import ArchiveError, OciArchive
from oci_builder.registry import Credential, push_archive
from oci_builder.registry.push import plan_targets


def test_a_reference_without_tag_means_latest_and_tags_collapse_to_one_image(
    tmp_path: Path, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm, repo="ghcr.io/me", tags=("a", "b"))
    with OciArchive.open(pushable.path) as archive:
        (target,) = plan_targets(archive, ["localhost:5000/app"], None)
        assert str(target.reference) == "localhost:5000/app:latest"
        assert [m.digest for m in target.manifests] == [pushable.image.manifest.digest]
        recorded = plan_targets(archive, [], None)
        assert [str(t.reference) for t in recorded] == ["ghcr.io/me/app:a", "ghcr.io/me/app:b"]
        retargeted = plan_targets(archive, [], "localhost:5000/other")
        assert [str(t.reference) for t in retargeted] == ["localhost:5000/other:a", "localhost:5000/other:b"]


def test_a_reference_with_another_digest_is_refused_before_any_request(
    tmp_path: Path, hello_wasm: Path
) -> None:
    pushable = make_archive(tmp_path, hello_wasm)
    wrong = "sha256:" + "0" * 64
    with pytest.raises(UsageError, match=pushable.image.manifest.digest):
        push_archive(pushable.path, [f"127.0.0.1:9/app@{wrong}"])


def test_one_credential_cannot_serve_several_registries(tmp_path: Path, hello_wasm: Path) -> None:
    pushable = make_archive(tmp_path, hello_wasm)
    with pytest.raises(UsageError, match="several registries"):
        push_archive(pushable.path, ["127.0.0.1:9/a:1", "127.0.0.2:9/a:1"], credentials=Credential("u", "p"))


@pytest.mark.parametrize(
    ("refs", "repo", "subject"), [(["127.0.0.1:9/Bad"], None, "REF"), ([], "127.0.0.1:9/Bad", "--repo")]
)
def test_malformed_names_are_usage_errors(
    tmp_path: Path, hello_wasm: Path, refs: list[str], repo: str | None, subject: str
) -> None:
    pushable = make_archive(tmp_path, hello_wasm)
    with pytest.raises(UsageError) as caught:
        push_archive(pushable.path, refs, repo=repo)
    assert caught.value.subject.startswith(subject)


def test_a_missing_blob_fails_before_anything_is_sent(tmp_path: Path, hello_wasm: Path) -> None:
    pushable = make_archive(tmp_path, hello_wasm)
    layer = "blobs/sha256/" + pushable.image.layers[0].digest.split(":")[1]
    broken = tmp_path / "broken.tar"
    with tarfile.open(pushable.path) as source, tarfile.open(broken, "w", format=tarfile.USTAR_FORMAT) as out:
        for member in source:
            if member.name != layer:
                out.addfile(member, source.extractfile(member) if member.isfile() else None)
    with pytest.raises(ArchiveError, match=f"blob {pushable.image.layers[0].digest} is missing"):
        push_archive(broken, ["127.0.0.1:9/app:v1"])  # port 9: nothing listens, nothing is tried
