"""The fresh CI runner of ``--fresh-runner``: a Docker engine of the bench's own, emptied
to its base images before every pipeline, and the local registry an earlier pipeline
pushed to.

The engine is a second ``dockerd`` started by scripts/second-engine.sh, on its own port,
data root, bridge and subnet. Not the engine on port 23750 that the integration tests
use (they may run at the same time), and never the first engine: emptying an engine
(every container, image but the base images, volume, and its whole build cache) is
allowed only on ``BENCH_HOST``, and ``empty_engine`` checks that before it removes
anything."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Iterable

from .common import BASE_IMAGE, BUILDER_IMAGE, REPO, BenchError, out
from .dockercli import Docker

BENCH_PORT = "23760"
BENCH_HOST = f"tcp://127.0.0.1:{BENCH_PORT}"
#: how scripts/second-engine.sh starts the bench's engine (its own everything)
BENCH_ENGINE_ENV = {
    "WARPDRIVE_ENGINE2_PORT": BENCH_PORT,
    "WARPDRIVE_ENGINE2_DIR": "/var/lib/warpdrive-bench-engine",
    "WARPDRIVE_ENGINE2_BRIDGE": "wdbr3",
    "WARPDRIVE_ENGINE2_SUBNET": "172.31.251.1/24",
    "WARPDRIVE_ENGINE2_LOG": "/var/log/warpdrive-bench-engine.log",
}
BASE_IMAGES = (BASE_IMAGE, BUILDER_IMAGE)
#: the registry's repositories are all under this prefix (plus the bench's nonce)
REGISTRY_PREFIX = "bench-fresh"


def script(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run scripts/NAME (idempotent set-up) and return the last line it printed."""
    base = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}  # the first engine
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / name), *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise BenchError(f"scripts/{name} failed: {proc.stderr.strip()[-2000:]}")
    return lines[-1]


def start_registry() -> str:
    """The local registry's address (``127.0.0.1:5000``), started if it is not running."""
    return script("registry-up.sh")


def start_engine(docker: Docker) -> Docker:
    """The bench's engine, started if it is not running, with the base images copied
    from the first engine; the CLI ``docker`` pointed at it."""
    host = script("second-engine.sh", *BASE_IMAGES, env=BENCH_ENGINE_ENV)
    if host != BENCH_HOST:
        raise BenchError(f"scripts/second-engine.sh started {host}, not {BENCH_HOST}")
    return dataclasses.replace(docker, host=host)


def removable(images: Iterable[str], keep: Iterable[str]) -> list[str]:
    """The image ids to remove so that only ``keep`` is left (order kept, no repeats)."""
    kept = set(keep)
    return [i for i in dict.fromkeys(images) if i and i not in kept]


def empty_engine(docker: Docker) -> None:
    """The fresh runner's state: the base images and nothing else (no container, no other
    image, no volume, no build cache). Only on the bench's own engine."""
    if docker.host != BENCH_HOST:
        raise BenchError(f"refusing to empty the engine at {docker.host or 'DOCKER_HOST'}")
    keep = [docker.image_id(ref) for ref in BASE_IMAGES]
    if None in keep:
        raise BenchError(f"the bench engine lost a base image; run the bench again ({keep})")
    containers = docker.run("ps", "--all", "--quiet").stdout.split()
    if containers:
        docker.run("rm", "--force", "--volumes", *containers)
    images = docker.run("image", "ls", "--all", "--quiet", "--no-trunc").stdout.split()
    left = docker.remove_images(removable(images, [k for k in keep if k]))
    volumes = docker.run("volume", "ls", "--quiet").stdout.split()
    if volumes:
        docker.run("volume", "rm", "--force", *volumes)
    docker.run("builder", "prune", "--all", "--force")
    volumes = docker.run("volume", "ls", "--quiet").stdout.split()
    if left or volumes:
        raise BenchError(
            f"could not empty the bench engine: images {left}, volumes {volumes} are left"
        )


def describe_engine(docker: Docker) -> str:
    """What the fresh runner is, for RESULTS.md."""
    version = docker.run("version", "--format", "{{.Server.Version}}").stdout.strip()
    out(f"bench: fresh runner {docker.host} (Docker {version}), emptied before every pipeline")
    return f"a second dockerd {version} on {docker.host}, its own data root and bridge"
