"""The engine's calls over a local unix socket without docker-py (``LocalEngine``), against
a fake Engine API server on a real unix socket; and that importing and using the engine
for a container-free build never imports docker-py."""

from __future__ import annotations

import http.server
import json
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from unit_support import tar_contents

from nox_warpdrive.engine import DockerEngine, Engine, connect, local_socket
from nox_warpdrive.engine import dockerpy as dockerpy_module
from nox_warpdrive.errors import EngineError, LayerRefused, WrongImage
from nox_warpdrive.plan import CommitSpec
from nox_warpdrive.tars import tar_files

PARENT: dict[str, Any] = {
    "Id": "sha256:" + "p" * 64,
    "Architecture": "amd64",
    "Os": "linux",
    "Size": 1234,
    "Created": "2026-01-01T00:00:00Z",
    "Config": {"Env": ["PATH=/usr/bin"], "Labels": {"base": "yes"}, "Cmd": ["sh"]},
    "RootFS": {"Type": "layers", "Layers": ["sha256:" + "1" * 64, "sha256:" + "2" * 64]},
}
HISTORY = [
    {"Created": 1700000100, "CreatedBy": "apt-get install", "Size": 10, "Comment": ""},
    {"Created": 1600000000, "CreatedBy": "ADD rootfs", "Size": 5, "Comment": ""},
]


@dataclass
class FakeEngineState:
    images: dict[str, Any] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    api_version: str = "1.41"
    load_status: int = 200
    load_body: bytes = b'{"stream":"Loaded image ID: sha256:x\\n"}\n'
    register_loaded: bool = True
    tag_status: int = 201
    #: what the engine keeps of a loaded config (an engine that drops a field)
    keeps: Any = None
    #: the rows ``GET /images/json`` answers
    listing: list[dict[str, Any]] = field(default_factory=list)


class Handler(http.server.BaseHTTPRequestHandler):
    state: FakeEngineState
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def address_string(self) -> str:  # a unix socket has no host
        return "unix"

    def reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("API-Version", self.state.api_version)
        self.end_headers()
        self.wfile.write(body)

    def record(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.state.requests.append((self.command, self.path, dict(self.headers), body))
        return body

    def strip(self) -> str:
        prefix = f"/v{self.state.api_version}"
        return self.path[len(prefix) :] if self.path.startswith(prefix) else self.path

    def do_GET(self) -> None:
        self.record()
        path = self.strip()
        if path == "/_ping":
            return self.reply(200, b"OK", "text/plain")
        if path == "/info":
            return self.reply(200, json.dumps({"MemTotal": 1 << 30}).encode())
        if path == "/version":  # Docker's: its Components name "Engine", not Podman
            return self.reply(200, json.dumps({"Components": [{"Name": "Engine"}]}).encode())
        if path.startswith("/images/json?"):
            return self.reply(200, json.dumps(self.state.listing).encode())
        if path.startswith("/images/"):
            ref, _, what = path[len("/images/") :].rpartition("/")
            from urllib.parse import unquote

            found = self.state.images.get(unquote(ref))
            if found == "error":
                return self.reply(500, b'{"message":"engine exploded"}')
            if found is None:
                return self.reply(404, b'{"message":"No such image: ' + ref.encode() + b'"}')
            if what == "json":
                return self.reply(200, json.dumps(found).encode())
            if what == "history":
                return self.reply(200, json.dumps(HISTORY).encode())
        return self.reply(500, b'{"message":"unexpected request"}')

    def do_POST(self) -> None:
        body = self.record()
        path = self.strip()
        if path.startswith("/images/load"):
            if self.state.load_status == 200 and self.state.register_loaded:
                files = tar_contents(body)
                manifest = json.loads(files["manifest.json"])
                config_name = manifest[0]["Config"]
                config = json.loads(files[config_name])
                image_id = "sha256:" + config_name[: -len(".json")]
                kept = self.state.keeps or (lambda c: c)
                self.state.images[image_id] = {
                    "Id": image_id,
                    "Config": kept(config["config"]),
                    "RootFS": {"Layers": config["rootfs"]["diff_ids"]},
                }
            return self.reply(self.state.load_status, self.state.load_body)
        if "/tag?" in path:
            return self.reply(self.state.tag_status, b"" if self.state.tag_status == 201 else b"{}")
        return self.reply(500, b'{"message":"unexpected request"}')

    def do_DELETE(self) -> None:
        self.record()
        return self.reply(200, b"[]")


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def fake_engine(tmp_path: Path) -> Iterator[tuple[FakeEngineState, str]]:
    state = FakeEngineState(images={"parent:latest": PARENT, str(PARENT["Id"]): PARENT})
    handler = type("BoundHandler", (Handler,), {"state": state})
    path = str(tmp_path / "docker.sock")
    server = Server(path, handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, path
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def engine(fake_engine: tuple[FakeEngineState, str], monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("DOCKER_HOST", "unix://" + fake_engine[1])
    return connect()


def test_local_socket_follows_docker_host() -> None:
    assert local_socket("") == "/var/run/docker.sock"
    assert local_socket("unix:///run/user/1000/docker.sock") == "/run/user/1000/docker.sock"
    assert local_socket("tcp://10.0.0.1:2376") is None
    assert local_socket("ssh://me@host") is None


def test_connect_speaks_the_engines_api_version(
    engine: Engine, fake_engine: tuple[FakeEngineState, str]
) -> None:
    state, path = fake_engine
    assert engine.describe() == f"unix://{path}"
    engine.image("parent:latest")
    assert [r[1] for r in state.requests] == ["/_ping", "/v1.41/images/parent:latest/json"]


def test_image_inspect_and_missing_image(engine: Engine) -> None:
    info = engine.image("parent:latest")
    assert info is not None
    assert info.id == PARENT["Id"]
    assert info.labels == {"base": "yes"}
    assert info.diff_ids == tuple(PARENT["RootFS"]["Layers"])
    assert (info.layers, info.size) == (2, 1234)
    assert engine.image("nothing:here") is None
    assert engine.memory_total() == 1 << 30


def test_an_engine_error_names_the_image(
    engine: Engine, fake_engine: tuple[FakeEngineState, str]
) -> None:
    state, _ = fake_engine
    state.images["broken"] = "error"
    with pytest.raises(EngineError, match="inspecting image 'broken': engine exploded"):
        engine.image("broken")


def test_tag(engine: Engine, fake_engine: tuple[FakeEngineState, str]) -> None:
    state, _ = fake_engine
    engine.tag(PARENT["Id"], "registry.example:5000/team/app:v1")
    method, path, _, _ = state.requests[-1]
    assert method == "POST"
    assert path.endswith("/tag?repo=registry.example%3A5000%2Fteam%2Fapp&tag=v1")
    state.tag_status = 409
    with pytest.raises(EngineError, match=r"tagging sha256:p+ as app"):
        engine.tag(PARENT["Id"], "app")


def test_append_layer_loads_the_bundle_over_the_socket(
    engine: Engine, fake_engine: tuple[FakeEngineState, str]
) -> None:
    state, _ = fake_engine
    layer = tar_files({"opt/app/x.py": b"x = 1\n"})
    static = tar_files({"opt/app/static/a.css": b"a {}\n"})
    image_id = engine.append_layer(
        "parent:latest",
        layer,
        CommitSpec(labels={"new": "1"}),
        under=[("static files", static), ("named", "sha256:" + "9" * 64)],
    )
    method, path, headers, body = next(r for r in state.requests if "/images/load" in r[1])
    assert (method, path) == ("POST", "/v1.41/images/load?quiet=1")
    assert headers["Content-Type"] == "application/x-tar"
    assert int(headers["Content-Length"]) == len(body)
    files = tar_contents(body)
    manifest = json.loads(files["manifest.json"])
    assert manifest[0]["Layers"] == [
        "1" * 64 + "/layer.tar",
        "2" * 64 + "/layer.tar",
        "under0/layer.tar",  # carried
        "9" * 64 + "/layer.tar",  # named: the engine has it, not carried
        "new/layer.tar",
    ]
    assert files["under0/layer.tar"] == static and files["new/layer.tar"] == layer
    assert not any(name.startswith("9" * 64) for name in files)
    config = json.loads(files[image_id[7:] + ".json"])
    assert [h["created_by"] for h in config["history"]] == [
        "ADD rootfs",
        "apt-get install",
        "static files",
        "named",
        "nox-warpdrive app layer",
    ]
    assert len(config["rootfs"]["diff_ids"]) == 5
    assert config["config"]["Labels"] == {"base": "yes", "new": "1"}
    assert engine.image(image_id) is not None


def test_a_loaded_image_whose_config_is_not_the_plans_is_an_error_naming_the_field(
    engine: Engine, fake_engine: tuple[FakeEngineState, str]
) -> None:
    """The engine took the bundle but keeps another user: never a silent wrong image;
    the error names the field, the image is removed, and nothing is tagged."""
    state, _ = fake_engine
    state.keeps = lambda config: {**config, "User": "0:0"}
    layer = tar_files({"opt/app/x.py": b"x = 1\n"})
    with pytest.raises(WrongImage, match=r"User: wanted '1001', the image has '0:0'"):
        engine.append_layer("parent:latest", layer, CommitSpec(user="1001"))
    assert any(method == "DELETE" for method, *_ in state.requests)
    assert not any("/tag?" in path for _, path, *_ in state.requests)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, b'{"message":"layer sha256:9 not found"}', "layer sha256:9 not found"),
        (200, b'{"errorDetail":{"message":"bad layer"},"error":"bad layer"}\n', "bad layer"),
    ],
)
def test_append_layer_refused(
    engine: Engine,
    fake_engine: tuple[FakeEngineState, str],
    status: int,
    body: bytes,
    expected: str,
) -> None:
    state, _ = fake_engine
    state.load_status, state.load_body, state.register_loaded = status, body, False
    with pytest.raises(LayerRefused, match=expected):
        engine.append_layer("parent:latest", tar_files({"a": b"a"}), CommitSpec())


def test_no_engine_on_the_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(EngineError) as exc:
        connect()
    assert "no Docker engine answers" in str(exc.value)
    assert exc.value.fix and "engine-up.sh" in exc.value.fix


def test_a_remote_engine_goes_through_docker_py(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class Client:
        def ping(self) -> None:
            calls.append("ping")

    dockerpy_module._import_docker()
    monkeypatch.setattr(sys.modules["docker"], "from_env", lambda **kw: Client())
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2375")
    engine = connect()
    assert calls == ["ping"] and isinstance(engine, DockerEngine)
    assert isinstance(engine.client, Client)


def test_a_container_free_build_never_imports_docker_py(
    fake_engine: tuple[FakeEngineState, str],
) -> None:
    """docker-py, requests and urllib3 take ~0.15 s to import: a code change's build
    (inspect, history, load, tag) must not pay it."""
    _, path = fake_engine
    script = f"""
import os, sys
os.environ["DOCKER_HOST"] = "unix://{path}"
from nox_warpdrive import image, sessions  # what the image session imports
from nox_warpdrive.engine import connect
from nox_warpdrive.plan import CommitSpec
from nox_warpdrive.tars import tar_files
engine = connect()
new = engine.append_layer("parent:latest", tar_files({{"a": b"a"}}), CommitSpec())
engine.tag(new, "app:latest")
engine.image("app:latest")
engine.memory_total()
print(sorted(m for m in ("docker", "requests", "urllib3") if m in sys.modules))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_listed_images_are_inspected_only_when_their_listed_labels_pass_where(
    engine: Engine, fake_engine: tuple[FakeEngineState, str]
) -> None:
    """An app's deps images are listed on every grow: only those whose labels (as the
    listing gives them) are usable are inspected, and a listed image the engine's filter
    should not have passed is left out."""
    state = fake_engine[0]
    images = {}
    for n, labels in enumerate([{"kind": "deps", "n": "1"}, {"kind": "deps", "n": "2"}, {}]):
        image_id = f"sha256:{n}" + "0" * 63
        images[image_id] = {**PARENT, "Id": image_id, "Config": {"Labels": labels}}
        state.listing.append({"Id": image_id, "Labels": labels})
    state.images.update(images)
    found = engine.images_with_labels({"kind": "deps"}, lambda have: have.get("n") == "2")
    assert [i.labels for i in found] == [{"kind": "deps", "n": "2"}]
    inspected = [path for method, path, _, _ in state.requests if path.endswith("/json")]
    assert len([p for p in inspected if "/images/sha256:" in p]) == 1
    everything = engine.images_with_labels({"kind": "deps"})  # the third lacks the label
    assert [i.labels.get("n") for i in everything] == ["1", "2"]


def test_the_engine_is_asked_about_itself_once_per_connection(
    engine: Engine, fake_engine: tuple[FakeEngineState, str]
) -> None:
    """Each deps layer build asks for the engine's platform: /info and /version once."""
    state = fake_engine[0]
    engine.describe()  # connected: its own handshake asked what it needs
    before = len(state.requests)
    first, again = engine.about(), engine.about()
    assert (first.os, first.memory) == (again.os, again.memory)
    asked = sorted(path.rsplit("/", 1)[1] for _, path, _, _ in state.requests[before:])
    assert asked == ["info", "version"]
