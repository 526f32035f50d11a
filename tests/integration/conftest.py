"""Integration tests: a real Docker engine, real volumes and images, a real local index.

Nothing here is mocked. Without an engine or the test base images every test FAILS with
the command that fixes it (never a silent skip): `bash scripts/test.sh` sets both up.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import daemons
from docker.models.containers import Container
from pkgindex import Index, build_index, serve

from nox_warpdrive.build.reproduce import cache_home
from nox_warpdrive.engine import Engine, connect
from nox_warpdrive.errors import WarpdriveError

BASE_IMAGE = os.environ.get("WARPDRIVE_TEST_BASE_IMAGE", "warpdrive/python:3.11-bookworm")
BUILDER_IMAGE = os.environ.get(
    "WARPDRIVE_TEST_BUILDER_IMAGE", "warpdrive/python-builder:3.11-bookworm"
)
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.engine)


@pytest.fixture(scope="session", autouse=True)
def private_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The host-side caches (platform probes, collected static files) of this session's
    builds live in a temporary directory, not in the user's ~/.cache."""
    with cache_home(str(tmp_path_factory.mktemp("xdg-cache"))):
        yield


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """A session ended by SIGTERM (a CI job cancelled, `timeout`) runs its teardown, as
    on Ctrl-C: the daemons it started are stopped."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupted)


@pytest.fixture(scope="session")
def registry() -> Iterator[str]:
    """127.0.0.1:PORT of a registry of this session (a free port), stopped at its end."""
    daemons.sweep()
    with daemons.registry() as address:
        yield address


@pytest.fixture(scope="session")
def runner() -> Iterator[str]:
    """DOCKER_HOST of a second engine of this session that has the base images and
    nothing else (a fresh CI runner), stopped at its end."""
    daemons.sweep()
    with daemons.engine(BASE_IMAGE, BUILDER_IMAGE) as host:
        yield host


@dataclass(frozen=True)
class AuthRegistry:
    address: str
    user: str
    password: str

    @property
    def auth(self) -> str:
        """The ``auth`` value of a config.json ``auths`` entry (what `docker login` writes)."""
        return base64.b64encode(f"{self.user}:{self.password}".encode()).decode()

    def secrets(self) -> tuple[str, ...]:
        """Every form the password could leak in."""
        return (self.password, self.auth)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    """A registry of this session on 127.0.0.1 that wants a login: a user and a canary
    password of this session (bcrypt, as distribution wants), stopped at its end."""
    import bcrypt
    from test_build import http_get

    daemons.sweep()
    tag = uuid.uuid4().hex[:10]
    user, password = f"wdtest-{tag}", f"wd-canary-{uuid.uuid4().hex}"
    htpasswd = tmp_path_factory.mktemp("htpasswd") / "htpasswd"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    htpasswd.write_text(f"{user}:{hashed}\n")
    with daemons.registry(htpasswd) as address:
        # the registry itself wants the login (and takes this one)
        status, _ = http_get(f"http://{address}/v2/")
        assert status == 401
        yield AuthRegistry(address, user, password)


@pytest.fixture(scope="session")
def engine() -> Engine:
    try:
        eng = connect()
    except WarpdriveError as exc:
        pytest.fail(f"integration tests need a Docker engine: {exc}", pytrace=False)
    for ref in (BASE_IMAGE, BUILDER_IMAGE):
        if eng.image(ref) is None:
            pytest.fail(
                f"test base image {ref} is missing: run `bash scripts/base-images.sh`",
                pytrace=False,
            )
    return eng


@pytest.fixture(scope="session")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    simple = build_index(tmp_path_factory.mktemp("index"))
    with serve(simple.parent) as idx:
        yield idx


WSGI_APP = """\
import os

import wd_cext_demo
import wd_pure_demo

MESSAGE = "{message}"


def application(environ, start_response):
    body = "%s %s add=%d uid=%d" % (
        MESSAGE, wd_pure_demo.hello(), wd_cext_demo.add(2, 40), os.getuid()
    )
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
"""


DJANGO_FILES = {
    "manage.py": """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site1.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
""",
    "site1/__init__.py": "",
    "site1/settings.py": """\
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.staticfiles", "shop"]
ROOT_URLCONF = "site1.urls"
WSGI_APPLICATION = "site1.wsgi.application"
DATABASES = {}
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "collected"
""",
    "site1/urls.py": """\
from django.urls import path

from shop.views import index

urlpatterns = [path("", index)]
""",
    "site1/wsgi.py": """\
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site1.settings")
application = get_wsgi_application()
""",
    "shop/__init__.py": "",
    "shop/static/shop/site.css": "body { color: red }\n",
}


def write_django(root: Path, message: str = "shop-v1", css: str | None = None) -> None:
    for name, text in DJANGO_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "shop" / "views.py").write_text(
        "import os\n\nfrom django.http import HttpResponse\n\n\n"
        "def index(request):\n"
        f'    return HttpResponse("{message} uid=%d" % os.getuid())\n'
    )
    if css is not None:
        (root / "shop" / "static" / "shop" / "site.css").write_text(css)


@dataclass
class App:
    """A throwaway web app project, with its own volume and image names."""

    root: Path
    name: str
    image: str
    volume: str
    requirements: list[str] = field(default_factory=list)
    extra_config: dict[str, str] = field(default_factory=dict)

    def write(self, message: str = "hello-v1") -> None:
        (self.root / "wsgi.py").write_text(WSGI_APP.format(message=message))
        (self.root / "requirements.txt").write_text("\n".join(self.requirements) + "\n")
        extra = "".join(f'{k} = "{v}"\n' for k, v in self.extra_config.items())
        (self.root / "pyproject.toml").write_text(
            f'[project]\nname = "{self.name}"\nversion = "0"\n\n'
            f'[tool.warpdrive]\nimage = "{self.image}"\nbase-image = "{BASE_IMAGE}"\n'
            f'builder-image = "{BUILDER_IMAGE}"\nvolume = "{self.volume}"\n'
            f'network = "host"\n{extra}'
        )
        (self.root / "noxfile.py").write_text("import nox_warpdrive\n\nnox_warpdrive.sessions()\n")
        (self.root / ".git").mkdir(exist_ok=True)
        (self.root / ".git" / "ignored-by-default").write_text("x")


def make_app_for(
    tmp_path_factory: pytest.TempPathFactory, requirements: list[str] | None = None
) -> App:
    """A new app project with names of its own (remove it with :func:`cleanup`)."""
    tag = uuid.uuid4().hex[:8]
    app = App(
        root=tmp_path_factory.mktemp("app"),
        name=f"wdtest-{tag}",
        image=f"wdtest-{tag}:latest",
        volume=f"wdtest-{tag}",
        requirements=requirements or ["wd-pure-demo", "wd-cext-demo"],
    )
    app.write()
    return app


def apps_on(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[object]:
    """The body of an app-making fixture: a factory of apps (make_app_for), and every
    app it made cleaned up on ``engine`` at the end (make_app; test_podman_engine's)."""
    made: list[App] = []

    def factory(requirements: list[str] | None = None) -> App:
        app = make_app_for(tmp_path_factory, requirements)
        made.append(app)
        return app

    yield factory
    for app in made:
        cleanup(engine, app)


@pytest.fixture
def make_app(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[object]:
    yield from apps_on(tmp_path_factory, engine)


def cleanup(engine: Engine, app: App) -> None:
    client = engine.client
    for img in client.images.list():
        for tag in img.tags:
            # Podman qualifies names: localhost/NAME, docker.io/warpdrive-deps/NAME
            tag = tag.removeprefix("localhost/").removeprefix("docker.io/")
            # deps images are named after the image's repository, registry host included
            # (warpdrive-deps/127-0-0-1-5000/wdtest-1234abcd:KEY)
            deps = tag.startswith("warpdrive-deps/") and f"/{app.name}:" in tag
            if deps or tag.startswith((f"{app.name}:", f"warpdrive-deps/{app.name}:")):
                with contextlib.suppress(Exception):
                    client.images.remove(tag, force=True)
    # earlier builds of the app that a rebuild left untagged
    for img in client.images.list(filters={"label": f"org.opencontainers.image.title={app.name}"}):
        with contextlib.suppress(Exception):
            client.images.remove(img.id, force=True)
    engine.remove_volume(app.volume)


def use_index(monkeypatch: pytest.MonkeyPatch, index: Index) -> Index:
    """Point the build containers at ``index`` only (no other pip setting of the host)."""
    for key in list(os.environ):
        if key.startswith("PIP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_INDEX_URL", index.url)
    return index


@pytest.fixture
def index_env(monkeypatch: pytest.MonkeyPatch, index: Index) -> Index:
    """Point the build containers at the local index only."""
    return use_index(monkeypatch, index)


def output(client: docker.DockerClient, ref: str, command: list[str], **kwargs: Any) -> bytes:
    """The standard output of ``command`` run to its end in a new container of image
    ``ref`` (``docker run --rm``); fails with the exit code and stderr when it is not 0.

    Not ``client.containers.run``: that reads the container's log after it has started,
    and on a loaded engine the log of a container that had just ended came back empty
    (a CI run read an empty staticfiles.json). Here the output is attached to before the
    container starts, as docker-py's maintainers advise (docker/docker-py#3247)."""
    container = client.containers.create(ref, command, **kwargs)
    try:
        stream = container.attach(stdout=True, stderr=False, stream=True, logs=True)
        container.start()
        out = b"".join(stream)
        code = container.wait()["StatusCode"]
        if code != 0:
            err = container.logs(stdout=False, stderr=True).decode(errors="replace")
            raise AssertionError(f"{command} in {ref} exited {code}: {err}")
        return out
    finally:
        container.remove(force=True)


@contextlib.contextmanager
def serve_image(
    engine: Engine, ref: str, user: str | None = None
) -> Iterator[tuple[Container, str]]:
    """Run image ``ref`` with its port 8080 published on a free port of 127.0.0.1; yields
    the container and the app's base URL (``http://127.0.0.1:PORT``, no trailing slash).
    The container is removed afterwards, whatever happened."""
    container = engine.client.containers.run(
        ref, detach=True, user=user, ports={"8080/tcp": ("127.0.0.1", None)}
    )
    try:
        container.reload()
        port = container.ports["8080/tcp"][0]["HostPort"]
        yield container, f"http://127.0.0.1:{port}"
    finally:
        container.remove(force=True)


@pytest.fixture(scope="session")
def uv_binary(index: Index, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real uv, from the wheel the local index serves (the builder uses the same)."""
    wheel = next((index.root / "files").glob("uv-*.whl"))
    version = wheel.name.split("-")[1]
    dest = tmp_path_factory.mktemp("uv") / "uv"
    with zipfile.ZipFile(wheel) as zf:
        dest.write_bytes(zf.read(f"uv-{version}.data/scripts/uv"))
    dest.chmod(0o755)
    return dest
