"""The Dockerfile peers: their rendered Dockerfiles, the ``docker build`` command, what
their BuildKit output says was cached, and the CA bundle they get (nox-warpdrive's lookup,
``buildenv.find_ca_bundle``). No builds."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # plain `pytest` puts tests/unit first, not the checkout
    sys.path.insert(0, str(REPO))

from bench.apps import make_app  # noqa: E402
from bench.common import PEERS, PEERS_DIR, RUN_ID, BenchError  # noqa: E402
from bench.dockercli import Docker  # noqa: E402
from bench.peers import Peer, cached_steps, find_ca_bundle, run_commands  # noqa: E402
from nox_warpdrive.wheelhouse import buildenv  # noqa: E402


def test_cached_steps_count_the_dockerfile_steps_but_from() -> None:
    output = "\n".join(
        [
            "#1 [internal] load build definition from Dockerfile",
            "#5 [1/4] FROM docker.io/warpdrive/python-builder:3.11-bookworm",
            "#5 CACHED",
            "#6 [2/4] WORKDIR /opt/app-root/src",
            "#6 CACHED",
            "#7 [3/4] COPY requirements.txt .",
            "#8 [builder 2/2] RUN pip wheel",
            "#8 CACHED",
            "#9 [4/4] RUN pip install",
        ]
    )
    assert cached_steps(output) == "2/4 steps cached"
    assert cached_steps("") == "0/0 steps cached"


def test_run_commands_join_continuations_and_drop_mount_flags() -> None:
    dockerfile = (
        "FROM x\n"
        "RUN --mount=type=cache,id=1,target=/c \\\n"
        "    --mount=type=secret,id=ca \\\n"
        "    pip install \\\n"
        "    -r requirements.txt\n"
        "  RUN  echo done\n"
        "COPY . .\n"
    )
    assert run_commands(dockerfile) == ["pip install     -r requirements.txt", "echo done"]


@dataclass(frozen=True)
class FakeDocker(Docker):
    """Every image is gone already; the calls are recorded."""

    calls: list[tuple[str, ...]] = field(default_factory=list)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        return subprocess.CompletedProcess([self.cli, *args], 1, "", "no such image")


@pytest.mark.parametrize("name", PEERS)
def test_every_peer_renders_a_literal_cache_id_and_the_apps_command(
    name: str, tmp_path: Path
) -> None:
    peer = Peer(name, FakeDocker("docker"), tmp_path, make_app(None, None, None), tmp_path, "n")
    peer.root.mkdir(parents=True)
    peer.render("warpdrive-bench-x")
    text = peer.dockerfile.read_text()
    assert "CACHE_ID}" not in text and "id=$CACHE_ID" not in text
    assert text.count("id=warpdrive-bench-x") == text.count("type=cache")
    assert 'CMD ["gunicorn", "--bind", "0.0.0.0:8080", "mysite.wsgi:application"]' in text
    assert peer.commands == set(run_commands((PEERS_DIR / f"{name}.Dockerfile").read_text()))


def test_the_uv_peer_follows_uvs_docker_guide(tmp_path: Path) -> None:
    peer = Peer("uv", FakeDocker("docker"), tmp_path, make_app(None, None, None), tmp_path, "n")
    peer.root.mkdir(parents=True)
    peer.render("warpdrive-bench-uv-n-r0")
    text = peer.dockerfile.read_text()
    assert "--mount=type=cache,id=warpdrive-bench-uv-n-r0,target=/root/.cache/uv" in text
    assert "--mount=type=bind,source=requirements.txt," in text
    assert "UV_COMPILE_BYTECODE=1" in text and "UV_LINK_MODE=copy" in text
    assert "COPY --from=ghcr" not in text.replace(" ", "")
    # the venv made in the builder, copied into the runtime image, run by a non-root user
    assert text.index("FROM warpdrive/python-builder:3.11-bookworm AS builder") < text.index(
        "FROM warpdrive/python:3.11-bookworm\n"
    )
    assert "COPY --from=builder /opt/venv /opt/venv" in text
    assert "\nUSER nonroot\n" in text
    assert text.splitlines()[-1] == (
        'CMD ["gunicorn", "--bind", "0.0.0.0:8080", "mysite.wsgi:application"]'
    )
    commands = run_commands(text)
    assert len(commands) == 4
    assert commands[0].startswith("python3 -m venv /opt/uv ")
    assert commands[1].startswith("/opt/uv/bin/uv venv --python /usr/bin/python3 /opt/venv ")
    assert "uv pip install --python /opt/venv/bin/python" in commands[1]
    assert commands[3].startswith("if [ -f manage.py ]; then")
    assert peer.commands == set(commands)


def test_a_reset_makes_the_next_build_cold_with_a_fresh_cache_id(tmp_path: Path) -> None:
    docker = FakeDocker("/usr/bin/docker")
    ca = tmp_path / "ca.pem"
    peer = Peer("buildkit-cache", docker, tmp_path, make_app(None, None, None), ca, "abc")
    peer.reset(2)
    assert peer.cache_id == "warpdrive-bench-buildkit-cache-abc-r2"
    assert (peer.app / "requirements.txt").read_text().startswith("# bench run abc-r2\n")
    assert "id=warpdrive-bench-buildkit-cache-abc-r2" in peer.dockerfile.read_text()
    assert peer.build_command() == [
        "/usr/bin/docker",
        "build",
        "--progress=plain",
        "--secret",
        f"id=ca,src={ca}",
        "--build-arg",
        "CACHE_ID=warpdrive-bench-buildkit-cache-abc-r2",
        "--file",
        str(peer.dockerfile),
        "--tag",
        f"bench-peer-buildkit-cache-{RUN_ID}:latest",
        "--no-cache",
        str(peer.app),
    ]
    peer.no_cache_next = False  # what a build does
    assert "--no-cache" not in peer.build_command()
    assert peer.cleanup() == []


@pytest.fixture
def no_system_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A host whose only system bundle is a file of the test's; no CA variables set."""
    system = tmp_path / "system.crt"
    monkeypatch.setattr(buildenv, "SYSTEM_CA_BUNDLES", (str(system),))
    for key in (*buildenv.CA_ENV_KEYS, "WARPDRIVE_NO_HOST_CA"):
        monkeypatch.delenv(key, raising=False)
    return system


def test_the_ca_bundle_is_found_as_nox_warpdrive_finds_it(
    no_system_bundle: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(BenchError, match="set SSL_CERT_FILE"):
        find_ca_bundle()
    no_system_bundle.write_text("system")
    assert find_ca_bundle() == no_system_bundle
    pip = tmp_path / "pip.pem"
    pip.write_text("pip")
    monkeypatch.setenv("PIP_CERT", str(pip))
    assert find_ca_bundle() == pip


def test_the_peers_get_the_system_bundle_even_with_no_host_ca(
    no_system_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # WARPDRIVE_NO_HOST_CA turns off nox-warpdrive's fallback to the system bundle; the
    # peers' Dockerfiles mount the `ca` secret, so the bench keeps it
    no_system_bundle.write_text("system")
    monkeypatch.setenv("WARPDRIVE_NO_HOST_CA", "1")
    assert find_ca_bundle() == no_system_bundle
