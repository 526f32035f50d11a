"""The order of the builds (interleaved, the first tool rotating from run to run), what a
failure or Ctrl-C leaves, and the clean-up. The tools and the engine are faked."""

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
from bench.common import BenchError  # noqa: E402
from bench.dockercli import Docker  # noqa: E402
from bench.matrix import make_tools, measure, run_matrix, shorten  # noqa: E402
from bench.peers import Peer  # noqa: E402
from bench.report import Conditions  # noqa: E402
from bench.tools import Tool, Warpdrive  # noqa: E402


@dataclass(frozen=True)
class FakeDocker(Docker):
    """An idle engine with no build cache; every image is 50 MB."""

    calls: list[tuple[str, ...]] = field(default_factory=list)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        return subprocess.CompletedProcess([self.cli, *args], 0, "", "")

    def image_size(self, ref: str) -> int:
        return 50_000_000

    def build_cache(self) -> list[dict[str, str]]:
        return []


class FakeTool(Tool):
    """Records what the scenarios do to it; a build takes a second."""

    def __init__(self, name: str, docker: Docker, events: list[str], fail: str = "") -> None:
        self.name = name
        super().__init__(docker, Path("/nonexistent"), make_app(None, None, None))
        self.events = events
        self.fail = fail
        self.cleaned = False

    def reset(self, run: int) -> None:
        self.events.append(f"reset {self.name} {run}")

    def edit_code(self, stamp: str) -> None:
        self.events.append(f"edit {self.name} {stamp}")

    def add_package(self, package: str) -> None:
        self.events.append(f"add {self.name} {package}")

    def build(self, log: Path) -> tuple[float, dict[str, float], tuple[str, ...]]:
        self.events.append(f"build {self.name} {log.name}")
        if self.fail == log.name:
            raise BenchError("boom")
        if self.fail == "interrupt":
            raise KeyboardInterrupt
        return 1.234, {"image": 1.234}, ("a note",)

    def image(self) -> str:
        return f"{self.name}:latest"

    def cleanup(self) -> list[str]:
        self.cleaned = True
        return []


def test_shorten_cuts_long_lines_with_an_ellipsis() -> None:
    assert shorten("x" * 110) == "x" * 110
    assert shorten("x" * 111) == "x" * 109 + "…"
    assert shorten("abcdef", 4) == "abc…"


def test_make_tools_keeps_the_order_given(tmp_path: Path) -> None:
    app = make_app(None, None, None)
    tools = make_tools(["layered", "nox-warpdrive"], FakeDocker("d"), tmp_path, app, tmp_path, "n")
    assert [type(t) for t in tools] == [Peer, Warpdrive]
    assert [t.root for t in tools] == [tmp_path / "layered", tmp_path / "nox-warpdrive"]


def test_builds_are_interleaved_and_the_first_tool_rotates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    events: list[str] = []
    docker = FakeDocker("d")
    tools = [FakeTool("a", docker, events), FakeTool("b", docker, events)]
    conditions = Conditions()
    samples = run_matrix(tools, 2, "httpx", "n", conditions)
    builds = [e for e in events if e.startswith("build")]
    assert builds[:3] == [
        "build a r1-cold-a.log",
        "build b r1-cold-b.log",
        "build a r1-no-change-a.log",
    ]
    assert builds[8:10] == ["build b r2-cold-b.log", "build a r2-cold-a.log"]
    assert events[:2] == ["reset a 0", "build a r1-cold-a.log"]
    assert "edit b n-1" in events and "add a httpx" in events
    assert len(samples) == 16 and len(conditions.load1) == 16
    first = samples[0]
    assert (first.run, first.scenario, first.tool, first.seconds, first.size) == (
        1,
        "cold",
        "a",
        1.23,
        50_000_000,
    )
    assert first.parts == {"image": 1.23} and first.log == "bench/results/logs/r1-cold-a.log"
    line = capsys.readouterr().out.splitlines()[0]
    assert line == "  run 1 cold        a                 1.2 s    50 MB  image 1.2 s; a note"


@pytest.mark.parametrize(
    ("fail", "error"), [("r1-code-change-b.log", "boom"), ("interrupt", "interrupted")]
)
def test_a_stopped_bench_cleans_up_and_says_why(tmp_path: Path, fail: str, error: str) -> None:
    events: list[str] = []
    docker = FakeDocker("d")
    tools = [FakeTool("a", docker, events), FakeTool("b", docker, events, fail)]
    workdir = tmp_path / "work"
    workdir.mkdir()
    samples, why = measure(
        tools, 1, "httpx", "n", Conditions(), cache_before=set(), workdir=workdir
    )
    assert (samples, why) == ([], error)
    assert all(t.cleaned for t in tools)
    assert not workdir.exists()
