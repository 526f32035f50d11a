"""The docker CLI the bench drives.

The bench shells out to ``docker`` rather than using the Docker SDK the plugin uses:
the peers are measured as a user runs them (``docker build`` with BuildKit), and the
same CLI then inspects and removes what they made."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .common import BenchError


@dataclass(frozen=True)
class Docker:
    """The docker CLI the bench drives (one that can build with BuildKit), and the engine
    it talks to: ``host`` (a ``DOCKER_HOST``) or, when empty, the environment's."""

    cli: str
    host: str = ""

    def env(self) -> dict[str, str]:
        """The environment of every docker call: BuildKit on, for the peers' builds, and
        ``DOCKER_HOST`` when this CLI talks to another engine (the fresh runner)."""
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        if self.host:
            env["DOCKER_HOST"] = self.host
        return env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker ARGS``, captured; a failure is a BenchError unless ``check`` is off
        (for the probes and removals whose failure is an answer, not an error)."""
        proc = subprocess.run(
            [self.cli, *args], capture_output=True, text=True, env=self.env(), check=False
        )
        if check and proc.returncode != 0:
            raise BenchError(f"`docker {shlex.join(args)}` failed: {proc.stderr.strip()}")
        return proc

    def image_id(self, ref: str) -> str | None:
        """The image's id, or None when there is no such image."""
        proc = self.run("image", "inspect", "--format", "{{.Id}}", ref, check=False)
        if proc.returncode != 0:
            return None
        return proc.stdout.strip() or None

    def image_size(self, ref: str) -> int:
        """What RESULTS.md reports as the image size: ``docker image inspect .Size``."""
        return int(self.run("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())

    def images(self, reference: str) -> list[str]:
        """IDs of the images whose repository is ``reference`` (any tag)."""
        proc = self.run(
            "image",
            "ls",
            "--quiet",
            "--no-trunc",
            "--filter",
            f"reference={reference}",
            check=False,
        )
        return sorted(set(proc.stdout.split()))

    def remove_images(self, ids: Iterable[str]) -> list[str]:
        """Remove images by id, children before parents (committed images have parents):
        a few passes until nothing more goes. Returns the ids that are left."""
        left = [i for i in dict.fromkeys(ids) if self.image_id(i)]
        for _ in range(5):
            if not left:
                break
            for image in left:
                self.run("image", "rm", "--force", image, check=False)
            left = [i for i in left if self.image_id(i)]
        return left

    def running_containers(self) -> int:
        """How many containers run now: other work on a shared engine skews the times."""
        return len(self.run("ps", "--quiet", check=False).stdout.split())

    def build_cache(self) -> list[dict[str, str]]:
        """The engine's BuildKit cache records (``ID``, ``Parent``, ``CreatedAt``, ...);
        none when the engine cannot say."""
        proc = self.run(
            "system", "df", "--verbose", "--format", "{{json .BuildCache}}", check=False
        )
        try:
            records = json.loads(proc.stdout or "[]")
        except ValueError:
            return []
        return [r for r in records or [] if isinstance(r, dict)]


def find_docker() -> Docker:
    """A docker CLI that builds with BuildKit: one with buildx, or a pre-23 client (whose
    BuildKit is built in). A 23+ client without buildx refuses ``DOCKER_BUILDKIT=1``."""
    names = [os.environ.get("WARPDRIVE_BENCH_DOCKER", "")]
    names += [str(Path(d) / "docker") for d in os.environ.get("PATH", "").split(os.pathsep)]
    names += ["/usr/bin/docker"]
    seen: set[str] = set()
    for name in names:
        if not name or not os.access(name, os.X_OK):
            continue
        real = os.path.realpath(name)
        if real in seen:
            continue
        seen.add(real)
        run = [name, "buildx", "version"]
        if subprocess.run(run, capture_output=True, check=False).returncode == 0:
            return Docker(name)
        proc = subprocess.run(
            [name, "version", "--format", "{{.Client.Version}}"],
            capture_output=True,
            text=True,
            check=False,
        )
        major = proc.stdout.strip().split(".")[0]
        if major.isdigit() and int(major) < 23:
            return Docker(name)
    raise BenchError(
        "no docker CLI here can build with BuildKit: install the buildx plugin, or point "
        "WARPDRIVE_BENCH_DOCKER at a docker client older than 23"
    )
