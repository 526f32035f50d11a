"""registry_api.py against a fake registry on a real socket: the Registry HTTP API v2
calls a build in the registry makes, anonymous, Basic and Bearer (token server) auth,
and every failure a RegistryError naming the registry and the fix, with no credential
in any message."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from nox_warpdrive.engine import registry_api as api
from nox_warpdrive.errors import (
    RegistryError,
    RegistryUnreachable,
    TokenServerError,
    WarpdriveError,
)

USER, PASSWORD = "wd-user", "wd-canary-password-1234"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry(http.server.BaseHTTPRequestHandler):
    """A registry in memory: blobs and manifests per repository; ``mode`` none, basic
    or bearer (its token server at /token); ``fault`` makes every API call fail."""

    protocol_version = "HTTP/1.1"
    mode = "none"
    fault = ""
    #: how the token server fails: "" (it works), "404", "500", "json"
    token_fault = ""
    blobs: ClassVar[dict[str, dict[str, bytes]]] = {}
    manifests: ClassVar[dict[str, dict[str, tuple[str, bytes]]]] = {}
    tokens: ClassVar[set[str]] = set()
    seen: ClassVar[list[str]] = []
    #: the forms POSTed to the token server (identity tokens)
    forms: ClassVar[list[dict[str, str]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status: int, code: str) -> None:
        body = json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()
        self.reply(status, body, {"Content-Type": "application/json"})

    def authorized(self) -> bool:
        header = self.headers.get("Authorization") or ""
        if self.mode == "none":
            return True
        if self.mode == "basic":
            good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if header == good:
                return True
            self.reply(401, b"", {"WWW-Authenticate": 'Basic realm="fake"'})
            return False
        if header.startswith("Bearer ") and header[7:] in self.tokens:
            return True
        host = self.headers.get("Host")
        challenge = f'Bearer realm="http://{host}/token",service="fake",scope="x"'
        self.error_with(401, challenge)
        return False

    def refresh_grant(self, form: dict[str, str]) -> None:
        """OAuth2's refresh-token grant, as a token server answers it (docker's form)."""
        self.forms.append(form)
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != PASSWORD:
            return self.error(401, "UNAUTHORIZED")
        if not form.get("client_id"):
            return self.error(400, "INVALID_REQUEST")
        token = f"tok{len(self.tokens)}"
        self.tokens.add(token)
        return self.reply(200, json.dumps({"access_token": token, "expires_in": 60}).encode())

    def error_with(self, status: int, challenge: str) -> None:
        body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
        self.reply(status, body, {"WWW-Authenticate": challenge})

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def handle_any(self) -> None:
        self.seen.append(f"{self.command} {self.path} {self.headers.get('Authorization', '')}")
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        data = self.body()
        if url.path == "/token" and self.token_fault == "404":
            return self.reply(404, b"404 page not found\n", {"Content-Type": "text/plain"})
        if url.path == "/token" and self.token_fault == "500":
            return self.error(500, "UNKNOWN")
        if url.path == "/token" and self.token_fault == "json":
            return self.reply(200, b"<html>sign in</html>", {"Content-Type": "text/html"})
        if url.path == "/token" and self.command == "POST":
            return self.refresh_grant(dict(urllib.parse.parse_qsl(data.decode())))
        if url.path == "/token":
            good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != good:
                return self.error(401, "UNAUTHORIZED")
            token = f"tok{len(self.tokens)}"
            self.tokens.add(token)
            return self.reply(200, json.dumps({"token": token}).encode())
        if self.fault == "hang":
            time.sleep(2)
            return None
        if self.fault == "500":
            return self.error(500, "UNKNOWN")
        if not self.authorized():
            return None
        parts = url.path.split("/")
        if "manifests" in parts:
            i = parts.index("manifests")
            repo, ref = "/".join(parts[2:i]), parts[i + 1]
            if self.command == "PUT":
                media = self.headers["Content-Type"]
                store = self.manifests.setdefault(repo, {})
                store[ref] = store[digest_of(data)] = (media, data)
                return self.reply(201, b"", {"Docker-Content-Digest": digest_of(data)})
            found = self.manifests.get(repo, {}).get(ref)
            if found is None:
                return self.error(404, "MANIFEST_UNKNOWN")
            return self.reply(200, found[1], {"Content-Type": found[0]})
        if "uploads" in parts:
            i = parts.index("blobs")
            repo = "/".join(parts[2:i])
            if self.command == "POST" and "mount" in query:
                blob = self.blobs.get(query["from"], {}).get(query["mount"])
                if blob is not None:
                    self.blobs.setdefault(repo, {})[query["mount"]] = blob
                    return self.reply(201)
            if self.command == "POST":
                where = f"/v2/{repo}/blobs/uploads/u1?_state=abc"
                return self.reply(202, b"", {"Location": where})
            if digest_of(data) != query.get("digest"):
                return self.error(400, "DIGEST_INVALID")
            self.blobs.setdefault(repo, {})[query["digest"]] = data
            return self.reply(201)
        if "blobs" in parts:
            i = parts.index("blobs")
            repo, digest = "/".join(parts[2:i]), parts[i + 1]
            found_blob = self.blobs.get(repo, {}).get(digest)
            if found_blob is None:
                return self.error(404, "BLOB_UNKNOWN")
            return self.reply(200, found_blob)
        return self.error(404, "NOT_FOUND")

    do_GET = do_POST = do_PUT = do_HEAD = handle_any


@pytest.fixture
def registry() -> Iterator[str]:
    FakeRegistry.mode, FakeRegistry.fault, FakeRegistry.token_fault = "none", "", ""
    FakeRegistry.blobs, FakeRegistry.manifests = {}, {}
    FakeRegistry.tokens, FakeRegistry.seen, FakeRegistry.forms = set(), [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _round_trip(client: api.Registry, tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar.gz"
    layer.write_bytes(b"layer bytes" * 1000)
    ldigest = api.sha256_file(layer)
    assert not client.has_blob("wd/app", ldigest)
    client.upload("wd/app", layer, ldigest)
    assert client.has_blob("wd/app", ldigest)
    config = b'{"rootfs":{}}'
    client.upload_bytes("wd/app", config, digest_of(config))
    assert client.blob("wd/app", digest_of(config)) == config
    body = json.dumps({"schemaVersion": 2, "mediaType": api.DOCKER_MANIFEST}).encode()
    digest = client.put_manifest("wd/app", "v1", body, api.DOCKER_MANIFEST)
    assert digest == digest_of(body)
    found = client.manifest("wd/app", "v1")
    assert found == api.Manifest(digest, api.DOCKER_MANIFEST, body)
    assert client.manifest("wd/app", digest) == found
    assert client.manifest("wd/app", "nope") is None
    # a cross-repository mount: nothing moved
    assert client.mount("wd/other", ldigest, "wd/app")
    assert client.has_blob("wd/other", ldigest)
    assert not client.mount("wd/other", digest_of(b"missing"), "wd/app")


def test_parse_ref() -> None:
    assert api.parse_ref("127.0.0.1:5000/wd/app:v1") == api.Ref("127.0.0.1:5000", "wd/app", "v1")
    assert api.parse_ref("localhost/app") == api.Ref("localhost", "app", "latest")
    assert api.parse_ref("python:3.12") == api.Ref("docker.io", "library/python", "3.12")
    assert api.parse_ref("me/app") == api.Ref("docker.io", "me/app", "latest")
    ref = api.parse_ref("ghcr.io/me/app@sha256:" + "a" * 64)
    assert ref.reference == "sha256:" + "a" * 64 and str(ref).startswith("ghcr.io/me/app@")
    assert not api.Registry("127.0.0.1:5000").secure
    assert not api.Registry("[::1]:5000").secure and not api.Registry("localhost").secure
    assert api.Registry("ghcr.io").secure and api.Registry("10.0.0.1:5000").secure
    assert api.Registry("docker.io").host == "registry-1.docker.io"


def test_anonymous(registry: str, tmp_path: Path) -> None:
    _round_trip(api.Registry(registry, None, timeout=5), tmp_path)
    assert all(not line.endswith("Basic") for line in FakeRegistry.seen)


def test_basic_auth(registry: str, tmp_path: Path) -> None:
    FakeRegistry.mode = "basic"
    _round_trip(api.Registry(registry, (USER, PASSWORD), timeout=5), tmp_path)


def test_bearer_token_flow(registry: str, tmp_path: Path) -> None:
    FakeRegistry.mode = "bearer"
    _round_trip(api.Registry(registry, (USER, PASSWORD), timeout=5), tmp_path)
    token_requests = [s for s in FakeRegistry.seen if s.startswith("GET /token")]
    assert token_requests, FakeRegistry.seen
    # the scope asked for names the repository and, for a mount, its source too
    assert any("repository%3Awd%2Fapp%3Apull%2Cpush" in s for s in token_requests)
    assert any("repository%3Awd%2Fapp%3Apull" in s and "wd%2Fother" in s for s in token_requests)
    # a token is asked for once per scope, not once per request
    assert len(token_requests) <= 4, token_requests


def test_an_identity_token_is_traded_for_tokens(registry: str, tmp_path: Path) -> None:
    """A login that is an identity token (docker's "<token>" user): never sent as Basic
    credentials, traded at the realm for a token by OAuth2's refresh grant, per scope."""
    FakeRegistry.mode = "bearer"
    _round_trip(api.Registry(registry, (api.TOKEN_USER, PASSWORD), timeout=5), tmp_path)
    assert FakeRegistry.forms, FakeRegistry.seen
    assert all(f["client_id"] and f["service"] == "fake" for f in FakeRegistry.forms)
    assert any(f["scope"] == "repository:wd/app:pull,push" for f in FakeRegistry.forms)
    assert not any("Basic" in line or PASSWORD in line for line in FakeRegistry.seen)
    # a wrong one is refused with the fix, and never shown
    with pytest.raises(WarpdriveError) as info:
        api.Registry(registry, (api.TOKEN_USER, "wrong"), timeout=5).manifest("wd/app", "x")
    assert "refused the credentials" in info.value.message and "wrong" not in str(info.value)
    # a registry that only knows Basic cannot take an identity token
    FakeRegistry.mode = "basic"
    with pytest.raises(WarpdriveError):
        api.Registry(registry, (api.TOKEN_USER, PASSWORD), timeout=5).manifest("wd/app", "x")


def _no_secret(exc: WarpdriveError) -> None:
    text = str(exc)
    secret = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert PASSWORD not in text and secret not in text and "tok" not in text
    assert exc.fix


@pytest.mark.parametrize("mode", ["basic", "bearer"])
def test_no_login_and_a_wrong_login(registry: str, mode: str) -> None:
    FakeRegistry.mode = mode
    with pytest.raises(RegistryError) as no_login:
        api.Registry(registry, None, timeout=5).manifest("wd/app", "v1")
    assert f"{registry} wants a login" in str(no_login.value)
    assert f"docker login {registry}" in (no_login.value.fix or "")
    _no_secret(no_login.value)
    with pytest.raises(RegistryError) as wrong:
        api.Registry(registry, (USER, PASSWORD + "x"), timeout=5).manifest("wd/app", "v1")
    assert f"{registry} refused the credentials" in str(wrong.value)
    assert f"docker login {registry}" in (wrong.value.fix or "")
    text = str(wrong.value)
    assert PASSWORD not in text, text


def test_manifest_list_picks_the_platform(registry: str) -> None:
    client = api.Registry(registry, None, timeout=5)
    arm = json.dumps({"schemaVersion": 2, "mediaType": api.DOCKER_MANIFEST, "n": 1}).encode()
    amd = json.dumps({"schemaVersion": 2, "mediaType": api.DOCKER_MANIFEST, "n": 2}).encode()
    client.put_manifest("wd/app", digest_of(arm), arm, api.DOCKER_MANIFEST)
    client.put_manifest("wd/app", digest_of(amd), amd, api.DOCKER_MANIFEST)
    index = {
        "schemaVersion": 2,
        "mediaType": api.OCI_INDEX,
        "manifests": [
            {"digest": digest_of(arm), "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": digest_of(amd), "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }
    client.put_manifest("wd/app", "multi", json.dumps(index).encode(), api.OCI_INDEX)
    found = client.manifest("wd/app", "multi")
    assert found is not None and found.body == amd
    arm_found = client.manifest("wd/app", "multi", ("linux", "arm64", ""))
    assert arm_found is not None and arm_found.body == arm
    with pytest.raises(RegistryError, match="no image for linux/s390x"):
        client.manifest("wd/app", "multi", ("linux", "s390x", ""))


def test_a_blob_that_does_not_match_its_digest(registry: str) -> None:
    FakeRegistry.blobs["wd/app"] = {digest_of(b"a"): b"b"}
    with pytest.raises(RegistryError, match="does not match its digest"):
        api.Registry(registry, None, timeout=5).blob("wd/app", digest_of(b"a"))


def test_server_errors_name_the_registry_and_a_fix(registry: str) -> None:
    FakeRegistry.fault = "500"
    with pytest.raises(RegistryError) as failed:
        api.Registry(registry, None, timeout=5).manifest("wd/app", "v1")
    assert registry in str(failed.value) and "HTTP 500" in str(failed.value)
    assert failed.value.fix and registry in failed.value.fix


def test_unreachable_and_hanging_registries(registry: str) -> None:
    with contextlib.closing(__import__("socket").socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RegistryError) as refused:
        api.Registry(f"127.0.0.1:{port}", (USER, PASSWORD), timeout=2).manifest("a", "b")
    assert f"cannot reach the registry 127.0.0.1:{port}" in str(refused.value)
    _no_secret(refused.value)
    FakeRegistry.fault = "hang"
    started = time.monotonic()
    with pytest.raises(RegistryError, match="timed out"):
        api.Registry(registry, None, timeout=0.5).manifest("wd/app", "v1")
    assert time.monotonic() - started < 1.8


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("404", "answered HTTP 404 (404 page not found)"),
        ("500", "answered HTTP 500 (UNKNOWN: unknown)"),
        ("json", "answered HTTP 200 with something that is not JSON (text/html)"),
    ],
)
def test_a_failing_token_server_is_named_with_its_url(registry: str, fault: str, said: str) -> None:
    """Not "no such image", not a wrong login: the token server, its URL, the fix."""
    FakeRegistry.mode, FakeRegistry.token_fault = "bearer", fault
    for login in (None, (USER, PASSWORD)):
        client = api.Registry(registry, login, timeout=5)
        with pytest.raises(TokenServerError) as failed:
            client.manifest("wd/app", "v1")
        text = str(failed.value)
        assert f"the token server of {registry} (http://{registry}/token) {said}" in text, text
        assert failed.value.fix and f"http://{registry}/token" in failed.value.fix
        assert "docker login" not in text
        secret = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        assert PASSWORD not in text and secret not in text and "tok0" not in text
        with pytest.raises(TokenServerError):  # exists() says the same, never "missing"
            api.exists(f"{registry}/wd/app:v1", login, push=True, timeout=5)


def test_an_unreachable_token_server_is_named(registry: str) -> None:
    with contextlib.closing(__import__("socket").socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = api.Registry(registry, None, timeout=5)
    params = {"realm": f"http://127.0.0.1:{port}/token", "service": "fake"}
    with pytest.raises(TokenServerError) as failed:
        client._token(params, "repository:wd/app:pull")
    text = str(failed.value)
    assert f"cannot reach the token server of {registry} (http://127.0.0.1:{port}/token)" in text
    assert not isinstance(failed.value, RegistryUnreachable)


def test_missing_only_when_the_registry_says_so(registry: str) -> None:
    """A 404 with MANIFEST_UNKNOWN / NAME_UNKNOWN is "no such image"; a 404 that is not
    the Registry API's (a proxy, a wrong path) is an error, not a first run."""
    assert api.exists(f"{registry}/wd/app:nope", None) is False
    assert api.Registry(registry, None, timeout=5).manifest("wd/app", "nope") is None
    missing = api._Response(404, {}, b'{"errors":[{"code":"NAME_UNKNOWN","message":"x"}]}')
    assert missing.says_missing()
    assert not api._Response(404, {}, b"404 page not found\n").says_missing()
    assert not api._Response(404, {}, b"").says_missing()
    assert not api._Response(401, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}').says_missing()
