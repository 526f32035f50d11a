"""``--fresh-runner``: the CI pipeline of nox-warpdrive and of the BuildKit cache-mount
Dockerfile on an empty engine, with what an earlier pipeline pushed in a registry.

First, for each tool, an earlier pipeline runs on the empty engine with an empty registry
(the "first pipeline" row: a cold build and its pushes). What it pushed is kept
(``Registry.snapshot``). Then, run after run, interleaved, every scenario starts with the
engine emptied to its base images, the registry put back to that snapshot, a fresh
checkout (a new copy of the app, with the scenario's change) and no host cache:

- nothing changed; code change (one .py edited); one package added (requirements.txt).

What runs is what the README's CI recipes say a user runs, pushes included (a pipeline
is the next pipeline's cache):

- nox-warpdrive: ``nox -s image -- --cache-from I --push-only`` (``image = I`` and
  ``wheelhouse-image = W`` in the copy's ``[tool.warpdrive]``: the wheelhouse is seeded
  from W when the build needs wheels, and the wheels it adds are pushed there);
- the peer (bench/peers/buildkit-cache.Dockerfile): ``docker build --cache-from P
  --build-arg BUILDKIT_INLINE_CACHE=1 -t P`` then ``docker push P``, Debian's docker
  client and the engine's built-in BuildKit.

Both build with the host's network (``network = "host"``, ``docker build --network
host``): the bench engine's bridge has no route out (``--iptables=false``), the first
engine's is left alone."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from .apps import App
from .common import REFERENCE, REPO, RESULTS_DIR, RUN_ID, WARPDRIVE, BenchError, out, utc_now
from .dockercli import Docker
from .fresh_report import (
    FIRST,
    FRESH_SCENARIOS,
    FRESH_TITLES,
    fresh_markdown,
    fresh_tables,
    replace_section,
)
from .peers import Peer, cached_steps
from .registry import Registry, split_ref
from .report import Conditions, Sample
from .runner import REGISTRY_PREFIX, describe_engine, empty_engine, start_engine, start_registry
from .tools import Tool, Warpdrive, timed

LOGS = RESULTS_DIR / "logs-fresh"


class FreshWarpdrive(Warpdrive):
    """nox-warpdrive's pipeline on the fresh runner (the README's CI recipe)."""

    def __init__(
        self, docker: Docker, workdir: Path, app: App, image_ref: str, wheelhouse_ref: str
    ) -> None:
        super().__init__(docker, workdir, app)
        self.image_ref = image_ref
        self.wheelhouse_ref = wheelhouse_ref

    def settings(self) -> dict[str, object]:
        return {"image": self.image_ref, "wheelhouse-image": self.wheelhouse_ref, "network": "host"}

    def env(self) -> dict[str, str]:
        return {**super().env(), "DOCKER_HOST": self.docker.host}

    def reset(self, run: int) -> None:
        """A fresh checkout and no host cache (a runner has neither); the engine is
        emptied by the matrix, for every tool alike."""
        shutil.rmtree(self.xdg, ignore_errors=True)
        self.fresh_copy()

    def commands(self) -> list[tuple[str, list[str]]]:
        nox = [sys.executable, "-m", "nox", "--no-color", "-s"]
        # built in the registry when it can be (nothing pulled), else here and pushed
        return [("image", [*nox, "image", "--", "--cache-from", self.image_ref, "--push-only"])]

    def build(self, log: Path) -> tuple[float, dict[str, float], tuple[str, ...]]:
        parts: dict[str, float] = {}
        notes: list[str] = []
        for name, cmd in self.commands():
            step = timed(cmd, cwd=self.app, env=self.env(), log=log, stamp=True)
            parts[name] = step.seconds
            notes += [
                line.split("nox > ", 1)[-1].strip()
                for line in step.output.splitlines()
                if f"nox > {name} " in line
            ]
        return sum(parts.values()), parts, tuple(notes)

    def image(self) -> str:
        return self.image_ref

    def cleanup(self) -> list[str]:
        return []  # the engine is emptied and the registry's repositories removed


class FreshPeer(Peer):
    """The BuildKit cache-mount Dockerfile, its inline cache in the registry."""

    def __init__(
        self, docker: Docker, workdir: Path, app: App, ca: Path, nonce: str, ref: str
    ) -> None:
        super().__init__(REFERENCE, docker, workdir, app, ca, nonce)
        self.tag = ref
        self.cache_id = f"warpdrive-bench-fresh-{nonce}"

    def reset(self, run: int) -> None:
        self.fresh_copy()
        self.render(self.cache_id)

    def build_command(self) -> list[str]:
        cmd = super().build_command()
        extra = ["--network", "host", "--build-arg", "BUILDKIT_INLINE_CACHE=1"]
        return [*cmd[:2], *extra, "--cache-from", self.tag, *cmd[2:]]

    def build(self, log: Path) -> tuple[float, dict[str, float], tuple[str, ...]]:
        env = self.docker.env()
        built = timed(self.build_command(), cwd=self.root, env=env, log=log, stamp=True)
        pushed = timed(
            [self.docker.cli, "push", self.tag], cwd=self.root, env=env, log=log, stamp=True
        )
        parts = {"build": built.seconds, "push": pushed.seconds}
        return built.seconds + pushed.seconds, parts, (cached_steps(built.output),)

    def cleanup(self) -> list[str]:
        return []


def refs(registry: str, nonce: str) -> dict[str, str]:
    """The registry references of this bench: its own prefix and nonce, so nothing another
    bench or test pushed is ever pulled."""
    base = f"{registry}/{REGISTRY_PREFIX}/{nonce}"
    return {
        "image": f"{base}/warpdrive:latest",
        "wheelhouse": f"{base}/warpdrive-wheelhouse",
        "peer": f"{base}/{REFERENCE}:latest",
    }


def repositories(references: dict[str, str]) -> list[str]:
    """The registry repositories the references name."""
    return sorted({split_ref(ref)[1] for ref in references.values()})


def prepare(tool: Tool, scenario: str, package: str, stamp: str) -> None:
    """A fresh checkout with the scenario's change (relative to what was pushed)."""
    tool.reset(0)
    if scenario == "code-change":
        tool.edit_code(stamp)
    elif scenario == "add-package":
        tool.add_package(package)


def pushed_size(engine: Docker, ref: str) -> int:
    """The image's size as the engine reports it; an image built in the registry
    (`--push-only`) is pulled for it first, after the timing, as a later step of the job
    that runs it would pull it."""
    if engine.image_id(ref) is None:
        engine.run("pull", ref)
    return engine.image_size(ref)


def one_pipeline(
    tool: Tool, engine: Docker, scenario: str, run: int, conditions: Conditions, main: Docker
) -> Sample:
    """One timed pipeline on the emptied engine; its sample, printed as it comes."""
    log = LOGS / f"r{run}-{scenario}-{tool.name}.log"
    conditions.sample(main)
    seconds, parts, notes = tool.build(log)
    size = pushed_size(engine, tool.image())
    parts = {k: round(v, 2) for k, v in parts.items()}
    split = ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())
    out(f"  run {run} {FRESH_TITLES[scenario]:<18} {tool.name:<14} {seconds:6.1f} s  {split}")
    for note in notes:
        out(f"      {note[:150]}")
    rel = str(log.relative_to(REPO))
    return Sample(run, scenario, tool.name, round(seconds, 2), size, parts, notes, rel)


def run_fresh(
    tools: Sequence[Tool],
    engine: Docker,
    registry: Registry,
    repos: Sequence[str],
    runs: int,
    package: str,
    nonce: str,
    conditions: Conditions,
    main: Docker,
    samples: list[Sample],
) -> None:
    """The earlier pipelines, then every scenario of every run, interleaved; each sample
    appended to ``samples`` as it comes (a failed bench keeps the ones it has)."""
    for tool in tools:
        empty_engine(engine)
        prepare(tool, FIRST, package, nonce)
        samples.append(one_pipeline(tool, engine, FIRST, 0, conditions, main))
    pushed = registry.snapshot(repos)
    out(f"bench: the earlier pipelines pushed {len(pushed)} tag(s); kept for every scenario")
    for run in range(1, runs + 1):
        order = [*tools[(run - 1) % len(tools) :], *tools[: (run - 1) % len(tools)]]
        for scenario in FRESH_SCENARIOS:
            for tool in order:
                empty_engine(engine)
                registry.restore(pushed)
                prepare(tool, scenario, package, f"{nonce}-{run}")
                samples.append(one_pipeline(tool, engine, scenario, run, conditions, main))


def main_fresh(
    app: App,
    runs: int,
    package: str,
    command: str,
    revision: str,
    main: Docker,
    ca: Path,
) -> int:
    """The whole fresh-runner bench; 1 when a pipeline failed or it was interrupted."""
    began = time.perf_counter()
    date = utc_now().strftime("%Y-%m-%d %H:%M UTC")
    nonce = RUN_ID  # the suffix of every name this run gives in Docker and the registry
    registry = Registry(start_registry())
    engine = start_engine(main)
    engine_line = describe_engine(engine)
    references = refs(registry.address, nonce)
    repos = repositories(references)
    shutil.rmtree(LOGS, ignore_errors=True)
    LOGS.mkdir(parents=True)
    out(
        f"bench: fresh runner, {len(FRESH_SCENARIOS)} scenarios x {runs} run(s); "
        f"nox-warpdrive {revision}; docker CLI {engine.cli}; registry {registry.address}/"
        f"{REGISTRY_PREFIX}/{nonce}; logs in {LOGS.relative_to(REPO)}/"
    )
    workdir = Path(tempfile.mkdtemp(prefix="warpdrive-bench-fresh-"))
    ours = FreshWarpdrive(engine, workdir, app, references["image"], references["wheelhouse"])
    peer = FreshPeer(engine, workdir, app, ca, nonce, references["peer"])
    tools: list[Tool] = [ours, peer]
    conditions = Conditions()
    samples: list[Sample] = []
    error: str | None = None
    try:
        ours.snapshot()
        run_fresh(tools, engine, registry, repos, runs, package, nonce, conditions, main, samples)
    except BenchError as exc:
        error = str(exc)
    except KeyboardInterrupt:
        error = "interrupted"
    finally:
        out("bench: cleaning up (the bench engine emptied, the bench's registry tags deleted)")
        leftovers: list[str] = []
        try:
            empty_engine(engine)
        except BenchError as exc:
            leftovers.append(str(exc))
        try:
            leftovers += registry.remove(repos)
        except BenchError as exc:
            leftovers.append(str(exc))
        shutil.rmtree(workdir, ignore_errors=True)
        if leftovers:
            out("bench: could not remove: " + "; ".join(leftovers))
    total = time.perf_counter() - began
    facts = {
        "date": date,
        "command": command,
        "engine": engine_line,
        "revision": revision,
        "runs": runs,
        "package": package,
        "total_seconds": round(total, 1),
        "app": app.describe(),
        "code_file": app.code_file,
        "cpus": os.cpu_count() or 1,
        "conditions": conditions.describe(os.cpu_count() or 1),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    saved = {
        "complete": error is None,
        "error": error,
        **facts,
        "samples": [asdict(s) for s in samples],
    }
    (RESULTS_DIR / "fresh-latest.json").write_text(json.dumps(saved, indent=2) + "\n")
    tables = fresh_tables(samples)
    out("")
    out(tables)
    out("")
    if error is not None:
        sys.stderr.write(f"bench failed: {error}\n")
        return 1
    markdown = fresh_markdown(facts, tables)
    target = REPO / "bench" / "RESULTS.md" if app.is_example else RESULTS_DIR / "RESULTS.md"
    text = target.read_text() if target.is_file() else ""
    target.write_text(replace_section(text, markdown))
    out(f"ratios: {WARPDRIVE} / {REFERENCE}; total {total / 60:.1f} min; wrote {target}")
    return 0
