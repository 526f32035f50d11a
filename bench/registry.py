"""The local registry as the fresh-runner bench uses it: what an earlier pipeline pushed,
kept as the registry's manifests so that every scenario starts from exactly that.

A fresh runner's pipeline pushes too (the next pipeline's cache), so after a scenario the
registry holds that scenario's images. Before the next one the bench puts the earlier
pipeline's manifests back under their tags (the same bytes, so the same digests; the
registry keeps every blob they name). Plain HTTP on loopback, through the registry's
API (distribution 2.x), with the standard library: no docker CLI call moves a tag."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .common import BenchError

#: what the manifests of a pushed image can be: Docker's and OCI's, single and lists
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)


def split_ref(ref: str) -> tuple[str, str, str]:
    """``host:port/repo/name:tag`` as (registry, repository, tag); the tag is empty when
    the reference names none. The bench's references always name their registry."""
    registry, sep, rest = ref.partition("/")
    if not sep or not ("." in registry or ":" in registry or registry == "localhost"):
        raise BenchError(f"{ref} does not name a registry (host:port/...)")
    repo, tag = rest, ""
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = rest.rsplit(":", 1)
    return registry, repo, tag


@dataclass(frozen=True)
class Manifest:
    """One tag's manifest, as the registry served it."""

    repo: str
    tag: str
    media_type: str
    body: bytes
    digest: str


@dataclass(frozen=True)
class Registry:
    """A plain-HTTP registry on loopback (``127.0.0.1:5000``)."""

    address: str

    def _call(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] = {}
    ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(
            f"http://{self.address}/v2/{path}", data=body, method=method, headers=dict(headers)
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers.items()), exc.read()
        except OSError as exc:
            raise BenchError(f"registry {self.address}: {method} /v2/{path}: {exc}") from exc

    def tags(self, repo: str) -> list[str]:
        """The repository's tags; none when it does not exist (yet)."""
        status, _, body = self._call("GET", f"{repo}/tags/list")
        if status == 404:
            return []
        if status != 200:
            raise BenchError(f"registry {self.address}: tags of {repo}: HTTP {status}")
        return sorted(json.loads(body).get("tags") or [])

    def manifest(self, repo: str, tag: str) -> Manifest:
        """The manifest a tag names, in the form it was pushed."""
        status, headers, body = self._call(
            "GET", f"{repo}/manifests/{tag}", headers={"Accept": ", ".join(MANIFEST_TYPES)}
        )
        if status != 200:
            raise BenchError(f"registry {self.address}: manifest {repo}:{tag}: HTTP {status}")
        lower = {k.lower(): v for k, v in headers.items()}
        media_type = lower.get("content-type", "") or json.loads(body).get("mediaType", "")
        return Manifest(repo, tag, media_type, body, lower.get("docker-content-digest", ""))

    def put(self, manifest: Manifest) -> None:
        """Tag ``manifest.tag`` with that manifest again."""
        status, _, body = self._call(
            "PUT",
            f"{manifest.repo}/manifests/{manifest.tag}",
            manifest.body,
            {"Content-Type": manifest.media_type},
        )
        if status not in (200, 201):
            raise BenchError(
                f"registry {self.address}: putting {manifest.repo}:{manifest.tag} back: "
                f"HTTP {status} {body[:200]!r}"
            )

    def snapshot(self, repos: Iterable[str]) -> list[Manifest]:
        """Every tag of these repositories, with its manifest."""
        return [self.manifest(repo, tag) for repo in repos for tag in self.tags(repo)]

    def restore(self, manifests: Sequence[Manifest]) -> None:
        """Every tag of a snapshot back on the manifest it had then."""
        for manifest in manifests:
            self.put(manifest)

    def remove(self, repos: Iterable[str]) -> list[str]:
        """Delete every manifest of these repositories (their blobs stay until the
        registry's garbage collection); returns the tags that could not be deleted."""
        left = []
        for repo in repos:
            for tag in self.tags(repo):
                try:
                    digest = self.manifest(repo, tag).digest
                except BenchError:
                    continue  # deleted with another tag of the same manifest
                status, _, _ = self._call("DELETE", f"{repo}/manifests/{digest}")
                if status not in (202, 404):
                    left.append(f"{repo}:{tag}")
        return left
