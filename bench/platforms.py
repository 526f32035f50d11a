"""``nox -s bench -- --platforms linux/amd64,linux/arm64``: multi-platform build times.

On the app (``examples/wagtail-site``) as it is and in a variant whose wheels all exist
for aarch64 (``psycopg2-binary`` for ``psycopg2``), one app variant after the other:

- **nox-warpdrive** (``nox -s image -- --platform P``): for the engine's platform alone,
  the other alone, then both, a cold build and a code change after it;
- **peers**: the BuildKit cache-mount Dockerfile and uv's, ``docker build --platform`` of
  the other CPU on the same engine (every RUN step emulated by QEMU): cold, code change.

The other CPU's base images are the local ones ``scripts/base-images.sh`` makes with
``WARPDRIVE_ARCH=arm64`` (``warpdrive/python:3.11-bookworm-arm64``, their config says
arm64). Nothing can be pulled here, so:

- the peers' Dockerfiles are rendered with ``FROM`` naming those tags. The engine's
  built-in BuildKit resolves a ``FROM`` from the local image store first and takes the
  local image when its config is for the platform asked for (moby 20.10's
  ``ResolveModeDefault``, "prefer local"): no registry is asked. Not a local registry
  with an index: BuildKit would ask the registry for the manifest at every build and
  pull the layers once into its store, a cost the amd64 peers do not pay. Not the
  classic builder: it has no cache mounts and no secrets, which the peers need.
- nox-warpdrive finds them as ``REF-linux-arm64`` (where a build keeps what it pulls for
  a platform, docs/multi-platform.md): the bench tags them so when those tags are
  missing, and leaves the tags (they are names of base images, which no bench removes).

Every build has a timeout (``--timeout``): a build stopped there counts as a lower bound.
Writes results/platforms.json, results/platforms.md and, for the example app when every
build finished, the multi-platform section of bench/RESULTS.md."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from nox_warpdrive.platform import parse_platform, platform_ref

from .apps import App
from .common import (
    BASE_IMAGE,
    BENCH_DIR,
    BUILDER_IMAGE,
    EXAMPLE_DESCRIPTION,
    REPO,
    RESULTS_DIR,
    RUN_ID,
    WARPDRIVE,
    WD_IMAGE,
    WD_REFERENCES,
    BenchError,
    out,
    peer_tag,
)
from .dockercli import Docker
from .matrix import cleanup
from .peers import Peer
from .platforms_report import (
    EMULATED_PEERS,
    PlatformSample,
    arch,
    binary_requirements,
    replace_section,
    section,
    step_parts,
)
from .tools import BuildTimeout, Tool, Warpdrive, timed

FROM_LINE = re.compile(r"^(FROM\s+(?:--platform=\S+\s+)?)(\S+)", re.MULTILINE)


def rewrite_from(dockerfile: str, images: Mapping[str, str]) -> str:
    """The Dockerfile with each ``FROM`` image in ``images`` replaced by its value (the
    other CPU's local image); stage names and other images are left alone."""
    return FROM_LINE.sub(lambda m: m.group(1) + images.get(m.group(2), m.group(2)), dockerfile)


def foreign_image(ref: str, platform: str) -> str:
    """The local image of ``ref`` for another CPU as scripts/base-images.sh tags it:
    ``warpdrive/python:3.11-bookworm-arm64``."""
    return f"{ref}-{arch(platform).replace('/', '-')}"


class EmulatedPeer(Peer):
    """A Dockerfile peer built for another platform: ``docker build --platform P``, FROM
    the local images of that CPU (see the module for why)."""

    def __init__(
        self,
        name: str,
        docker: Docker,
        workdir: Path,
        app: App,
        ca: Path,
        nonce: str,
        platform: str,
    ) -> None:
        super().__init__(name, docker, workdir, app, ca, nonce)
        self.platform = platform
        self.images = {ref: foreign_image(ref, platform) for ref in (BASE_IMAGE, BUILDER_IMAGE)}
        self.tag = peer_tag(f"{name}-{parse_platform(platform).slug}")
        self.variant: Callable[[Path], None] = lambda app: None

    def render(self, cache_id: str) -> None:
        super().render(cache_id)
        self.dockerfile.write_text(rewrite_from(self.dockerfile.read_text(), self.images))

    def reset(self, run: int) -> None:
        super().reset(run)
        self.variant(self.app)

    def build_command(self) -> list[str]:
        cmd = super().build_command()
        return [*cmd[:2], "--platform", self.platform, *cmd[2:]]


class PlatformWarpdrive(Warpdrive):
    """nox-warpdrive with ``-- --platform P`` (``platforms``, set before each build)."""

    def __init__(self, docker: Docker, workdir: Path, app: App, native: str) -> None:
        super().__init__(docker, workdir, app)
        self.native = native
        self.platforms: tuple[str, ...] = (native,)
        self.variant: Callable[[Path], None] = lambda app: None

    def reset(self, run: int) -> None:
        super().reset(run)
        self.variant(self.app)

    def build(self, log: Path) -> tuple[float, dict[str, float], tuple[str, ...]]:
        nox = [sys.executable, "-m", "nox", "--no-color", "-s", "image"]
        cmd = [*nox, "--", "--platform", ",".join(self.platforms)]
        try:
            step = timed(cmd, cwd=self.app, env=self.env(), log=log, timeout=self.timeout)
        finally:
            for reference in WD_REFERENCES:
                self.image_ids.update(self.docker.images(reference))
        return step.seconds, step_parts(step.output, self.native), ()

    def image(self) -> str:
        return WD_IMAGE


def make_variant(name: str) -> Callable[[Path], None]:
    """What a variant changes in a fresh copy of the app (``binary``: psycopg2-binary)."""
    if name == "as-is":
        return lambda app: None

    def binary(app: Path) -> None:
        path = app / "requirements.txt"
        try:
            path.write_text(binary_requirements(path.read_text()))
        except ValueError as exc:
            raise BenchError(f"variant binary: {exc} in {path}") from exc

    return binary


def engine_platform(docker: Docker) -> str:
    """The engine's own platform, ``linux/amd64``."""
    text = docker.run("version", "--format", "{{.Server.Os}}/{{.Server.Arch}}").stdout
    return str(parse_platform(text.strip()))


def prepare_images(docker: Docker, foreign: str) -> list[str]:
    """Check the other CPU's local base images (made by scripts/base-images.sh) and tag
    them as nox-warpdrive looks for them (``REF-linux-arm64``) when those tags are
    missing; returns the tags it made."""
    made = []
    platform = parse_platform(foreign)
    for ref in (BASE_IMAGE, BUILDER_IMAGE):
        local = foreign_image(ref, foreign)
        said = docker.run("image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", local)
        if said.returncode != 0:
            raise BenchError(
                f"no local {local}: make it with `WARPDRIVE_ARCH={platform.arch} bash "
                "scripts/base-images.sh` (and QEMU: scripts/emulation.sh)"
            )
        if not parse_platform(said.stdout.strip()).matches(platform):
            raise BenchError(f"{local} is an image for {said.stdout.strip()}, not {foreign}")
        kept = platform_ref(ref, platform)
        if docker.image_id(kept) is None:
            docker.run("tag", local, kept)
            made.append(kept)
    return made


def step(
    tool: Tool,
    variant: str,
    scenario: str,
    platforms: tuple[str, ...],
    run: int,
    samples: list[PlatformSample],
) -> bool:
    """One timed build, its sample appended; False when it did not finish (a timeout or a
    failure: what depends on it is left out)."""
    label = f"{variant}-{scenario}-{tool.name}-{'+'.join(arch(p) for p in platforms)}"
    log = RESULTS_DIR / "logs-platforms" / f"r{run}-{label.replace('/', '-')}.log"
    rel = str(log.relative_to(REPO))
    load = round(os.getloadavg()[0], 2)
    began = time.perf_counter()
    try:
        seconds, parts, _ = tool.build(log)
    except BuildTimeout as exc:
        samples.append(
            PlatformSample(
                variant,
                tool.name,
                scenario,
                platforms,
                exc.seconds,
                True,
                log=rel,
                run=run,
                load=load,
            )
        )
        out(f"  {label:<48} > {exc.seconds:6.1f} s  (stopped: timeout)")
        return False
    except BenchError as exc:
        took = time.perf_counter() - began
        samples.append(
            PlatformSample(
                variant,
                tool.name,
                scenario,
                platforms,
                took,
                error=str(exc),
                log=rel,
                run=run,
                load=load,
            )
        )
        out(f"  {label:<48} failed after {took:.1f} s: {str(exc).splitlines()[0]}")
        return False
    parts = {k: round(v, 2) for k, v in parts.items()}
    samples.append(
        PlatformSample(
            variant,
            tool.name,
            scenario,
            platforms,
            round(seconds, 2),
            False,
            "",
            parts,
            rel,
            run,
            load,
        )
    )
    split = ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
    out(f"  {label:<48} {seconds:8.1f} s  {split}")
    return True


def warpdrive_runs(
    wd: PlatformWarpdrive,
    variant: str,
    native: str,
    foreign: str,
    run: int,
    fresh: int,
    samples: list[PlatformSample],
) -> None:
    """For the engine's platform alone, the other alone, then both: a cold build and a
    code change after it (what a user building those platforms meets). ``fresh``: a
    number no earlier reset used (it names the copy's run)."""
    sets: list[tuple[str, ...]] = [(native,), (foreign,), (native, foreign)]
    for platforms in sets:
        wd.reset(fresh)
        wd.platforms = platforms
        if step(wd, variant, "cold", platforms, run, samples):
            wd.edit_code(f"{variant}-{run}-{len(platforms)}")
            step(wd, variant, "code-change", platforms, run, samples)


def peer_runs(
    peer: EmulatedPeer, variant: str, run: int, fresh: int, samples: list[PlatformSample]
) -> None:
    """Cold, then a code change, for the peer's platform; ``fresh`` names a cache mount
    id no earlier build used."""
    peer.reset(fresh)
    if step(peer, variant, "cold", (peer.platform,), run, samples):
        peer.edit_code(f"{variant}-{run}")
        step(peer, variant, "code-change", (peer.platform,), run, samples)


def write_results(
    samples: Sequence[PlatformSample],
    variants: Sequence[str],
    native: str,
    foreign: str,
    meta: dict[str, str],
    error: str | None,
    own_results: bool,
) -> str:
    """results/platforms.json and results/platforms.md, and the section of
    bench/RESULTS.md when ``own_results`` (the example, every build finished)."""
    text = section(samples, variants, native, foreign, meta)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    data = {
        "complete": error is None,
        "error": error,
        "native": native,
        "foreign": foreign,
        "variants": list(variants),
        "meta": meta,
        "samples": [asdict(s) for s in samples],
    }
    (RESULTS_DIR / "platforms.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS_DIR / "platforms.md").write_text(text)
    if own_results:
        results = BENCH_DIR / "RESULTS.md"
        results.write_text(replace_section(results.read_text(), text))
    return text


def main_platforms(
    app: App,
    platforms: tuple[str, ...],
    variants: Sequence[str],
    tools: Sequence[str],
    runs: int,
    timeout: float,
    docker: Docker,
    ca: Path,
    meta: dict[str, str],
) -> int:
    """The multi-platform bench; 1 when a build failed or it was interrupted (after
    cleaning up and writing what it measured), 0 otherwise."""
    native = engine_platform(docker)
    foreign_list = [p for p in platforms if not parse_platform(p).matches(parse_platform(native))]
    if len(foreign_list) != 1 or len(platforms) != 2:
        raise BenchError(
            f"--platforms {','.join(platforms)}: name the engine's platform ({native}) "
            "and one other"
        )
    foreign = foreign_list[0]
    made = prepare_images(docker, foreign)
    if made:
        out(f"bench: tagged {', '.join(made)} (nox-warpdrive looks for them; left in place)")
    nonce = RUN_ID  # in the peers' cache ids too
    workdir = Path(tempfile.mkdtemp(prefix="warpdrive-bench-platforms-"))
    logs = RESULTS_DIR / "logs-platforms"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    cache_before = {r.get("ID", "") for r in docker.build_cache()}
    wd = PlatformWarpdrive(docker, workdir, app, native) if WARPDRIVE in tools else None
    peers = [
        EmulatedPeer(p, docker, workdir, app, ca, nonce, foreign)
        for p in EMULATED_PEERS
        if p in tools
    ]
    everyone: list[Tool] = [*([wd] if wd else []), *peers]
    for tool in everyone:
        tool.timeout = timeout
    out(
        f"bench --platforms: {native} (the engine's) and {foreign} (emulated); "
        f"{', '.join(variants)} x {', '.join(tools)} x {runs} run(s); timeout {timeout:.0f} s "
        f"a build; logs in {logs.relative_to(REPO)}/"
    )
    samples: list[PlatformSample] = []
    error: str | None = None
    began = time.perf_counter()
    try:
        if wd is not None:
            wd.snapshot()
        fresh = 0
        for run in range(1, runs + 1):
            for variant in variants:
                fresh += 1
                if wd is not None:
                    wd.variant = make_variant(variant)
                    warpdrive_runs(wd, variant, native, foreign, run, fresh, samples)
                for peer in peers:
                    peer.variant = make_variant(variant)
                    peer_runs(peer, variant, run, fresh, samples)
    except BenchError as exc:
        error = str(exc)
    except KeyboardInterrupt:
        error = "interrupted"
    finally:
        cleanup(everyone, cache_before, workdir)
    meta = {**meta, "total": f"{(time.perf_counter() - began) / 60:.1f} min"}
    failed = [s for s in samples if s.error]
    error = error or (f"{len(failed)} build(s) failed" if failed else None)
    own = app.is_example and error is None and bool(samples)
    text = write_results(samples, variants, native, foreign, meta, error, own)
    out("")
    out(text)
    where = "results/platforms.md" + (" and RESULTS.md" if own else "")
    if error is not None:
        sys.stderr.write(f"bench --platforms: {error} (wrote {where})\n")
        return 1
    out(f"bench --platforms: wrote {where}")
    return 0


def report_only_platforms() -> int:
    """``--platforms ... --report-only``: results/platforms.md (and the section of
    RESULTS.md, for the example when the saved bench completed) again from
    results/platforms.json."""
    saved = json.loads((RESULTS_DIR / "platforms.json").read_text())
    meta_keys = ("command", "date", "machine", "nox-warpdrive", "app", "runs", "timeout", "total")
    meta = saved.get("meta") or {k: saved[k] for k in meta_keys if k in saved}
    samples = [
        PlatformSample(**{**s, "platforms": tuple(s["platforms"])}) for s in saved["samples"]
    ]
    own = bool(saved.get("complete")) and meta.get("app", "") == EXAMPLE_DESCRIPTION
    write_results(
        samples,
        saved["variants"],
        saved["native"],
        saved["foreign"],
        meta,
        saved.get("error"),
        own,
    )
    out("wrote results/platforms.md" + (" and RESULTS.md" if own else ""))
    return 0
