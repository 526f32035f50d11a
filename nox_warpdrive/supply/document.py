"""The SBOM and the provenance of one app image, from its labels (what it was built from)
and the host's records (gather.py). A missing record (an image built by an older release,
a host cache cleared) is gathered now: the wheels from the wheelhouse manifest, the
licenses and Debian packages through created, never started, containers; for an image
built in the registry on a runner with none of that, from the registry (remote.py)."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..build.deps import find_deps_image
from ..config import Config
from ..engine import Engine
from ..errors import WarpdriveError
from ..labels import (
    BASE_IMAGE_ID_LABEL,
    BASE_IMAGE_LABEL,
    DEPS_KEY_LABEL,
    OCI_CREATED,
    REQUIREMENTS_LABEL,
    DepsLabels,
)
from ..wheelhouse.build import probe_image, read_manifest, resolved_set
from . import gather, provenance, remote, sbom
from .remote import Remote


@dataclass(frozen=True)
class Target:
    """The image documented: its reference, ID (config digest), labels, its manifest
    digest in a registry ("" when only local), and a local image that holds its deps
    layer (None: none here, e.g. built in the registry)."""

    ref: str
    image_id: str
    labels: Mapping[str, str]
    digest: str = ""
    local: str | None = None
    #: where it is in a registry, when it was pushed (read there when the host has no
    #: record of its distributions)
    remote: Remote | None = None


def tool_version() -> str:
    try:
        return importlib.metadata.version("nox-warpdrive")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def sbom_json(engine: Engine, cfg: Config, target: Target) -> str:
    """The CycloneDX 1.6 JSON document of ``target``."""
    facts = sbom.ImageFacts(
        target.ref, target.image_id, target.labels.get(OCI_CREATED, ""), target.digest
    )
    bom = sbom.make_bom(
        facts, distributions(engine, cfg, target), base(engine, target), tool_version()
    )
    return sbom.to_json(bom)


def provenance_json(engine: Engine, cfg: Config, target: Target) -> str:
    """The in-toto statement (SLSA provenance v1) of ``target``."""
    labels = target.labels
    found = base(engine, target)
    builder = engine.image(cfg.builder_image)
    builder_digests: tuple[str, ...] = ()
    if builder is not None:
        raw = engine.inspect_raw(builder.id)
        builder_digests = tuple(sorted(str(d) for d in raw.get("RepoDigests") or ()))
    facts = provenance.BuildFacts(
        image_ref=target.ref,
        subject_digest=target.digest or target.image_id,
        labels=labels,
        base_id=labels.get(BASE_IMAGE_ID_LABEL, ""),
        builder_id=builder.id if builder is not None else "",
        tool_version=tool_version(),
        base_repo_digests=found.repo_digests if found is not None else (),
        builder_repo_digests=builder_digests,
        inputs=provenance.input_digests(cfg),
        extra={
            "deps-key": labels.get(DEPS_KEY_LABEL, ""),
            "requirements-digest": labels.get(REQUIREMENTS_LABEL, ""),
            "image-id": target.image_id,
        },
    )
    return json.dumps(provenance.statement(cfg, facts), indent=2, sort_keys=True) + "\n"


def base(engine: Engine, target: Target) -> gather.BaseRecord | None:
    """The base image's record; None when it is neither recorded nor on this engine."""
    base_id = target.labels.get(BASE_IMAGE_ID_LABEL, "")
    if not base_id:
        return None
    found = gather.load_base(base_id)
    if found is not None:
        return found
    info = engine.image(base_id)
    if info is None:
        return None
    return gather.record_base(engine, target.labels.get(BASE_IMAGE_LABEL, base_id), info)


def distributions(engine: Engine, cfg: Config, target: Target) -> tuple[gather.Distribution, ...]:
    """The virtualenv's distributions: recorded for the image's deps key, else gathered
    from the wheelhouse manifest (and the licenses from an image holding the layer),
    else, for an image in a registry, from the registry (remote.py)."""
    key = target.labels.get(DEPS_KEY_LABEL, "")
    recorded = gather.load_deps(key) if key else None
    if recorded is not None:
        return recorded
    deps = DepsLabels.from_labels(target.labels)
    if deps is None or not deps.wheels:
        return ()
    base_info, pkey = probe_image(engine, deps.base_id, "base-image", cfg)
    manifest: Mapping[str, Any] = read_manifest(engine, cfg.volume, pkey, base_info.id)
    wheels = resolved_set(manifest, target.labels.get(REQUIREMENTS_LABEL, ""))
    built_from = manifest.get("built_from") or {}
    holder = target.local
    if holder is None:
        found = find_deps_image(engine, cfg, key)
        holder = found.id if found is not None else None
    if wheels is not None and holder is not None:
        return gather.record_deps(engine, key, holder, wheels, built_from, pkey.python_version)
    if target.remote is not None:  # built in the registry: read there, pulling nothing
        sha256 = {w.filename: w.sha256 for w in wheels or ()}
        dists = remote.distributions(target.remote, deps.wheels, sha256, built_from)
        if key and all(d.sha256 for d in dists):
            gather.store_deps(key, dists)
        return dists
    if wheels is None:
        raise WarpdriveError(
            f"the wheelhouse in volume {cfg.volume!r} no longer lists the wheels of "
            f"{target.ref}, and this host has no record of them",
            fix="run `nox -s wheelhouse` (it lists them again; with `wheelhouse-image` set it "
            "pulls them first), then run again",
        )
    # no license without the installed metadata; nothing recorded
    return tuple(
        gather.Distribution(
            w.name, w.version, w.filename, w.sha256, "", str(built_from.get(w.filename) or "")
        )
        for w in sorted(wheels, key=lambda w: w.filename)
    )
