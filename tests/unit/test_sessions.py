"""Registering the nox sessions, and how a session reports a user mistake (no Docker)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import nox.registry
import pytest
from unit_support import write

import nox_warpdrive
from nox_warpdrive.engine import local as local_module
from nox_warpdrive.errors import WarpdriveError

# the package re-exports the function `sessions`, which hides the submodule attribute
sessions_module = importlib.import_module("nox_warpdrive.sessions")

NOXFILE = "import nox_warpdrive\n\nnox_warpdrive.sessions()\n"
NO_ENGINE = "unix:///nonexistent/docker.sock"  # a DOCKER_HOST nothing answers on


@pytest.fixture
def registry() -> Iterator[dict[str, Any]]:
    """An empty nox registry for the test; the previous one is put back afterwards."""
    saved = dict(nox.registry._REGISTRY)
    nox.registry._REGISTRY.clear()
    try:
        yield nox.registry._REGISTRY
    finally:
        nox.registry._REGISTRY.clear()
        nox.registry._REGISTRY.update(saved)


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any attempt to reach a Docker engine is recorded and fails like a missing engine."""
    calls: list[str] = []

    def from_env(*args: object, **kwargs: object) -> None:
        calls.append("from_env")
        raise docker.errors.DockerException("engine contacted during the test")

    def ping(self: local_module.LocalApi) -> None:
        calls.append("ping")
        raise local_module.ApiError("engine contacted during the test")

    monkeypatch.setattr(docker, "from_env", from_env)
    monkeypatch.setattr(docker, "DockerClient", lambda *a, **k: calls.append("client"))
    monkeypatch.delenv("DOCKER_HOST", raising=False)  # the local socket's path is taken
    monkeypatch.setattr(local_module.LocalApi, "ping", ping)
    monkeypatch.setattr(local_module.LocalApi, "call", lambda *a, **k: calls.append("call"))
    return calls


class SessionQuit(Exception):
    pass


class FakeSession:
    """Just what the session functions use: posargs, log, error."""

    def __init__(self, posargs: list[str] | None = None) -> None:
        self.posargs = posargs or []
        self.logs: list[str] = []
        self.errors: list[str] = []

    def log(self, message: str) -> None:
        self.logs.append(message)

    def error(self, message: str) -> None:
        self.errors.append(message)
        raise SessionQuit(message)


# ----------------------------------------------------------------------------- registering


def test_registers_wheelhouse_and_image(registry: dict[str, Any], no_docker: list[str]) -> None:
    nox_warpdrive.sessions()
    assert set(registry) == {"wheelhouse", "image", "run", "serve", "doctor", "sbom"}
    for name, func in registry.items():
        assert func.name == name
        # serve installs the app's requirements: the only one with a virtualenv
        assert (func.venv_backend == "none") is (name != "serve")
        assert func.python is None
        assert func.default is False  # building images is never a default session
        assert func.__doc__ and func.__doc__.strip()
    assert "wheel" in registry["wheelhouse"].__doc__.lower()
    assert "image" in registry["image"].__doc__.lower()
    assert no_docker == []


def test_registering_contacts_no_docker_and_reads_no_config(
    registry: dict[str, Any],
    no_docker: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(tmp_path, "pyproject.toml", "[tool.warpdrive\nthis is not toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    nox_warpdrive.sessions()
    nox_warpdrive.sessions(prefix="wd-", project_dir=tmp_path / "does-not-exist")
    assert set(registry) == {
        "wheelhouse",
        "image",
        "run",
        "serve",
        "doctor",
        "sbom",
        "wd-wheelhouse",
        "wd-image",
        "wd-run",
        "wd-serve",
        "wd-doctor",
        "wd-sbom",
    }
    assert no_docker == []


@pytest.mark.parametrize("taken", ["image", "wheelhouse"])
def test_existing_session_is_refused_with_prefix_hint(registry: dict[str, Any], taken: str) -> None:
    @nox.session(name=taken, venv_backend="none")
    def mine(session: Any) -> None:
        """The project's own session."""

    with pytest.raises(WarpdriveError) as info:
        nox_warpdrive.sessions()
    assert repr(taken) in str(info.value)
    assert "prefix" in str(info.value)
    assert info.value.fix and 'prefix="wd-"' in info.value.fix
    # nothing half-registered, and the project's session is untouched
    assert set(registry) == {taken}
    assert registry[taken].func.__doc__ == "The project's own session."


def test_prefix_registers_beside_existing_sessions(registry: dict[str, Any]) -> None:
    @nox.session(name="image", venv_backend="none")
    def mine(session: Any) -> None:
        pass

    nox_warpdrive.sessions(prefix="wd-")
    assert set(registry) == {
        "image",
        "wd-wheelhouse",
        "wd-image",
        "wd-run",
        "wd-serve",
        "wd-doctor",
        "wd-sbom",
    }
    assert registry["wd-image"].venv_backend == "none"
    assert registry["image"].func is not registry["wd-image"].func
    with pytest.raises(WarpdriveError, match="'wd-wheelhouse' is already registered"):
        nox_warpdrive.sessions(prefix="wd-")


# ----------------------------------------------------------------------------- running in-process


def run_session(
    registry: dict[str, Any], name: str, posargs: list[str] | None = None
) -> FakeSession:
    session = FakeSession(posargs)
    with pytest.raises(SessionQuit):
        registry[name](session)
    assert len(session.errors) == 1
    return session


@pytest.mark.parametrize(
    ("pyproject", "expected", "docker_calls"),
    [
        # config is checked before the engine is contacted
        pytest.param(
            '[tool.warpdrive]\nbase_image = "x"\n',
            ["unknown key `base_image`", "did you mean `base-image`?"],
            [],
            id="bad-config",
        ),
        pytest.param(
            '[project]\nname = "site"\n',
            ["no Docker engine answers", "fix:"],
            ["ping", "ping"],
            id="missing-engine",
        ),
    ],
)
def test_user_mistake_becomes_session_error(
    registry: dict[str, Any],
    no_docker: list[str],
    tmp_path: Path,
    pyproject: str,
    expected: list[str],
    docker_calls: list[str],
) -> None:
    write(tmp_path, "pyproject.toml", pyproject)
    nox_warpdrive.sessions(project_dir=tmp_path)
    for name in ("wheelhouse", "image"):
        error = run_session(registry, name).errors[0]
        for fragment in expected:
            assert fragment in error, fragment
    assert no_docker == docker_calls


def test_project_dir_defaults_to_cwd(
    registry: dict[str, Any],
    no_docker: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(tmp_path, "pyproject.toml", "[tool.warpdrive]\nimag = 1\n")
    nox_warpdrive.sessions()
    monkeypatch.chdir(tmp_path)
    assert "did you mean `image`?" in run_session(registry, "image").errors[0]


@pytest.mark.parametrize(
    ("name", "posargs"),
    [("image", ["--bogus"]), ("wheelhouse", ["--tag", "x:1"]), ("image", ["--tag"])],
)
def test_bad_posargs_become_session_error(
    registry: dict[str, Any],
    no_docker: list[str],
    tmp_path: Path,
    name: str,
    posargs: list[str],
) -> None:
    nox_warpdrive.sessions(project_dir=tmp_path)
    error = run_session(registry, name, posargs).errors[0]
    assert error.startswith("bad arguments: ")
    assert "usage: nox -s " in error
    assert no_docker == []


def test_push_only_needs_an_image_ref_in_a_registry(
    registry: dict[str, Any], no_docker: list[str], tmp_path: Path
) -> None:
    write(tmp_path, "pyproject.toml", '[tool.warpdrive]\nimage = "site:latest"\n')
    write(tmp_path, "wsgi.py", "application = None\n")
    nox_warpdrive.sessions(project_dir=tmp_path)
    error = run_session(registry, "image", ["--push-only"]).errors[0]
    assert "--push-only builds the image in a registry" in error and "'site:latest'" in error
    assert no_docker == []  # said before the engine is reached
    assert sessions_module.image_parser().parse_args(["--push-only"]).push_only is True


def test_check_reproducible_needs_a_local_build_and_the_index(
    registry: dict[str, Any], no_docker: list[str], tmp_path: Path
) -> None:
    write(tmp_path, "pyproject.toml", '[tool.warpdrive]\nimage = "reg.example/site:latest"\n')
    write(tmp_path, "wsgi.py", "application = None\n")
    nox_warpdrive.sessions(project_dir=tmp_path)
    error = run_session(registry, "image", ["--check-reproducible", "--push-only"]).errors[0]
    assert "drop --push-only" in error
    error = run_session(registry, "image", ["--check-reproducible", "--no-index"]).errors[0]
    assert "builds again from nothing" in error and "drop --no-index" in error
    assert no_docker == []  # said before the engine is reached


def test_upgrade_needs_the_index_and_a_build(
    registry: dict[str, Any], no_docker: list[str], tmp_path: Path
) -> None:
    write(tmp_path, "pyproject.toml", '[tool.warpdrive]\nimage = "site:latest"\n')
    write(tmp_path, "wsgi.py", "application = None\n")
    nox_warpdrive.sessions(project_dir=tmp_path)
    error = run_session(registry, "image", ["--upgrade", "--no-index"]).errors[0]
    assert "--upgrade resolves from the package index: drop --no-index" in error
    error = run_session(registry, "image", ["--upgrade", "--plan"]).errors[0]
    assert "--plan changes nothing" in error and "drop --upgrade" in error
    write(tmp_path, "pyproject.toml", '[tool.warpdrive]\nimage = "site:latest"\nno-index = true\n')
    error = run_session(registry, "image", ["--upgrade"]).errors[0]
    assert "drop --no-index (or `no-index` in [tool.warpdrive] for that run)" in error
    assert no_docker == []  # said before the engine is reached
    for parser in (sessions_module.image_parser, sessions_module.wheelhouse_parser):
        assert parser().parse_args(["--upgrade"]).upgrade is True
        assert parser().parse_args([]).upgrade is False


def test_parsers() -> None:
    args = sessions_module.image_parser().parse_args(["--no-index", "--tag", "site:v2"])
    assert (args.no_index, args.tag) == (True, "site:v2")
    args = sessions_module.image_parser().parse_args([])
    assert (args.no_index, args.tag) == (None, None)  # None: take `no-index` from config
    assert sessions_module.wheelhouse_parser().parse_args([]).no_index is False


# ----------------------------------------------------------------------------- real nox


def nox_run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("NOX", "DOCKER_"))}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "nox", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


@pytest.fixture
def bad_project(tmp_path: Path) -> Path:
    write(tmp_path, "noxfile.py", NOXFILE)
    write(tmp_path, "pyproject.toml", '[tool.warpdrive]\nbase_image = "x"\n')
    return tmp_path


@pytest.fixture
def good_project(tmp_path: Path) -> Path:
    write(tmp_path, "noxfile.py", NOXFILE)
    write(tmp_path, "pyproject.toml", '[project]\nname = "site"\n')
    write(tmp_path, "requirements.txt", "flask\n")
    write(tmp_path, "wsgi.py", "application = None\n")
    return tmp_path


def nox_fails(cwd: Path, *args: str) -> str:
    """Run nox with no engine to reach: it must fail cleanly. Returns its output."""
    proc = nox_run(cwd, *args, DOCKER_HOST=NO_ENGINE)
    text = output(proc)
    assert proc.returncode != 0, text
    assert "Traceback" not in text
    return text


def test_nox_list_works_with_a_broken_config(bad_project: Path) -> None:
    proc = nox_run(bad_project, "-l", DOCKER_HOST=NO_ENGINE)
    assert proc.returncode == 0, output(proc)
    text = output(proc)
    assert "wheelhouse" in text and "image" in text
    assert "Build every wheel" in text  # the docstrings are shown
    assert "Traceback" not in text


def test_nox_bad_config_is_a_clean_error(bad_project: Path) -> None:
    text = nox_fails(bad_project, "-s", "image")
    assert "unknown key `base_image`" in text
    assert "did you mean `base-image`" in text


def test_nox_without_engine_is_a_clean_error(good_project: Path) -> None:
    text = nox_fails(good_project, "-s", "wheelhouse")
    assert "no Docker engine answers" in text
    assert "fix:" in text


def test_nox_bad_posargs_are_a_clean_error(good_project: Path) -> None:
    text = nox_fails(good_project, "-s", "image", "--", "--bogus")
    assert "bad arguments" in text and "--bogus" in text
    assert "no Docker engine" not in text  # arguments are checked first


def test_prune_options(registry: dict[str, Any], no_docker: list[str], tmp_path: Path) -> None:
    args = sessions_module.wheelhouse_parser().parse_args(["--prune", "--all-keys"])
    assert (args.prune, args.all_keys) == (True, True)
    args = sessions_module.wheelhouse_parser().parse_args([])
    assert (args.prune, args.all_keys) == (False, False)
    nox_warpdrive.sessions(project_dir=tmp_path)
    error = run_session(registry, "wheelhouse", ["--all-keys"]).errors[0]
    assert "--all-keys goes with --prune" in error
    assert no_docker == []  # said before the engine is reached
