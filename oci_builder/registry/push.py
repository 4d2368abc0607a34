"""Pushing an OCI archive's images to references: what goes where, in which order.

The archive is checked whole before the first request (every blob present at its size, every manifest
readable), so a bad archive fails without touching the registry. Then, for each reference: blobs first,
each skipped when the registry has it, mounted when another repository of the same registry got it during
this push, else uploaded; then the manifests, children before the index that lists them, the top one by
tag. When several distinct manifests share one reference, an image index of them is made and pushed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..digest import Progress, sha256_digest
from ..errors import UsageError, Warn
from ..progress import human_size
from ..reader import MAX_NESTING, ArchiveError, OciArchive
from ..reference import DEFAULT_TAG, Reference, ReferenceError, check_tag, parse_name, parse_reference
from ..spec import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_TYPE_INDEX,
    Descriptor,
    index_json,
)
from .auth import Credential, CredentialStore
from .client import DEFAULT_CHUNK_SIZE, MANIFEST_MAX, Mounted, RegistryClient
from .transport import RegistryError, RetryPolicy, Transport, tls_context


@dataclass(frozen=True)
class PushedRef:
    """One reference the registry now serves: `reference` (`host/repo:tag`) names `digest`."""

    reference: str
    digest: str
    media_type: str
    size: int

    def __str__(self) -> str:
        return f"{self.reference}@{self.digest}"


@dataclass(frozen=True)
class PushEvent:
    """What happened to one blob or manifest: `exists`, `mounted`, `uploading`, `uploaded`, `manifest`."""

    action: str
    repository: str
    descriptor: Descriptor

    def __str__(self) -> str:
        size = human_size(self.descriptor.size)
        return f"{self.action:<9} {self.descriptor.digest}  {size:>10}  {self.repository}"


@dataclass(frozen=True)
class Target:
    """A reference and the distinct top-level manifests that go to it (several become an index)."""

    reference: Reference
    manifests: tuple[Descriptor, ...]


def push_archive(
    path: Path,
    references: Sequence[str] = (),
    *,
    repo: str | None = None,
    credentials: Credential | Mapping[str, Credential] | None = None,
    docker_config: Path | None = None,
    ca_file: Path | None = None,
    insecure: Collection[str] = (),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    retry: RetryPolicy | None = None,
    timeout: float = 60.0,
    on_event: Callable[[PushEvent], None] | None = None,
    progress: Progress | None = None,
    warn: Warn | None = None,
) -> list[PushedRef]:
    """Push every image of the OCI archive at `path` to each of `references`.

    With no references, each image goes to the name the archive records for it (`io.containerd.image.name`),
    or, with `repo`, to `repo:TAG` for each tag it records (`org.opencontainers.image.ref.name`).
    `credentials` is one Credential for the registry pushed to, or a mapping from registry host
    (`ghcr.io`, `localhost:5000`) to Credential; registries without one use docker's config.json
    (`docker_config`, default `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`), else go anonymous.
    Raises OciBuilderError subclasses (UsageError, InputError, RegistryError) with one-line messages.
    """
    with OciArchive.open(path) as archive:
        targets = plan_targets(archive, references, repo)
        walks = [_walk(archive, target) for target in targets]
        registries = sorted({t.reference.registry for t in targets})
        store = CredentialStore(_credential_map(credentials, registries), docker_config)
        transport = Transport(
            tls_context(ca_file), frozenset(insecure), retry or RetryPolicy(), timeout, warn
        )
        pusher = _Pusher(archive, transport, store, chunk_size, on_event, progress, warn)
        try:
            return [pusher.push(target, walk) for target, walk in zip(targets, walks, strict=True)]
        finally:
            transport.close()


def _credential_map(
    credentials: Credential | Mapping[str, Credential] | None, registries: list[str]
) -> dict[str, Credential]:
    if credentials is None:
        return {}
    if isinstance(credentials, Credential):
        if len(registries) != 1:
            raise UsageError(
                "--username",
                f"the push goes to several registries ({', '.join(registries)}); credentials given "
                "directly serve one: put the others in docker's config.json",
            )
        return {registries[0]: credentials}
    return dict(credentials)


# ---------------------------------------------------------------------------------------------------
# What goes where


def plan_targets(archive: OciArchive, references: Sequence[str], repo: str | None) -> list[Target]:
    """The references to push and the manifests for each, from the arguments or the archive's names."""
    top = archive.top_level()
    if not top:
        raise ArchiveError(archive.path, "index.json lists no image: nothing to push")
    if references:
        manifests = _distinct(top)
        return [Target(_argument_reference(text), manifests) for text in references]
    repository = _repository(repo) if repo else None
    groups: dict[str, tuple[Reference, list[Descriptor]]] = {}
    for i, descriptor in enumerate(top):
        reference = _recorded_reference(archive, descriptor, i, repository)
        groups.setdefault(str(reference), (reference, []))[1].append(descriptor)
    return [Target(reference, _distinct(found)) for reference, found in groups.values()]


def _distinct(descriptors: Sequence[Descriptor]) -> tuple[Descriptor, ...]:
    """One descriptor per digest, in order: the same image under several tags is one image."""
    by_digest: dict[str, Descriptor] = {}
    for descriptor in descriptors:
        by_digest.setdefault(descriptor.digest, descriptor)
    return tuple(by_digest.values())


def _argument_reference(text: str) -> Reference:
    try:
        reference = parse_reference(text)
    except ReferenceError as exc:
        raise UsageError(f"REF {text!r}", str(exc)) from None
    if reference.tag is None and reference.digest is None:
        reference = Reference(reference.domain, reference.path, DEFAULT_TAG)
    return reference


def _repository(repo: str) -> Reference:
    try:
        return parse_name(repo.rstrip("/"))
    except ReferenceError as exc:
        raise UsageError(f"--repo {repo!r}", str(exc)) from None


def _recorded_reference(
    archive: OciArchive, descriptor: Descriptor, position: int, repository: Reference | None
) -> Reference:
    """The name index.json records for an image, as a reference to push to."""
    where = f"index.json manifests[{position}]"
    image_name = descriptor.annotations.get(ANNOTATION_IMAGE_NAME)
    ref_name = descriptor.annotations.get(ANNOTATION_REF_NAME)
    if repository is not None:
        tag = _tag_of(ref_name) or _tag_of(image_name)
        if tag is None:
            raise ArchiveError(archive.path, f"{where} records no tag to push under --repo: give a REF")
        return repository.with_tag(tag)
    for name in (image_name, ref_name):
        if not name:
            continue
        try:
            reference = parse_reference(name)
        except ReferenceError:
            continue
        if reference.domain is None and name == ref_name:
            continue  # a bare `app:1` or `1`: pushing it to Docker Hub would be a guess
        if reference.tag is None and reference.digest is None:
            reference = Reference(reference.domain, reference.path, DEFAULT_TAG)
        return reference
    recorded = f" (it records {ANNOTATION_REF_NAME}={ref_name!r})" if ref_name else ""
    raise ArchiveError(
        archive.path,
        f"{where} has no {ANNOTATION_IMAGE_NAME}{recorded}: give a REF, or --repo for its tag",
    )


def _tag_of(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return check_tag(name)
    except ReferenceError:
        pass
    try:
        return parse_reference(name).tag
    except ReferenceError:
        return None


@dataclass(frozen=True)
class _Walk:
    """A target's content in push order: blobs, then manifests (children first), then the top one."""

    blobs: tuple[Descriptor, ...]
    manifests: tuple[tuple[Descriptor, bytes], ...]
    top: Descriptor
    top_data: bytes


def _walk(archive: OciArchive, target: Target) -> _Walk:
    blobs: dict[str, Descriptor] = {}
    manifests: dict[str, tuple[Descriptor, bytes]] = {}

    def visit(descriptor: Descriptor, depth: int = 0) -> None:
        if descriptor.media_type in MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES:
            if descriptor.digest in manifests:
                return
            if depth > MAX_NESTING:
                raise ArchiveError(archive.path, f"indexes nest deeper than {MAX_NESTING} levels")
            for child in archive.children(descriptor):
                visit(child, depth + 1)
            manifests[descriptor.digest] = (descriptor, archive.read_blob(descriptor.digest, MANIFEST_MAX))
            return
        size = archive.blob_size(descriptor.digest)  # raises ArchiveError when the blob is missing
        if size != descriptor.size:
            raise ArchiveError(
                archive.path,
                f"blob {descriptor.digest} has {size} bytes but its descriptor says {descriptor.size}",
            )
        blobs.setdefault(descriptor.digest, descriptor)

    for manifest in target.manifests:
        visit(manifest)
    if len(target.manifests) == 1:
        top, top_data = manifests.pop(target.manifests[0].digest)
    else:
        entries = [Descriptor(m.media_type, m.digest, m.size, platform=m.platform) for m in target.manifests]
        top_data = index_json(entries)
        top = Descriptor(MEDIA_TYPE_INDEX, sha256_digest(top_data), len(top_data))
    if target.reference.digest is not None and target.reference.digest != top.digest:
        raise UsageError(
            f"REF {target.reference}",
            f"the archive's {'image' if len(target.manifests) == 1 else 'index'} has digest {top.digest}",
        )
    return _Walk(tuple(blobs.values()), tuple(manifests.values()), top, top_data)


# ---------------------------------------------------------------------------------------------------
# Pushing


class _Pusher:
    """Holds what one push learns: a client per registry, and which repositories hold which blobs."""

    def __init__(
        self,
        archive: OciArchive,
        transport: Transport,
        credentials: CredentialStore,
        chunk_size: int,
        on_event: Callable[[PushEvent], None] | None,
        progress: Progress | None,
        warn: Warn | None,
    ) -> None:
        self._archive = archive
        self._transport = transport
        self._credentials = credentials
        self._chunk_size = chunk_size
        self._on_event = on_event
        self._progress = progress
        self._warn = warn
        self._clients: dict[str, RegistryClient] = {}
        self._holders: dict[tuple[str, str], list[str]] = {}
        """(registry, digest) -> repositories known to hold the blob."""

    def push(self, target: Target, walk: _Walk) -> PushedRef:
        reference = target.reference
        client = self._client(reference.registry)
        repository = reference.repository
        for blob in walk.blobs:
            self._push_blob(client, repository, blob)
        for descriptor, data in walk.manifests:
            client.put_manifest(repository, descriptor.digest, descriptor.media_type, data)
            self._event("manifest", client, repository, descriptor)
        name = reference.tag or walk.top.digest  # a digest-only REF was checked against ours in _walk
        digest = client.put_manifest(repository, name, walk.top.media_type, walk.top_data)
        self._event("manifest", client, repository, walk.top)
        pushed = Reference(reference.registry, repository, reference.tag)
        return PushedRef(str(pushed), digest, walk.top.media_type, walk.top.size)

    def _client(self, registry: str) -> RegistryClient:
        if registry not in self._clients:
            self._clients[registry] = RegistryClient(
                registry, self._transport, self._credentials, chunk_size=self._chunk_size, warn=self._warn
            )
        return self._clients[registry]

    def _push_blob(self, client: RegistryClient, repository: str, blob: Descriptor) -> None:
        holders = self._holders.setdefault((client.registry, blob.digest), [])
        if repository in holders:
            return
        session = None
        if client.blob_exists(repository, blob):
            self._event("exists", client, repository, blob)
        else:
            mounted = False
            if holders:
                try:
                    result = client.mount_blob(repository, blob, holders[0])
                except RegistryError as exc:  # e.g. no pull access to the source: upload instead
                    if self._warn:
                        self._warn(f"{exc}; uploading instead")
                else:
                    mounted = isinstance(result, Mounted)
                    session = None if isinstance(result, Mounted) else result
            if mounted:
                self._event("mounted", client, repository, blob)
            else:
                self._event("uploading", client, repository, blob)
                client.upload_blob(
                    repository,
                    blob,
                    lambda: self._archive.open_blob(blob.digest),
                    session=session,
                    progress=self._progress,
                )
                self._event("uploaded", client, repository, blob)
        holders.append(repository)

    def _event(self, action: str, client: RegistryClient, repository: str, descriptor: Descriptor) -> None:
        if self._on_event:
            self._on_event(PushEvent(action, f"{client.registry}/{repository}", descriptor))
