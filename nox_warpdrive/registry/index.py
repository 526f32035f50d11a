"""One tag for several platforms: an image index (Docker manifest list) in the registry.

Each platform's image is pushed first under a tag of its own (``REF-linux-arm64``: a
single-platform tag users may pull too); the index naming them all is put under the tag
last, so the tag moves only once every platform's image is in the registry. Layers the
platforms share (the app source, collected static files) are one blob, uploaded once:
the engine's push skips what the repository already has.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..engine import Engine, Output
from ..engine import registry_api as api
from ..errors import RegistryError
from ..platform import Platform, platform_ref


@dataclass(frozen=True)
class Entry:
    """One platform's image in the registry: its manifest (digest, media type, size)."""

    platform: Platform
    digest: str
    media_type: str
    size: int


def index_body(entries: Sequence[Entry]) -> tuple[bytes, str]:
    """The index (its bytes and media type): a Docker manifest list for Docker
    manifests (what `docker push` writes), an OCI index for OCI ones."""
    oci = all(e.media_type == api.OCI_MANIFEST for e in entries)
    media = api.OCI_INDEX if oci else api.DOCKER_LIST
    manifests = []
    for e in entries:
        platform = {"architecture": e.platform.arch, "os": e.platform.os}
        if e.platform.variant:
            platform["variant"] = e.platform.variant
        manifests.append(
            {"mediaType": e.media_type, "digest": e.digest, "size": e.size, "platform": platform}
        )
    body = {"schemaVersion": 2, "mediaType": media, "manifests": manifests}
    return json.dumps(body, indent=3).encode(), media


def push_index(
    engine: Engine,
    ref: str,
    images: Sequence[tuple[Platform, str]],
    out: Output,
    on: Mapping[Platform, Engine] | None = None,
) -> str:
    """Push each platform's local image (``images``: platform, local ref pushed under
    ``platform_ref``), then put the index under ``ref``; the index digest. ``on``: the
    engine that has a platform's image, when it is not ``engine`` (`engines`)."""
    from ..engine.registry_check import push

    for platform, local in images:
        pushed, has_it = platform_ref(ref, platform), (on or {}).get(platform, engine)
        if local != pushed:
            has_it.tag(local, pushed)
        push(has_it, pushed, out)
    return put_index(engine, ref, [platform for platform, _ in images], out)


def put_index(engine: Engine, ref: str, platforms: Sequence[Platform], out: Output) -> str:
    """Put the index of the images already in the registry under each platform's tag
    (``platform_ref``: a push, or a build in the registry, left them there) under ``ref``;
    the index digest. The tag moves last: only once every platform's image is there."""
    at = api.parse_ref(ref)
    client = api.Registry(at.registry, engine.registry_login(at.registry), 60)
    entries = []
    for platform in platforms:
        pushed = platform_ref(ref, platform)
        found = client.manifest(at.repository, api.parse_ref(pushed).reference)
        if found is None:
            raise RegistryError(
                f"{pushed} was pushed, but the registry has no manifest there",
                fix="push again; check the registry's storage and logs",
            )
        entries.append(Entry(platform, found.digest, found.media_type, len(found.body)))
    body, media = index_body(entries)
    digest = client.put_manifest(at.repository, at.reference, body, media)
    names = ", ".join(str(e.platform) for e in entries)
    out(f"warpdrive: pushed {ref} as an image index ({names}): {digest}")
    return digest
