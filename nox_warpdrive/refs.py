"""Docker image references and names: what a ref names (registry, repo, tag), and whether
it is one. Kept apart from the config so the engine can read refs without the config."""

from __future__ import annotations

import re

from .errors import ConfigError


def docker_name(text: str) -> str:
    """A string usable as a Docker repository / volume name component."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return name or "app"


_REF_RE = re.compile(
    r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?/)?"  # optional registry/first component
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)


def check_image_ref(ref: str, key: str) -> str:
    if not _REF_RE.match(ref):
        raise ConfigError(
            f"`{key}` = {ref!r} is not a valid Docker image reference",
            fix='use lowercase `name[:tag]`, e.g. "mysite:latest"',
        )
    return ref


def named_registry(ref: str) -> str | None:
    """The registry an image reference names, as Docker reads it: its first component
    when that is a host (a dot, a port, ``localhost``); None for Docker Hub."""
    first, slash, _ = ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def split_ref(ref: str) -> tuple[str, str]:
    """``repo:tag`` -> (repo, tag); a missing tag is ``latest``. Keeps registry ports."""
    if "@" in ref:
        ref = ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"
