"""The builds themselves: every tool through every scenario, run after run, interleaved;
and the clean-up afterwards, also after a failure or Ctrl-C."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from .apps import App
from .buildcache import prune_cache
from .common import REPO, RESULTS_DIR, SCENARIOS, TITLES, WARPDRIVE, BenchError, out
from .dockercli import Docker
from .peers import Peer
from .report import Conditions, Sample
from .tools import Tool, Warpdrive


def shorten(text: str, width: int = 110) -> str:
    """One line of the progress output, cut to ``width`` with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"


def make_tools(
    names: Sequence[str], docker: Docker, workdir: Path, app: App, ca: Path, nonce: str
) -> list[Tool]:
    """The tools named, in that order, each with its own directory under ``workdir``."""
    return [
        Warpdrive(docker, workdir, app)
        if name == WARPDRIVE
        else Peer(name, docker, workdir, app, ca, nonce)
        for name in names
    ]


def prepare(tool: Tool, scenario: str, run: int, package: str, nonce: str) -> None:
    """What changes before this tool's build of ``scenario`` (nothing for no-change)."""
    if scenario == "cold":
        tool.reset(run)
    elif scenario == "code-change":
        tool.edit_code(f"{nonce}-{run}")
    elif scenario == "add-package":
        tool.add_package(package)


def run_matrix(
    tools: Sequence[Tool], runs: int, package: str, nonce: str, conditions: Conditions
) -> list[Sample]:
    """All builds, interleaved: every tool does a scenario before any does the next."""
    logs = RESULTS_DIR / "logs"
    samples: list[Sample] = []
    for run in range(runs):
        # rotate who goes first, so no tool always meets a cold proxy or a busy disk
        order = [*tools[run % len(tools) :], *tools[: run % len(tools)]]
        for scenario in SCENARIOS:
            for tool in order:
                prepare(tool, scenario, run, package, nonce)
                log = logs / f"r{run + 1}-{scenario}-{tool.name}.log"
                conditions.sample(tool.docker)
                seconds, parts, notes = tool.build(log)
                size = tool.docker.image_size(tool.image())
                parts = {k: round(v, 2) for k, v in parts.items()}
                rel = str(log.relative_to(REPO))
                samples.append(
                    Sample(run + 1, scenario, tool.name, round(seconds, 2), size, parts, notes, rel)
                )
                split = ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())
                detail = "; ".join(shorten(x) for x in (split, *notes) if x)
                out(
                    f"  run {run + 1} {TITLES[scenario]:<11} {tool.name:<14} {seconds:6.1f} s "
                    f"{size / 1e6:5.0f} MB  {detail}"
                )
    return samples


def measure(
    tools: Sequence[Tool],
    runs: int,
    package: str,
    nonce: str,
    conditions: Conditions,
    *,
    cache_before: set[str],
    workdir: Path,
) -> tuple[list[Sample], str | None]:
    """Snapshot the code under test, run the matrix, and clean up whatever happens
    (``cache_before``: the build cache ids from before the bench; ``workdir``: its
    temporary directory). Returns the samples and why the bench stopped early, if it did;
    one that stopped early has no samples (``run_matrix`` hands them over only when it
    completes), and its latest.json says so."""
    samples: list[Sample] = []
    error: str | None = None
    try:
        for tool in tools:
            if isinstance(tool, Warpdrive):
                tool.snapshot()
        samples = run_matrix(tools, runs, package, nonce, conditions)
    except BenchError as exc:
        error = str(exc)
    except KeyboardInterrupt:
        error = "interrupted"
    finally:
        cleanup(tools, cache_before, workdir)
    return samples, error


def cleanup(tools: Sequence[Tool], cache_before: set[str], workdir: Path) -> None:
    """Remove what the bench made: every tool's images (and nox-warpdrive's volume), the
    peers' build cache, the app copies. Says what it could not remove."""
    out("bench: cleaning up")
    leftovers: list[str] = []
    for tool in tools:
        try:
            leftovers += tool.cleanup()
        except BenchError as exc:
            leftovers.append(str(exc))
    docker = tools[0].docker if tools else None
    if docker is not None:
        kept = prune_cache(docker, cache_before, [t for t in tools if isinstance(t, Peer)])
        if kept:
            leftovers.append(f"{kept} build cache record(s)")
    shutil.rmtree(workdir, ignore_errors=True)
    if leftovers:
        out("bench: could not remove: " + "; ".join(leftovers))
