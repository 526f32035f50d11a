"""The SBOM and the provenance put beside a pushed image, as OCI artifacts that refer to
it (OCI image spec 1.1): each an image manifest with an ``artifactType``, the empty
config, the document as its one layer, and the image as its ``subject``.

A registry with the referrers API (OCI distribution 1.1) indexes them itself: it says so
with an ``OCI-Subject`` header, or lists them at ``/v2/<name>/referrers/<digest>``. One
without (Debian's docker-registry, distribution 2.8) gets the referrers tag schema that
ORAS and cosign read: the tag ``sha256-<hex>`` of the image's digest holds an image index
of the referring manifests, updated (other referrers kept, one of the same digest
replaced), never clobbered."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..engine import Engine, Output
from ..engine import registry_api as api
from ..errors import WarpdriveError
from ..labels import OCI_CREATED
from . import document, provenance, remote, sbom
from .remote import TOOL_ANNOTATION, fallback_tag

#: the empty config of an artifact manifest (OCI image spec 1.1)
EMPTY_MEDIA = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY).hexdigest()


@dataclass(frozen=True)
class Document:
    """One artifact: its type (also its layer's media type), bytes, and a title."""

    artifact_type: str
    body: bytes
    title: str


@dataclass(frozen=True)
class Attached:
    """What was put: each artifact's manifest digest, and how they are found."""

    digests: tuple[str, ...]
    #: "the referrers API" or "the tag sha256-..."
    found_by: str


def descriptor(media_type: str, body: bytes) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
        "size": len(body),
    }


def artifact_manifest(
    subject: api.Manifest, doc: Document, annotations: Mapping[str, str]
) -> bytes:
    """The manifest of one artifact referring to ``subject``."""
    layer = {
        **descriptor(doc.artifact_type, doc.body),
        "annotations": {"org.opencontainers.image.title": doc.title},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": api.OCI_MANIFEST,
        "artifactType": doc.artifact_type,
        "config": {"mediaType": EMPTY_MEDIA, "digest": EMPTY_DIGEST, "size": len(EMPTY)},
        "layers": [layer],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": len(subject.body),
        },
        "annotations": dict(annotations),
    }
    return json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()


def referrer_entry(body: bytes) -> dict[str, Any]:
    """The descriptor of an artifact manifest in a referrers index (its artifactType
    and annotations copied up, as the referrers API lists them)."""
    data = json.loads(body)
    entry = descriptor(api.OCI_MANIFEST, body)
    entry["artifactType"] = data.get("artifactType", "")
    if data.get("annotations"):
        entry["annotations"] = data["annotations"]
    return entry


def updated_index(existing: Mapping[str, Any] | None, added: Sequence[dict[str, Any]]) -> bytes:
    """The fallback tag's index: what it listed (other tools' referrers kept), with
    ``added`` put in (one with the same digest replaced, so running twice adds nothing)
    and, per artifact type, an older one of ours of the same type and title dropped: the
    image has one SBOM and one provenance of this tool."""
    new = {e["digest"] for e in added}
    ours = {(e.get("artifactType"), _title(e)) for e in added}
    kept = [
        m
        for m in (existing or {}).get("manifests") or []
        if isinstance(m, dict)
        and m.get("digest") not in new
        and (m.get("artifactType"), _title(m)) not in ours
    ]
    index = {"schemaVersion": 2, "mediaType": api.OCI_INDEX, "manifests": [*kept, *added]}
    return json.dumps(index, separators=(",", ":"), sort_keys=True).encode()


def _title(entry: Mapping[str, Any]) -> str:
    annotations = entry.get("annotations")
    return str(annotations.get(TOOL_ANNOTATION, "")) if isinstance(annotations, dict) else ""


def attach(
    client: api.Registry,
    repo: str,
    subject: api.Manifest,
    docs: Sequence[Document],
    created: str = "",
) -> Attached:
    """Put ``docs`` beside the image ``subject`` (in ``repo``) and make them findable."""
    if not client.has_blob(repo, EMPTY_DIGEST):
        client.upload_bytes(repo, EMPTY, EMPTY_DIGEST)
    bodies, indexed = [], True
    for doc in docs:
        blob = "sha256:" + hashlib.sha256(doc.body).hexdigest()
        if not client.has_blob(repo, blob):
            client.upload_bytes(repo, doc.body, blob)
        notes = {TOOL_ANNOTATION: doc.title, **({OCI_CREATED: created} if created else {})}
        body = artifact_manifest(subject, doc, notes)
        ref = "sha256:" + hashlib.sha256(body).hexdigest()
        indexed = client.put_referrer(repo, ref, body, api.OCI_MANIFEST) and indexed
        bodies.append(body)
    digests = tuple("sha256:" + hashlib.sha256(b).hexdigest() for b in bodies)
    if indexed or client.referrers(repo, subject.digest) is not None:
        return Attached(digests, "the referrers API")
    tag = fallback_tag(subject.digest)
    existing = client.raw_manifest(repo, tag)
    old = existing.data if existing is not None and existing.media_type == api.OCI_INDEX else None
    index = updated_index(old, [referrer_entry(b) for b in bodies])
    client.put_manifest(repo, tag, index, api.OCI_INDEX)
    return Attached(digests, f"the tag {tag}")


def push_beside(
    engine: Engine,
    cfg: Config,
    ref: str,
    digest: str,
    out: Output,
    local: str | None = None,
    cache: str = "",
) -> bool:
    """After ``ref`` was pushed (its manifest ``digest``): its SBOM and provenance put
    beside it, in one line; a failure is a warning naming the fix, never a traceback
    (the image itself is pushed and fine). ``local``: the image here, when it was built
    here (its labels are read from it, not from the registry). ``cache``: the manifest
    digest of the image it was built on in the registry (its SBOM may serve). Whether
    it worked."""
    parsed = api.parse_ref(ref)
    try:
        client = api.Registry(parsed.registry, engine.registry_login(parsed.registry))
        # the engine may not report the digest: then the manifest the tag names now
        subject = client.raw_manifest(parsed.repository, digest or parsed.reference)
        if subject is None:
            raise WarpdriveError(
                f"{parsed.registry}/{parsed.repository} has no manifest {digest or ref}",
                fix="push the image again (`nox -s image -- --push`)",
            )
        config_digest = str((subject.data.get("config") or {}).get("digest") or "")
        config = _config(client, parsed.repository, config_digest)
        where = remote.Remote(client, parsed.repository, subject.digest, config, cache)
        info = engine.image(local) if local else None
        labels = info.labels if info is not None else _labels(config)
        target = document.Target(ref, config_digest, labels, subject.digest, local, where)
        text = document.sbom_json(engine, cfg, target)
        docs = [
            Document(sbom.MEDIA_TYPE, text.encode(), "sbom"),
            Document(
                provenance.MEDIA_TYPE,
                document.provenance_json(engine, cfg, target).encode(),
                "provenance",
            ),
        ]
        done = attach(client, parsed.repository, subject, docs, labels.get(OCI_CREATED, ""))
    except WarpdriveError as exc:
        out(
            f"warpdrive: warning: the image {ref} is pushed, but its SBOM and provenance "
            f"were not: {exc.message}"
        )
        if exc.fix:
            out(f"  fix: {exc.fix}")
        return False
    out(f"warpdrive: SBOM and provenance pushed beside {ref} (found through {done.found_by})")
    unhashed = sbom.unhashed(json.loads(text))
    if unhashed:
        out(
            f"warpdrive: warning: the SBOM has no wheel sha256 for {unhashed} (no record here, "
            "no SBOM beside the cache, and the wheelhouse does not list them)"
        )
        out("  fix: run `nox -s wheelhouse` first on this runner, then push again")
    return True


def _config(client: api.Registry, repo: str, digest: str) -> Mapping[str, Any]:
    """An image's config blob, from the registry ({} when it is not JSON)."""
    try:
        data = json.loads(client.blob(repo, digest))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _labels(config: Mapping[str, Any]) -> Mapping[str, str]:
    """An image's labels, from its config."""
    section = config.get("config")
    labels = section.get("Labels") if isinstance(section, dict) else None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
