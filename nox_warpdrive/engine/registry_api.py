"""A small client of the Registry HTTP API v2, in the standard library only: what it takes
to build an image in the registry without an engine (jib's ``build``, crane's ``append``):
read a manifest and a config, ask whether a blob is there, mount one from another
repository, upload one from a file, put a manifest.

Plain HTTP only for a loopback registry (as the engine allows it), TLS with the default
context (which honours SSL_CERT_FILE) for any other. Auth: anonymous, Basic, and the
Bearer token flow (401 + ``WWW-Authenticate: Bearer realm=..`` -> the realm, with Basic
credentials when there are any -> a token). Credentials come from the caller (the engine
resolves them from the Docker config file and its helpers) and are never printed or
stored: no message here holds a header, a token or a password. Every request has a
timeout; every failure is a RegistryError naming the registry and the fix.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import re
import socket
import ssl
import tarfile
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from ..errors import RegistryError, RegistryUnreachable, TokenServerError
from ..refs import named_registry
from .base import TOKEN_USER

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEXES = (DOCKER_LIST, OCI_INDEX)

#: hosts a registry may be reached on over plain HTTP (as the engine allows)
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
#: Docker Hub's names, and where its API answers
HUB = "docker.io"
HUB_API = "registry-1.docker.io"

#: (user, password) for a registry, or None for anonymous
Login = tuple[str, str] | None

#: a config blob is small; anything bigger is not one
CONFIG_LIMIT = 8 << 20

#: the error codes with which a registry says an image is not there (distribution's
#: spec; NOT_FOUND as some registries say it): only these make a 404 "no such image"
MISSING_CODES = frozenset({"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "NOT_FOUND"})


@dataclass(frozen=True)
class Ref:
    """An image reference: registry (as Docker names it), repository, tag or digest."""

    registry: str
    repository: str
    reference: str

    def __str__(self) -> str:
        sep = "@" if self.reference.startswith("sha256:") else ":"
        return f"{self.registry}/{self.repository}{sep}{self.reference}"


def parse_ref(ref: str) -> Ref:
    """``[registry/]repo[:tag][@digest]`` as Docker reads it: the first component is a
    registry when it has a dot or a port or is localhost, else Docker Hub (whose
    one-component repositories are under ``library/``)."""
    name, at, digest = ref.partition("@")
    named = named_registry(name)
    if named is not None:
        registry, path = named, name.partition("/")[2]
    else:
        registry, path = HUB, name
    last = path.rsplit("/", 1)[-1]
    tag = "latest"
    if ":" in last:
        path, tag = path.rsplit(":", 1)
    if registry == HUB and "/" not in path:
        path = f"library/{path}"
    return Ref(registry, path, digest if at else tag)


def host_of(registry: str) -> str:
    """The host name of a registry address (no port, no brackets)."""
    if registry.startswith("["):
        return registry[1:].split("]", 1)[0]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def is_loopback(registry: str) -> bool:
    return host_of(registry) in LOOPBACK


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry holds it: its digest, media type and exact bytes (a
    manifest is addressed by the digest of its bytes, so they are kept as they came)."""

    digest: str
    media_type: str
    body: bytes

    @property
    def data(self) -> dict[str, Any]:
        found = json.loads(self.body)
        return found if isinstance(found, dict) else {}


def pick_platform(index: Mapping[str, Any], platform: tuple[str, str, str]) -> str | None:
    """The digest of the manifest for ``platform`` (os, architecture, variant; an empty
    variant matches any) in a manifest list or OCI index."""
    os_, arch, variant = platform
    for entry in index.get("manifests") or []:
        p = entry.get("platform") or {}
        same = p.get("os") == os_ and p.get("architecture") == arch
        if same and (not variant or p.get("variant", variant) == variant):
            return str(entry.get("digest") or "") or None
    return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """(scheme lowercased, its parameters) of a WWW-Authenticate header."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    params.update({k.lower(): v for k, v in re.findall(r'(\w+)=([^",\s]+)', rest)})
    return scheme.lower(), params


@dataclass
class _Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def errors(self) -> list[dict[str, Any]]:
        """The registry's error objects (``{"errors": [{code, message}]}``), if any."""
        try:
            found = json.loads(self.body).get("errors") or []
        except (ValueError, AttributeError, TypeError):
            return []
        return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []

    def error_text(self) -> str:
        """The registry's own words (its error codes and messages, or the first line of a
        short plain-text body: "404 page not found"), short."""
        said = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in self.errors())
        if not said and self.body and len(self.body) <= 400:
            text = self.body.decode("utf-8", "replace").strip().splitlines()
            said = text[0] if text and text[0].isprintable() and "<" not in text[0] else ""
        return f"HTTP {self.status}" + (f" ({said[:200]})" if said else "")

    def says_missing(self) -> bool:
        """Whether this is the registry saying there is no such image or repository."""
        codes = {str(e.get("code") or "") for e in self.errors()}
        return self.status == 404 and bool(codes & MISSING_CODES)


class Registry:
    """One registry, with the credentials the caller resolved for it (or none)."""

    def __init__(
        self,
        registry: str,
        login: Login = None,
        timeout: float = 60,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.registry = registry
        self.host = HUB_API if registry == HUB else registry
        self.secure = not is_loopback(registry)
        self._login = login
        self._timeout = timeout
        self._context = context
        self._tokens: dict[str, str] = {}
        self._basic = False

    # ------------------------------------------------------------------ the API

    def manifest(
        self, repo: str, reference: str, platform: tuple[str, str, str] = ("linux", "amd64", "")
    ) -> Manifest | None:
        """The image manifest at a tag or digest (a manifest list or OCI index resolved to
        ``platform``); None when the registry has none there."""
        found = self._manifest(repo, reference)
        if found is None or found.media_type not in INDEXES:
            return found
        digest = pick_platform(found.data, platform)
        if digest is None:
            raise RegistryError(
                f"{self.registry}/{repo}:{reference} has no image for {'/'.join(platform)}",
                fix="push an image for that platform there, or use another --cache-from",
            )
        return self._manifest(repo, digest)

    def _manifest(self, repo: str, reference: str) -> Manifest | None:
        accept = ", ".join((*MANIFESTS, *INDEXES))
        r = self._call(
            "GET", f"/v2/{repo}/manifests/{reference}", _pull(repo), headers={"Accept": accept}
        )
        if r.says_missing():
            return None
        self._check(r, (200,), f"reading the manifest of {repo}:{reference}")
        media = (r.headers.get("Content-Type") or "").split(";", 1)[0].strip()
        if media not in (*MANIFESTS, *INDEXES):
            with contextlib.suppress(ValueError, AttributeError):
                media = str(json.loads(r.body).get("mediaType") or media)
        if media not in (*MANIFESTS, *INDEXES):
            raise RegistryError(
                f"{self.registry}/{repo}:{reference} is not an image this tool can read "
                f"(a manifest of type {media or 'unknown'})",
                fix="use an image pushed by docker or nox-warpdrive",
            )
        digest = "sha256:" + hashlib.sha256(r.body).hexdigest()
        return Manifest(digest, media, r.body)

    def blob(self, repo: str, digest: str, limit: int = CONFIG_LIMIT) -> bytes:
        """A small blob (a config), checked against its digest."""
        r = self._call("GET", f"/v2/{repo}/blobs/{digest}", _pull(repo), limit=limit)
        self._check(r, (200,), f"reading blob {digest[:19]} of {repo}")
        if "sha256:" + hashlib.sha256(r.body).hexdigest() != digest:
            raise RegistryError(
                f"{self.registry}/{repo}: blob {digest[:19]} does not match its digest",
                fix="check the registry (and any proxy in front of it), then run again",
            )
        return r.body

    def has_blob(self, repo: str, digest: str) -> bool:
        r = self._call("HEAD", f"/v2/{repo}/blobs/{digest}", _pull(repo))
        if r.status == 404:
            return False
        self._check(r, (200,), f"looking for blob {digest[:19]} in {repo}")
        return True

    def mount(self, repo: str, digest: str, source: str) -> bool:
        """Mount a blob of ``source`` into ``repo`` (same registry, nothing moved);
        False when the registry would not (it then offers an upload, left unused)."""
        query = urllib.parse.urlencode({"mount": digest, "from": source})
        scope = f"{_push(repo)} {_pull(source)}"
        r = self._call("POST", f"/v2/{repo}/blobs/uploads/?{query}", scope, body=b"")
        if r.status == 201:
            return True
        self._check(r, (202,), f"mounting blob {digest[:19]} into {repo}")
        return False

    def upload(self, repo: str, path: Path, digest: str) -> None:
        """Upload a blob from a file (monolithic: POST, then PUT with ``?digest=``)."""
        r = self._call("POST", f"/v2/{repo}/blobs/uploads/", _push(repo), body=b"")
        self._check(r, (202,), f"starting an upload to {repo}")
        location = r.headers.get("Location") or ""
        if not location:
            raise RegistryError(
                f"{self.registry} started an upload to {repo} but gave no location",
                fix=f"check that {self.registry} is a Docker registry (API v2)",
            )
        target = urllib.parse.urlsplit(location)
        sep = "&" if target.query else "?"
        where = (target.path or "/") + (f"?{target.query}" if target.query else "")
        where += sep + urllib.parse.urlencode({"digest": digest})
        size = path.stat().st_size
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        with path.open("rb") as fh:
            r = self._call("PUT", where, _push(repo), headers=headers, body=fh)
        self._check(r, (201, 204), f"uploading blob {digest[:19]} to {repo}")

    def upload_bytes(self, repo: str, data: bytes, digest: str) -> None:
        """Upload a small blob (a config) held in memory."""
        r = self._call("POST", f"/v2/{repo}/blobs/uploads/", _push(repo), body=b"")
        self._check(r, (202,), f"starting an upload to {repo}")
        target = urllib.parse.urlsplit(r.headers.get("Location") or "")
        where = (target.path or f"/v2/{repo}/blobs/uploads/") + (
            f"?{target.query}&" if target.query else "?"
        )
        where += urllib.parse.urlencode({"digest": digest})
        headers = {"Content-Type": "application/octet-stream"}
        r = self._call("PUT", where, _push(repo), headers=headers, body=data)
        self._check(r, (201, 204), f"uploading blob {digest[:19]} to {repo}")

    def put_manifest(self, repo: str, tag: str, body: bytes, media_type: str) -> str:
        """Put a manifest under ``tag``; its digest."""
        headers = {"Content-Type": media_type}
        r = self._call(
            "PUT", f"/v2/{repo}/manifests/{tag}", _push(repo), headers=headers, body=body
        )
        self._check(r, (201, 200), f"putting the manifest of {repo}:{tag}")
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def raw_manifest(self, repo: str, reference: str) -> Manifest | None:
        """The manifest or index at a tag or digest, as it is (no platform picked)."""
        return self._manifest(repo, reference)

    def put_referrer(self, repo: str, reference: str, body: bytes, media_type: str) -> bool:
        """Put a manifest that has a ``subject``; whether the registry said it indexed
        it for the referrers API (the OCI-Subject header of OCI distribution 1.1)."""
        headers = {"Content-Type": media_type}
        r = self._call(
            "PUT", f"/v2/{repo}/manifests/{reference}", _push(repo), headers=headers, body=body
        )
        self._check(r, (201, 200), f"putting the manifest of {repo}:{reference}")
        return bool(r.headers.get("OCI-Subject"))

    def referrers(self, repo: str, digest: str) -> list[dict[str, Any]] | None:
        """The descriptors of the manifests that refer to ``digest`` (the OCI 1.1
        referrers API); None when the registry has no such API (it answers 404, or
        something that is not an image index, as distribution 2.x does)."""
        r = self._call(
            "GET", f"/v2/{repo}/referrers/{digest}", _pull(repo), headers={"Accept": OCI_INDEX}
        )
        media = (r.headers.get("Content-Type") or "").split(";", 1)[0].strip()
        if r.status != 200 or media != OCI_INDEX:
            return None
        try:
            found = json.loads(r.body).get("manifests")
        except (ValueError, AttributeError):
            return None
        return [m for m in found if isinstance(m, dict)] if isinstance(found, list) else None

    def layer_files(
        self, repo: str, digest: str, wanted: Callable[[str], bool], limit: int = 1 << 20
    ) -> dict[str, bytes]:
        """The regular files of a layer blob (a tar, gzipped or not) whose names
        ``wanted`` accepts (at most ``limit`` bytes each), read from the stream: the
        blob is never stored, and is checked against its digest once read to the end."""
        path = f"/v2/{repo}/blobs/{digest}"
        if not self.has_blob(repo, digest):  # also answers the registry's 401 first
            raise RegistryError(
                f"{self.registry}/{repo} has no blob {digest[:19]}",
                fix="push the image again, then run again",
            )
        found: dict[str, bytes] = {}
        netloc, secure, where = self.host, self.secure, path
        headers = self._auth(_pull(repo), {})
        try:
            for _ in range(6):  # the blob, or a redirect to where it is served from
                conn = self._connect(netloc, secure)
                try:
                    conn.request("GET", where, headers=headers)
                    resp = conn.getresponse()
                    if resp.status in (301, 302, 303, 307, 308):
                        url = urllib.parse.urlsplit(
                            urllib.parse.urljoin(self._url(path), resp.headers["Location"])
                        )
                        where = (url.path or "/") + (f"?{url.query}" if url.query else "")
                        headers = headers if url.netloc == self.host else {}
                        netloc, secure = url.netloc, url.scheme == "https"
                        continue
                    body = _Response(resp.status, _Headers(resp.getheaders()), b"")
                    self._check(body, (200,), f"reading blob {digest[:19]} of {repo}")
                    stream = _Hashing(resp)
                    with tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|*") as tar:
                        for member in tar:
                            if member.isfile() and member.size <= limit and wanted(member.name):
                                fh = tar.extractfile(member)
                                found[member.name] = fh.read() if fh else b""
                    while stream.read(1 << 20):
                        pass
                    if stream.digest() != digest:
                        raise RegistryError(
                            f"{self.registry}/{repo}: blob {digest[:19]} does not match its digest",
                            fix="check the registry (and any proxy in front of it), then run again",
                        )
                    return found
                finally:
                    conn.close()
        except tarfile.TarError as exc:
            raise RegistryError(
                f"blob {digest[:19]} of {self.registry}/{repo} is not a layer tar ({exc})",
                fix="push the image again, with docker or nox-warpdrive",
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryUnreachable(
                f"cannot read blob {digest[:19]} of {self.registry}/{repo} ({_why(exc)})",
                fix=f"check that {self.registry} answers, then run again",
            ) from exc
        raise RegistryError(
            f"{self.registry} redirected blob {digest[:19]} of {repo} too often",
            fix=f"check the registry {self.registry} (and any proxy in front of it)",
        )

    # ------------------------------------------------------------------ HTTP and auth

    def _call(
        self,
        method: str,
        path: str,
        scope: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | BinaryIO | None = None,
        limit: int = CONFIG_LIMIT,
    ) -> _Response:
        """One request, authenticated as the registry asks (one retry after a 401)."""
        sent = dict(headers or {})
        r = self._send(method, self.host, self.secure, path, self._auth(scope, sent), body, limit)
        if r.status == 401:
            self._answer(r, scope)
            if not isinstance(body, bytes) and body is not None:
                body.seek(0)
            r = self._send(
                method, self.host, self.secure, path, self._auth(scope, sent), body, limit
            )
            if r.status == 401:
                raise self._refused(r)
        redirects = 0
        while method in ("GET", "HEAD") and r.status in (301, 302, 303, 307, 308) and redirects < 5:
            # a blob may be served from elsewhere (object storage): no credentials there
            url = urllib.parse.urlsplit(
                urllib.parse.urljoin(self._url(path), r.headers["Location"])
            )
            where = (url.path or "/") + (f"?{url.query}" if url.query else "")
            same = url.netloc == self.host
            hdrs = self._auth(scope, {}) if same else {}
            r = self._send(method, url.netloc, url.scheme == "https", where, hdrs, None, limit)
            redirects += 1
        return r

    def _url(self, path: str) -> str:
        return f"{'https' if self.secure else 'http'}://{self.host}{path}"

    def _auth(self, scope: str, headers: dict[str, str]) -> dict[str, str]:
        out = dict(headers)
        token = self._tokens.get(scope)
        if token:
            out["Authorization"] = f"Bearer {token}"
        elif self._basic and self._login is not None:
            out["Authorization"] = "Basic " + _basic(self._login)
        return out

    def _answer(self, r: _Response, scope: str) -> None:
        """Meet a 401's challenge: Basic credentials, or a token from the realm."""
        scheme, params = _challenge(r.headers.get("WWW-Authenticate") or "")
        if scheme == "basic":
            if self._login is None or self._basic or self._login[0] == TOKEN_USER:
                raise self._refused(r)
            self._basic = True
            return
        if scheme != "bearer" or not params.get("realm"):
            raise self._refused(r)
        if scope in self._tokens:  # the token was refused: ask once more, then give up
            del self._tokens[scope]
        self._tokens[scope] = self._token(params, scope)

    def _token(self, params: Mapping[str, str], scope: str) -> str:
        """A token from the realm. Its failures name the token server and its URL: a
        broken one is not "no such image", nor a wrong login."""
        realm = urllib.parse.urlsplit(params["realm"])
        method, where, headers, form = _token_request(
            self.registry, self._login, realm, params, scope
        )
        url = f"{realm.scheme}://{realm.netloc}{realm.path}"
        server = _token_server(self.registry, url)
        secure = realm.scheme == "https"
        r = self._send(method, realm.netloc, secure, where, headers, form, 1 << 20, url)
        if r.status in (401, 403):
            raise self._refused(r)
        if r.status != 200:
            raise TokenServerError(f"{server} answered {r.error_text()}", fix=_token_fix(self, url))
        try:
            data = json.loads(r.body)
            token = str(data.get("token") or data.get("access_token") or "")
        except (ValueError, AttributeError) as exc:
            raise TokenServerError(
                f"{server} answered HTTP {r.status} with something that is not JSON "
                f"({r.headers.get('Content-Type') or 'no content type'})",
                fix=_token_fix(self, url),
            ) from exc
        if not token:
            raise TokenServerError(f"{server} gave no token", fix=_token_fix(self, url))
        return token

    def _refused(self, r: _Response) -> RegistryError:
        login = f"`docker login {self.registry}`"
        if self._login is None:
            return RegistryError(
                f"{self.registry} wants a login and there are no credentials for it "
                f"({r.error_text()})",
                fix=f"log in with {login} (the Docker config file and its credential "
                "helpers are read, as docker reads them), then run again",
            )
        return RegistryError(
            f"{self.registry} refused the credentials ({r.error_text()})",
            fix=f"log in again with {login}, as a user who may push and pull there",
        )

    def _check(self, r: _Response, ok: tuple[int, ...], doing: str) -> None:
        if r.status in ok:
            return
        if r.status == 403:
            raise self._refused(r)
        raise RegistryError(
            f"{self.registry} failed while {doing}: {r.error_text()}",
            fix=f"check the address of {self.registry} and that it is a Docker registry "
            "(API v2), then run again",
        )

    def _connect(self, netloc: str, secure: bool) -> http.client.HTTPConnection:
        if secure:
            context = self._context or ssl.create_default_context()
            return http.client.HTTPSConnection(netloc, timeout=self._timeout, context=context)
        return http.client.HTTPConnection(netloc, timeout=self._timeout)

    def _send(
        self,
        method: str,
        netloc: str,
        secure: bool,
        path: str,
        headers: Mapping[str, str],
        body: bytes | BinaryIO | None,
        limit: int,
        token_url: str = "",
    ) -> _Response:
        """One request to ``netloc``: the registry, or its token server at ``token_url``
        (which messages then name)."""
        try:
            conn = self._connect(netloc, secure)
            try:
                conn.request(method, path, body=body, headers=dict(headers))
                resp = conn.getresponse()
                data = b"" if method == "HEAD" else resp.read(limit + 1)
                if len(data) > limit:
                    raise RegistryError(
                        f"{self.registry} sent more than {limit} bytes for {path.split('?')[0]}",
                        fix=f"check the address of {self.registry}",
                    )
                return _Response(resp.status, _Headers(resp.getheaders()), data)
            finally:
                conn.close()
        except RegistryError:
            raise
        except ssl.SSLError as exc:
            raise RegistryError(
                f"cannot talk TLS to {netloc} ({exc.reason or exc.__class__.__name__})",
                fix="check the address; for a private CA set SSL_CERT_FILE to its bundle",
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            why = "timed out" if isinstance(exc, socket.timeout | TimeoutError) else _why(exc)
            if token_url:
                raise TokenServerError(
                    f"cannot reach {_token_server(self.registry, token_url)} ({why})",
                    fix=_token_fix(self, token_url),
                ) from exc
            raise RegistryUnreachable(
                f"cannot reach the registry {self.registry} ({why})",
                fix=f"check the address {self.registry} and that it answers "
                f"(`curl {self._url('/v2/')}`), then run again",
            ) from exc


class _Headers(dict[str, str]):
    """Response headers, looked up case-insensitively."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        super().__init__((k.lower(), v) for k, v in items)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())


class _Hashing:
    """A response read through, hashed as it goes (a streamed blob checked at its end)."""

    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self._raw = raw
        self._sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size if size >= 0 else None)
        self._sha.update(data)
        return data

    def digest(self) -> str:
        return "sha256:" + self._sha.hexdigest()


def _token_server(registry: str, url: str) -> str:
    return f"the token server of {registry} ({url})"


def _token_fix(registry: Registry, url: str) -> str:
    return (
        f"{registry.registry} sends clients to {url} for a token (the realm of its "
        "WWW-Authenticate header); that server must answer, from here and from the engine: "
        "check the registry's token/auth configuration (the realm it advertises) and that "
        "the token server runs; then run again"
    )


def exists(ref: str, login: Login, push: bool = False, timeout: float = 30) -> bool:
    """Whether the registry holds an image at ``ref``, asked directly with ``login`` (and
    for push rights when ``push``): False only when it said so (404 MANIFEST_UNKNOWN or
    NAME_UNKNOWN). Anything else raises: TokenServerError for a failed token server,
    RegistryError for a refused login or an answer that is not the Registry API,
    RegistryUnreachable when the registry cannot be reached from here."""
    at = parse_ref(ref)
    client = Registry(at.registry, login, timeout)
    scope = _push(at.repository) if push else _pull(at.repository)
    accept = ", ".join((*MANIFESTS, *INDEXES))
    path = f"/v2/{at.repository}/manifests/{at.reference}"
    r = client._call("GET", path, scope, headers={"Accept": accept})
    if r.says_missing():
        return False
    client._check(r, (200,), f"reading the manifest of {at.repository}:{at.reference}")
    return True


def _why(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text)[:200]


def _token_request(
    registry: str,
    login: tuple[str, str] | None,
    realm: urllib.parse.SplitResult,
    params: Mapping[str, str],
    scope: str,
) -> tuple[str, str, dict[str, str], bytes | None]:
    """(method, path, headers, body) of the request for a token: a GET with the service
    and scopes in the query (Basic credentials when there are any), or for an identity
    token OAuth2's refresh grant, POSTed as docker posts it."""
    headers: dict[str, str] = {}
    path = (realm.path or "/") + (f"?{realm.query}" if realm.query else "")
    if login is not None:
        if realm.scheme != "https" and host_of(realm.netloc) not in LOOPBACK:
            raise RegistryError(
                f"{registry} asks for credentials to be sent to a token server over plain "
                f"HTTP ({realm.scheme}://{realm.netloc}); refused",
                fix=f"check the address of {registry} and its auth configuration",
            )
        if login[0] == TOKEN_USER:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return "POST", path, headers, _refresh_form(login[1], params, scope)
        headers["Authorization"] = "Basic " + _basic(login)
    query: list[tuple[str, str]] = []
    if params.get("service"):
        query.append(("service", params["service"]))
    for s in (scope or params.get("scope", "")).split():
        query.append(("scope", s))
    where = (realm.path or "/") + "?" + urllib.parse.urlencode(query)
    if realm.query:
        where += "&" + realm.query
    return "GET", where, headers, None


#: the client id docker sends with an OAuth2 token request (a required field)
CLIENT_ID = "registry-client"


def _refresh_form(refresh_token: str, params: Mapping[str, str], scope: str) -> bytes:
    """The body of an OAuth2 refresh-token grant, as docker's registry client posts it
    to the realm for a login that is an identity token."""
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": CLIENT_ID,
        "service": params.get("service", ""),
        "scope": " ".join((scope or params.get("scope", "")).split()),
    }
    return urllib.parse.urlencode(form).encode()


def _basic(login: tuple[str, str]) -> str:
    return base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()


def _pull(repo: str) -> str:
    return f"repository:{repo}:pull"


def _push(repo: str) -> str:
    return f"repository:{repo}:pull,push"
