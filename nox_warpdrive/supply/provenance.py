"""The image's provenance: an in-toto Statement v1 whose predicate is SLSA provenance v1
(https://slsa.dev/provenance/v1): which builder made the image (nox-warpdrive and its
version), from which source (repository and commit), with which settings (the config that
changes the image), on which base and builder images (their digests), from which locked
requirement set (the lock file's digest and the set's).

The subject is the image: its manifest digest once pushed, its config digest (the image
ID) while it is only local. The source is read from git (source/git.py, as the labels are), but
the image's own OCI labels win when they are set: the statement must say what the labels
say (they were written when the image was built, from the same checkout)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..labels import OCI_CREATED, OCI_REVISION, OCI_SOURCE
from ..refs import split_ref
from ..source.git import git, origin, without_credentials

MEDIA_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/nox-warpdrive/nox-warpdrive/image/v1"
BUILDER_ID = "https://github.com/nox-warpdrive/nox-warpdrive"


@dataclass(frozen=True)
class Source:
    """The app's git checkout: remote (credentials stripped: this is published) and
    commit; empty when the app is not in git."""

    repository: str = ""
    commit: str = ""


def git_source(project_dir: Path) -> Source:
    """The origin remote and HEAD, as git says (the same commands the image's OCI
    source/revision labels come from)."""
    return Source(origin(project_dir) or "", git(project_dir, "rev-parse", "HEAD") or "")


def source_of(labels: Mapping[str, str], project_dir: Path) -> Source:
    """The image's source: its labels when it has them, else git's answer now; a source
    label written by another tool (an older build, a base image's) loses its credentials
    too: the statement is published."""
    found = git_source(project_dir)
    repository = without_credentials(labels.get(OCI_SOURCE) or found.repository)
    return Source(repository, labels.get(OCI_REVISION) or found.commit)


@dataclass(frozen=True)
class BuildFacts:
    """What the statement says about one image build."""

    image_ref: str
    #: sha256:... of the subject (manifest digest when pushed, else the image ID)
    subject_digest: str
    labels: Mapping[str, str]
    base_id: str
    builder_id: str
    tool_version: str
    base_repo_digests: tuple[str, ...] = ()
    builder_repo_digests: tuple[str, ...] = ()
    #: requirement and lock files relative to the project, with their sha256
    inputs: tuple[tuple[str, str], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


def input_digests(cfg: Config) -> tuple[tuple[str, str], ...]:
    """The files the requirement set is read from (the lock file, or the requirement
    files), each with its sha256."""
    files = [cfg.lock_file] if cfg.lock_file is not None else list(cfg.requirement_files)
    files.append(cfg.project_dir / "pyproject.toml")
    out = []
    for path in files:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            continue
        try:
            name = path.relative_to(cfg.project_dir).as_posix()
        except ValueError:
            name = path.as_posix()
        out.append((name, digest))
    return tuple(out)


def settings(cfg: Config) -> dict[str, Any]:
    """The config that changes what the image holds (not where things are cached)."""
    return {
        "image": cfg.image,
        "base-image": cfg.base_image,
        "builder-image": cfg.builder_image,
        "python": cfg.python,
        "installer": cfg.installer,
        "collectstatic": cfg.collectstatic,
        "server": cfg.server,
        "start": cfg.start,
        "app-module": cfg.app_module,
        "lock-format": cfg.lock_format,
        "groups": list(cfg.groups),
        "extras": list(cfg.extras),
        # a direct reference may carry a token (pkg @ https://user:token@host/...)
        "dependencies": [without_credentials(d) for d in cfg.dependencies],
        "no-index": cfg.no_index,
    }


def statement(cfg: Config, facts: BuildFacts) -> dict[str, Any]:
    """The in-toto Statement v1 with its SLSA provenance v1 predicate."""
    source = source_of(facts.labels, cfg.project_dir)
    deps: list[dict[str, Any]] = []
    if source.commit:
        uri = f"git+{source.repository}" if source.repository else "git"
        deps.append({"uri": uri, "digest": {"gitCommit": source.commit}})
    deps.append(_image_dep(cfg.base_image, facts.base_id, facts.base_repo_digests, "base"))
    deps.append(
        _image_dep(cfg.builder_image, facts.builder_id, facts.builder_repo_digests, "builder")
    )
    for path, digest in facts.inputs:
        deps.append({"uri": path, "digest": {"sha256": digest}, "annotations": {"role": "inputs"}})
    created = facts.labels.get(OCI_CREATED, "")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {
                "name": split_ref(facts.image_ref)[0],
                "digest": {"sha256": facts.subject_digest.split(":")[-1]},
            }
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "source": {"repository": source.repository, "commit": source.commit},
                    "config": settings(cfg),
                },
                "internalParameters": dict(facts.extra),
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"nox-warpdrive": facts.tool_version}},
                "metadata": {"startedOn": created} if created else {},
            },
        },
    }


def _image_dep(ref: str, image_id: str, repo_digests: tuple[str, ...], role: str) -> dict[str, Any]:
    """An image as a resolved dependency: its registry digest when the engine knows one
    (a pulled image), else its ID (the config digest: the same on every engine)."""
    digest = repo_digests[0].partition("@")[2] if repo_digests else image_id
    return {
        "uri": f"oci://{ref}",
        "digest": {"sha256": digest.split(":")[-1]},
        "annotations": {"role": role, "image-id": image_id},
    }
