"""The virtualenv's distributions of an image that was built in the registry, on a runner
with no record of them (a fresh CI runner: no host cache, an empty wheelhouse volume, no
local image): read from the registry, pulling no image and running no container.

Two sources, the first that serves: the SBOM already beside the cache image (found as
attach.py puts it: the referrers API, else the ``sha256-<hex>`` tag), whose components
are taken for every wheel the image's deps label lists with the same file and sha256
prefix; else the image's deps layers, streamed from their blobs with only the installed
``*.dist-info/METADATA`` kept (names and licenses; the wheels' full sha256 then come from
the wheelhouse manifest when the volume has it, else the SBOM gives none)."""

from __future__ import annotations

import email.parser
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..engine import registry_api as api
from ..labels import DEPS_DEPTH_LABEL, LAYERS_LABEL
from .gather import Distribution, license_of

#: the SBOM's media type (sbom.MEDIA_TYPE: repeated, sbom.py imports the CycloneDX library)
SBOM_MEDIA_TYPE = "application/vnd.cyclonedx+json"
#: marks the artifacts this tool made (so a newer one of ours replaces it in the index)
TOOL_ANNOTATION = "dev.nox-warpdrive.artifact"
PROP = "nox-warpdrive"
#: an SBOM bigger than this is not read
SBOM_LIMIT = 64 << 20


@dataclass(frozen=True)
class Remote:
    """Where the image documented is: the registry client, its repository, the
    image's manifest digest and config (its labels and diff IDs); the cache as
    ``registry/repository@sha256:...`` ("" none; in the same registry)."""

    client: api.Registry
    repo: str
    digest: str
    config: Mapping[str, Any]
    cache: str = ""


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for a subject digest: ``sha256-<hex>``."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}-{hexpart}"


def wheel_id(filename: str, sha256: str) -> str:
    """As wheels.Wheel.id gives it: what a deps label lists."""
    return f"{filename}@{sha256[:16]}"


def pushed_sbom(client: api.Registry, repo: str, digest: str) -> dict[str, Any] | None:
    """The SBOM this tool put beside the image ``digest``, if there is one."""
    listed = client.referrers(repo, digest)
    if listed is None:
        index = client.raw_manifest(repo, fallback_tag(digest))
        listed = index.data.get("manifests") or [] if index is not None else []
    for entry in listed:
        notes = entry.get("annotations") or {}
        if entry.get("artifactType") != SBOM_MEDIA_TYPE or notes.get(TOOL_ANNOTATION) != "sbom":
            continue
        artifact = client.raw_manifest(repo, str(entry.get("digest") or ""))
        layers = artifact.data.get("layers") or [] if artifact is not None else []
        if not layers:
            continue
        try:
            doc = json.loads(client.blob(repo, str(layers[0].get("digest")), SBOM_LIMIT))
        except ValueError:
            continue
        return doc if isinstance(doc, dict) else None
    return None


def sbom_distributions(doc: Mapping[str, Any]) -> dict[str, Distribution]:
    """wheel id -> the distribution an SBOM of this tool lists (as sbom.python_component
    wrote it: its wheel property, SHA-256 hash, license, and the sdist's hash)."""
    found = {}
    for c in doc.get("components") or []:
        if not isinstance(c, dict) or not str(c.get("purl", "")).startswith("pkg:pypi/"):
            continue
        props = {p.get("name"): p.get("value") for p in c.get("properties") or []}
        wheel = str(props.get(f"{PROP}:wheel") or "")
        sha = _sha256(c)
        if not wheel or not sha:
            continue
        ancestors = (c.get("pedigree") or {}).get("ancestors") or [{}]
        sdist = _sha256(ancestors[0])
        compiled = props.get(f"{PROP}:compiled-in-builder") == "true"
        built_from = sdist or ("project:" if compiled and "-linux_" not in wheel else "")
        found[wheel_id(wheel, str(sha))] = Distribution(
            str(c.get("name") or ""),
            str(c.get("version") or ""),
            wheel,
            sha,
            _license(c.get("licenses") or []),
            built_from,
        )
    return found


def _sha256(component: Mapping[str, Any]) -> str:
    hashes = component.get("hashes") or []
    return next((str(h.get("content")) for h in hashes if h.get("alg") == "SHA-256"), "")


def _license(licenses: Sequence[Any]) -> str:
    """The license text sbom._licenses made the entry from (an SPDX id or expression, or
    a name)."""
    for entry in licenses:
        if not isinstance(entry, dict):
            continue
        if entry.get("expression"):
            return str(entry["expression"])
        inner = entry.get("license") or {}
        if inner.get("id") or inner.get("name"):
            return str(inner.get("id") or inner.get("name"))
    return ""


def deps_layer_digests(remote: Remote) -> list[str]:
    """The blob digests of the image's deps layers: the ``depth`` + 1 layers under its
    app layers (the app-layers label counts those)."""
    manifest = remote.client.raw_manifest(remote.repo, remote.digest)
    layers = manifest.data.get("layers") or [] if manifest is not None else []
    labels = (remote.config.get("config") or {}).get("Labels") or {}
    try:
        top = len(json.loads(labels.get(LAYERS_LABEL, "")))
        depth = int(labels.get(DEPS_DEPTH_LABEL, "0"))
    except (ValueError, TypeError):
        return []
    below = len(layers) - top
    return [str(d.get("digest")) for d in layers[max(0, below - depth - 1) : below]]


def installed_metadata(remote: Remote) -> dict[str, tuple[str, str]]:
    """dist-info stem (``name-version`` as the wheel file spells them) -> (Name,
    license) of every distribution installed in the deps layers."""
    found: dict[str, tuple[str, str]] = {}

    def wanted(name: str) -> bool:
        parts = name.split("/")
        return len(parts) >= 3 and parts[-1] == "METADATA" and parts[-3] == "site-packages"

    for digest in deps_layer_digests(remote):
        for path, data in remote.client.layer_files(remote.repo, digest, wanted).items():
            stem = path.split("/")[-2].removesuffix(".dist-info")
            name = email.parser.BytesHeaderParser().parsebytes(data).get("Name") or ""
            found[stem] = (str(name).strip(), license_of(data))
    return found


def distributions(
    remote: Remote,
    wheel_ids: Sequence[str],
    sha256: Mapping[str, str],
    built_from: Mapping[str, Any],
) -> tuple[Distribution, ...]:
    """The distributions of the wheels ``wheel_ids`` (the deps label's): from the
    cache's SBOM when it lists them all, else from the installed metadata, with the
    full sha256 that ``sha256`` (file -> sha256, the wheelhouse manifest's) or the
    cache's SBOM gives for the same wheel id (none otherwise)."""
    known: dict[str, Distribution] = {}
    cache = api.parse_ref(remote.cache) if remote.cache else None
    for repo, digest in (
        (cache.repository, cache.reference) if cache else ("", ""),
        (remote.repo, remote.digest),
    ):
        doc = pushed_sbom(remote.client, repo, digest) if digest else None
        known.update(sbom_distributions(doc) if doc is not None else {})
    if all(i in known for i in wheel_ids):
        return tuple(sorted((known[i] for i in wheel_ids), key=lambda d: d.wheel))
    meta = installed_metadata(remote)
    out = []
    for wid in sorted(wheel_ids):
        if wid in known:
            out.append(known[wid])
            continue
        filename, _, prefix = wid.rpartition("@")
        name, version = filename.split("-")[:2]
        full = sha256.get(filename, "")
        got = meta.get(f"{name}-{version}", ("", ""))
        out.append(
            Distribution(
                got[0] or name,
                version,
                filename,
                full if full.startswith(prefix) else "",
                got[1],
                str(built_from.get(filename) or ""),
            )
        )
    return tuple(out)
