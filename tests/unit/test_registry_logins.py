"""Registry logins without a registry: the docker-py backend against a fake engine that
answers a push or a pull the way Docker 20.10 relays an auth registry's refusals (no
login sent, a login refused), and docker-py reading a real Docker config file (``auths``
and a credential helper). Each refusal is one EngineError naming the ref, the registry,
the config file and the `docker login` that fixes it; the password is never in it."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import socketserver
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import DockerEngine, ImageInfo, connect
from nox_warpdrive.engine.docker_registry import registry_of
from nox_warpdrive.engine.registry_api import TOKEN_USER
from nox_warpdrive.errors import EngineError
from nox_warpdrive.registry import cache as registry

REGISTRY = "127.0.0.1:5999"
REF = f"{REGISTRY}/team/app:latest"
USER, CANARY = "ci-user", "wd-canary-0f5e2d"

#: what the engine says, per mode: (push stream items, pull status and body)
NO_LOGIN = "no basic auth credentials"
REFUSED = "unauthorized: authentication required"
PULL_HEAD = f'Head "http://{REGISTRY}/v2/team/app/manifests/latest": '


class Engine(http.server.BaseHTTPRequestHandler):
    """A Docker API that answers pushes and pulls with ``mode``'s refusal and keeps the
    X-Registry-Auth headers docker-py sent."""

    protocol_version = "HTTP/1.1"
    mode = NO_LOGIN
    auth_headers: list[str]

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("API-Version", "1.41")
        self.end_headers()
        self.wfile.write(body)

    def stream(self, chunks: list[bytes]) -> None:
        """A chunked reply, one item a chunk, as the engine streams a push."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("API-Version", "1.41")
        self.end_headers()
        for chunk in [*chunks, b""]:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.endswith("/_ping"):
            return self.reply(200, b"OK")
        return self.reply(200, b'{"ApiVersion":"1.41","Version":"20.10.24"}')

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.auth_headers.append(self.headers.get("X-Registry-Auth") or "")
        path = self.path.split("?", 1)[0]
        if path.endswith("/push"):
            items = [
                {"status": "The push refers to repository [127.0.0.1:5999/team/app]"},
                {"errorDetail": {"message": self.mode}, "error": self.mode},
            ]
            return self.stream([json.dumps(i).encode() + b"\r\n" for i in items])
        if self.mode == "missing":
            message = f"manifest for {REF} not found: manifest unknown: manifest unknown"
            return self.reply(404, json.dumps({"message": message}).encode())
        return self.reply(500, json.dumps({"message": PULL_HEAD + self.mode}).encode())


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def engine_saying(mode: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, list[str]]]:
    """A connected DockerEngine whose engine answers with ``mode``; the auth headers."""
    headers: list[str] = []
    handler = type("Says", (Engine,), {"mode": mode, "auth_headers": headers})
    server = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{server.server_address[1]}")
    try:
        engine = connect(timeout=5)
        assert isinstance(engine, DockerEngine)
        yield engine, headers
    finally:
        server.shutdown()
        server.server_close()


def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, document: Any) -> Path:
    where = tmp_path / "docker-config"
    where.mkdir()
    (where / "config.json").write_text(json.dumps(document))
    monkeypatch.setenv("DOCKER_CONFIG", str(where))
    return where / "config.json"


def logged_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    auth = base64.b64encode(f"{USER}:{CANARY}".encode()).decode()
    return docker_config(tmp_path, monkeypatch, {"auths": {REGISTRY: {"auth": auth}}})


def sent_user(header: str) -> str:
    padded = header + "=" * (-len(header) % 4)
    sent = {k.lower(): v for k, v in json.loads(base64.urlsafe_b64decode(padded)).items()}
    return str(sent.get("username", ""))


def test_a_push_without_a_login_names_the_ref_the_file_and_the_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = docker_config(tmp_path, monkeypatch, {})
    with engine_saying(NO_LOGIN, monkeypatch) as (engine, _), pytest.raises(EngineError) as info:
        engine.push(REF, lambda line: None)
    err = info.value
    assert err.message.startswith(f"pushing {REF} failed: {REGISTRY} wants a login")
    assert f"no credentials for it in {config}" in err.message
    assert "built and tagged here" in err.message
    assert "_RegistryRefusal" not in str(err)
    assert err.fix is not None and f"`docker login {REGISTRY}`" in err.fix


def test_a_refused_login_says_so_and_never_shows_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = logged_in(tmp_path, monkeypatch)
    with engine_saying(REFUSED, monkeypatch) as (engine, headers):
        with pytest.raises(EngineError) as pushed:
            engine.push(REF, lambda line: None)
        with pytest.raises(EngineError) as pulled:
            engine.pull(REF)
    # docker-py sent the login of the config file (to the engine, in a header)
    assert headers and all(sent_user(h) == USER for h in headers), headers
    for err in (pushed.value, pulled.value):
        assert f"{REGISTRY} refused the credentials in {config}" in err.message
        assert err.fix is not None and f"`docker login {REGISTRY}`" in err.fix
        assert "team/app" in err.fix
        assert CANARY not in str(err) and base64.b64encode(CANARY.encode()).decode() not in str(err)
    assert pushed.value.message.startswith(f"pushing {REF} failed:")
    assert pulled.value.message.startswith(f"cannot pull {REF}:")


def test_a_pull_without_a_login_is_an_error_a_missing_image_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = docker_config(tmp_path, monkeypatch, {})
    with engine_saying(NO_LOGIN, monkeypatch) as (engine, _), pytest.raises(EngineError) as info:
        engine.pull(REF)
    assert info.value.message.startswith(f"cannot pull {REF}: {REGISTRY} wants a login")
    # the registry's words, not the engine's wrapping of them
    assert info.value.message.endswith(f"in {config} ({NO_LOGIN})")
    with engine_saying("missing", monkeypatch) as (engine, _):
        assert engine.pull(REF) is None


def test_a_credential_helper_not_on_path_is_named_without_a_python_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = docker_config(tmp_path, monkeypatch, {"credHelpers": {REGISTRY: "wd-none"}})
    monkeypatch.setenv("PATH", str(tmp_path))
    with (
        engine_saying(NO_LOGIN, monkeypatch) as (engine, headers),
        warnings.catch_warnings(record=True) as seen,
    ):
        with pytest.raises(EngineError) as pushed:
            engine.push(REF, lambda line: None)
        with pytest.raises(EngineError) as pulled:
            engine.pull(REF)
    assert not headers  # nothing reached the engine
    for err in (pushed.value, pulled.value):
        assert f"the credential helper for {REGISTRY} failed" in err.message
        assert "docker-credential-wd-none not installed" in err.message
        assert err.fix is not None and str(config) in err.fix and "credHelpers" in err.fix
    assert not [w for w in seen if "docker-credential" in str(w.message)]


def install_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A credential helper `wdunit` on PATH that answers every `get` with the canary."""
    helper = tmp_path / "bin" / "docker-credential-wdunit"
    helper.parent.mkdir()
    helper.write_text(
        '#!/bin/sh\n[ "$1" = get ] || exit 1\nserver=$(cat)\n'
        f'printf \'{{"ServerURL":"%s","Username":"helper-user","Secret":"{CANARY}"}}\' '
        '"$server"\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:/usr/bin:/bin")


def test_a_credential_helper_on_path_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_helper(tmp_path, monkeypatch)
    docker_config(tmp_path, monkeypatch, {"credsStore": "wdunit"})
    with (
        engine_saying(REFUSED, monkeypatch) as (engine, headers),
        pytest.raises(EngineError) as info,
    ):
        engine.push(REF, lambda line: None)
    assert headers and sent_user(headers[0]) == "helper-user"
    assert "refused the credentials" in info.value.message
    assert CANARY not in str(info.value)


def test_no_config_file_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with engine_saying(NO_LOGIN, monkeypatch) as (engine, _), pytest.raises(EngineError) as info:
        engine.push(REF, lambda line: None)
    assert f"in {tmp_path / 'none' / 'config.json'} (there is none)" in info.value.message


def test_another_registry_error_keeps_the_reachability_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docker_config(tmp_path, monkeypatch, {})
    blob = "blob upload unknown"
    with engine_saying(blob, monkeypatch) as (engine, _), pytest.raises(EngineError) as info:
        engine.push(REF, lambda line: None)
    assert info.value.message == f"pushing {REF} failed: {blob}; the image is built and tagged here"
    assert info.value.fix is not None and "reachable from the engine" in info.value.fix


@pytest.mark.parametrize(
    ("ref", "registry_host"),
    [
        ("127.0.0.1:5001/app:latest", "127.0.0.1:5001"),
        ("ghcr.io/owner/repo:latest", "ghcr.io"),
        ("localhost/app", "localhost"),
        ("library/python:3.12", "docker.io"),
        ("team/app", "docker.io"),
        ("python:3.12", "docker.io"),
    ],
)
def test_the_registry_of_a_ref(ref: str, registry_host: str) -> None:
    assert registry_of(ref) == registry_host


class RefusingEngine(FakeEngine):
    def pull(self, ref: str, out: Any = None) -> ImageInfo | None:
        raise EngineError(f"cannot pull {ref}: {REGISTRY} wants a login", fix="`docker login`")


def test_a_refused_cache_is_a_warning_with_its_fix(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "site"\nversion = "0"\n')
    (tmp_path / "wsgi.py").write_text("application = None\n")
    cfg = load_config(tmp_path)
    lines: list[str] = []
    base = ImageInfo("sha256:base", (), {}, 1, 1, "")
    assert registry.cache_from(RefusingEngine(), cfg, REF, base, lines.append) is None
    assert lines[0].startswith(f"warpdrive: warning: cannot pull the cache {REF}")
    assert lines[0].endswith("building without it")
    assert lines[1] == "  fix: `docker login`"


def test_registry_login_reads_auths_and_helpers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What registry_api.py is handed: docker-py's own resolution of the config file."""
    engine = DockerEngine()

    def config(name: str, document: Any) -> None:
        (tmp_path / name).mkdir()
        docker_config(tmp_path / name, monkeypatch, document)

    config("none", {})
    assert engine.registry_login(REGISTRY) is None
    logged_in(tmp_path, monkeypatch)
    assert engine.registry_login(REGISTRY) == (USER, CANARY)
    assert engine.registry_login("127.0.0.1:5998") is None
    install_helper(tmp_path, monkeypatch)
    config("helper", {"credsStore": "wdunit"})
    assert engine.registry_login(REGISTRY) == ("helper-user", CANARY)
    # `docker login` to a registry with an OAuth2 token server stores an identity token
    config("identity", {"auths": {REGISTRY: {"auth": "", "identitytoken": CANARY}}})
    assert engine.registry_login(REGISTRY) == (TOKEN_USER, CANARY)
    config("missing", {"credHelpers": {REGISTRY: "wd-none"}})
    with pytest.raises(EngineError) as info:
        engine.registry_login(REGISTRY)
    assert "credential helper for" in info.value.message and info.value.fix
    assert CANARY not in str(info.value)
