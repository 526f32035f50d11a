"""The Dockerfile peers (bench/peers/*.Dockerfile), built with ``docker build`` and
BuildKit, and the host CA bundle their builds get as a BuildKit secret."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

from nox_warpdrive.wheelhouse import buildenv

from .apps import App
from .common import CACHE_ID_ARG, CMD_LINE, PEERS_DIR, BenchError, peer_tag, utc_now
from .dockercli import Docker
from .tools import Tool, timed


def find_ca_bundle() -> Path:
    """The host CA bundle the peers' builds get (``--secret id=ca,src=...``): PyPI may
    be reached through a TLS proxy. Found as nox-warpdrive finds the bundle it hands to
    its own build containers (``buildenv.find_ca_bundle``), so both sides trust the same
    certificates.

    ``WARPDRIVE_NO_HOST_CA`` is left out of the lookup: it stops nox-warpdrive's fallback
    to the system bundle, but the peers' Dockerfiles mount the ``ca`` secret, which
    ``docker build`` requires to exist, so the bench has always used the system bundle
    regardless."""
    environ = {k: v for k, v in os.environ.items() if k != "WARPDRIVE_NO_HOST_CA"}
    ca = buildenv.find_ca_bundle(environ)
    if ca is None:
        raise BenchError("no CA bundle found for the peers' builds: set SSL_CERT_FILE")
    return ca


class Peer(Tool):
    """A Dockerfile from bench/peers/, built with ``docker build`` and BuildKit."""

    def __init__(
        self, name: str, docker: Docker, workdir: Path, app: App, ca: Path, nonce: str
    ) -> None:
        self.name = name
        super().__init__(docker, workdir, app)
        self.template = PEERS_DIR / f"{name}.Dockerfile"
        self.dockerfile = self.root / "Dockerfile"
        self.tag = peer_tag(name)
        self.ca = ca
        self.nonce = nonce
        self.cache_id = ""
        self.no_cache_next = False
        #: when this peer's builds ran, and the RUN commands of its Dockerfile: what picks
        #: its records out of the engine's build cache at the end
        self.intervals: list[tuple[dt.datetime, dt.datetime]] = []
        self.commands: set[str] = set()

    def render(self, cache_id: str) -> None:
        """The Dockerfile with the cache mount's id written in literally.

        The Dockerfiles say ``id=${CACHE_ID}``; Docker 20.10's built-in frontend shows the
        expanded id but keys the cache by the unexpanded text, so every value would share
        one cache (and the peers would share each other's). A literal id is honoured."""
        text = CACHE_ID_ARG.sub(f"id={cache_id}", self.template.read_text())
        text = CMD_LINE.sub(lambda _: "CMD " + json.dumps(list(self.spec.peer_cmd)), text)
        self.dockerfile.write_text(text)
        self.commands = set(run_commands(text))

    def reset(self, run: int) -> None:
        """Cold for a peer: its images gone, a cache id no build has used (an empty pip
        cache) and ``--no-cache`` for the next build (no layer reused)."""
        self.docker.remove_images({self.tag, *self.image_ids})
        self.image_ids.clear()
        self.cache_id = f"warpdrive-bench-{self.name}-{self.nonce}-r{run}"
        self.fresh_copy()
        self.mark_run(f"{self.nonce}-r{run}")
        self.render(self.cache_id)
        self.no_cache_next = True

    def build_command(self) -> list[str]:
        """``docker build`` for the next build, the app's directory as the context last;
        ``--no-cache`` for a cold build only."""
        cmd = [
            self.docker.cli,
            "build",
            "--progress=plain",
            "--secret",
            f"id=ca,src={self.ca}",
            "--build-arg",
            f"CACHE_ID={self.cache_id}",
            "--file",
            str(self.dockerfile),
            "--tag",
            self.tag,
        ]
        if self.no_cache_next:
            cmd.append("--no-cache")
        return [*cmd, str(self.app)]

    def build(self, log: Path) -> tuple[float, dict[str, float], tuple[str, ...]]:
        """``docker build``, timed; when it ran and the image it made are kept for the
        clean-up, also when it failed. Its note: how many steps BuildKit had cached."""
        began = utc_now()
        try:
            step = timed(
                self.build_command(),
                cwd=self.root,
                env=self.docker.env(),
                log=log,
                timeout=self.timeout,
            )
        finally:
            self.intervals.append((began, utc_now()))
            image_id = self.docker.image_id(self.tag)
            if image_id:
                self.image_ids.add(image_id)
        self.no_cache_next = False
        return step.seconds, {}, (cached_steps(step.output),)

    def image(self) -> str:
        return self.tag

    def cleanup(self) -> list[str]:
        left = self.docker.remove_images({self.tag, *self.image_ids})
        self.image_ids.clear()
        return left


def cached_steps(output: str) -> str:
    """ "k/n steps cached" from BuildKit's plain progress, not counting FROM."""
    steps = {
        m.group(1)
        for m in re.finditer(r"^#(\d+) \[[^\]]*\d+/\d+\] (?!FROM )", output, re.MULTILINE)
    }
    cached = set(re.findall(r"^#(\d+) CACHED$", output, re.MULTILINE)) & steps
    return f"{len(cached)}/{len(steps)} steps cached"


def run_commands(dockerfile: str) -> list[str]:
    """The shell commands of the RUN instructions, as BuildKit describes them
    (continuations joined, mount flags dropped)."""
    joined = re.sub(r"\\\n", "", dockerfile)
    commands = []
    for line in joined.splitlines():
        m = re.match(r"\s*RUN\s+(.*)", line)
        if m:
            words = m.group(1).split(" ")
            while words and (words[0].startswith("--") or words[0] == ""):
                words.pop(0)
            commands.append(" ".join(words))
    return commands
