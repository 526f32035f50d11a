"""From samples to RESULTS.md: medians per tool and scenario, the ratio to the reference
peer, the markdown tables, and the machine's conditions while the bench ran.

Pure functions of the samples (no engine, no clock), so a saved latest.json gives the
same RESULTS.md again (``--report-only``)."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .common import (
    EXAMPLE_CODE_FILE,
    EXAMPLE_DESCRIPTION,
    PEERS,
    REFERENCE,
    SCENARIOS,
    TITLES,
    TOOLS,
    WARPDRIVE,
)

if TYPE_CHECKING:
    from .dockercli import Docker


@dataclass(frozen=True)
class Sample:
    """One build: which run, scenario and tool, its seconds and image size, the parts of
    the seconds the tool reported, notes, and its log (relative to the checkout)."""

    run: int
    scenario: str
    tool: str
    seconds: float
    size: int
    parts: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    log: str = ""


def median(values: Sequence[float]) -> float:
    """The median as a float; NaN for no values rather than statistics' error."""
    return float(statistics.median(values)) if values else float("nan")


@dataclass(frozen=True)
class Cell:
    """One tool in one scenario: medians over the runs."""

    seconds: float
    size: int
    parts: dict[str, float]
    runs: int
    ratio: float | None = None


def median_cell(samples: Sequence[Sample]) -> Cell:
    """The medians of one tool's samples in one scenario (a part only over the samples
    that report it), without a ratio yet."""
    part_names = sorted({k for s in samples for k in s.parts})
    return Cell(
        seconds=round(median([s.seconds for s in samples]), 2),
        size=int(median([float(s.size) for s in samples])),
        parts={
            k: round(median([s.parts[k] for s in samples if k in s.parts]), 2) for k in part_names
        },
        runs=len(samples),
    )


def summarize(samples: Sequence[Sample]) -> dict[str, dict[str, Cell]]:
    """tool -> scenario -> medians, with the ratio to the reference peer."""
    cells: dict[str, dict[str, Cell]] = {}
    for tool in TOOLS:
        for scenario in SCENARIOS:
            mine = [s for s in samples if s.tool == tool and s.scenario == scenario]
            if mine:
                cells.setdefault(tool, {})[scenario] = median_cell(mine)
    reference = cells.get(REFERENCE, {})
    return {
        tool: {
            scenario: replace(
                cell,
                ratio=round(cell.seconds / reference[scenario].seconds, 2)
                if scenario in reference and reference[scenario].seconds > 0
                else None,
            )
            for scenario, cell in row.items()
        }
        for tool, row in cells.items()
    }


def seconds(value: float) -> str:
    """One decimal; two below a second, where BuildKit's no-op builds live."""
    return f"{value:.2f}" if value < 1 else f"{value:.1f}"


def tools_table(table: Mapping[str, Mapping[str, Cell]]) -> list[str]:
    """The main table's lines: a row per tool, a column per scenario (seconds and the
    ratio to the reference), and the image size after the cold build."""
    head = ["tool", *(TITLES[s] for s in SCENARIOS), "image size"]
    lines = [
        "| " + " | ".join(head) + " |",
        "| --- | " + " | ".join("---:" for _ in SCENARIOS) + " | ---: |",
    ]
    for tool in TOOLS:
        row = table.get(tool)
        if not row:
            continue
        cells = [f"**{tool}**" if tool == WARPDRIVE else tool]
        for scenario in SCENARIOS:
            cell = row.get(scenario)
            if cell is None:
                cells.append("–")
            elif cell.ratio is None:
                cells.append(seconds(cell.seconds))
            else:
                cells.append(f"{seconds(cell.seconds)} ({cell.ratio:.2f}×)")
        sized = row.get("cold") or next(iter(row.values()))
        cells.append(f"{sized.size / 1e6:.0f} MB")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def split_table(row: Mapping[str, Cell]) -> list[str]:
    """nox-warpdrive's one command split into the steps it reports, per scenario."""
    lines = [
        "",
        f"{WARPDRIVE}, split (seconds):",
        "",
        "| scenario | `nox -s image` | of which wheelhouse | of which deps layer "
        "| of which app layer |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for scenario in SCENARIOS:
        cell = row.get(scenario)
        if cell is None:
            continue
        row_cells = [TITLES[scenario]] + [
            seconds(cell.parts[k]) if k in cell.parts else "–"
            for k in ("image", "wheelhouse", "deps", "app")
        ]
        lines.append("| " + " | ".join(row_cells) + " |")
    return lines


@dataclass(frozen=True)
class BestPeer:
    """The fastest peer in one scenario, and nox-warpdrive's ratio to it (None when
    nox-warpdrive was not measured there or the peer took no time)."""

    peer: str
    seconds: float
    ratio: float | None


def best_peers(table: Mapping[str, Mapping[str, Cell]]) -> dict[str, BestPeer]:
    """scenario -> the fastest peer by median (a tie goes to the first in PEERS).

    The reference column keeps RESULTS.md comparable with its history; this is the
    harder comparison (issue 24's targets are against the best peer per scenario)."""
    best: dict[str, BestPeer] = {}
    for scenario in SCENARIOS:
        measured = [(table[p][scenario].seconds, p) for p in PEERS if scenario in table.get(p, {})]
        if not measured:
            continue
        fastest, peer = min(measured, key=lambda m: m[0])
        ours = table.get(WARPDRIVE, {}).get(scenario)
        ratio = round(ours.seconds / fastest, 2) if ours is not None and fastest > 0 else None
        best[scenario] = BestPeer(peer, fastest, ratio)
    return best


def best_peer_table(best: Mapping[str, BestPeer]) -> list[str]:
    """nox-warpdrive against the fastest peer of each scenario."""
    lines = [
        "",
        f"{WARPDRIVE} against the fastest peer of each scenario:",
        "",
        "| scenario | fastest peer | its seconds | ratio |",
        "| --- | --- | ---: | ---: |",
    ]
    for scenario, b in best.items():
        ratio = "–" if b.ratio is None else f"{b.ratio:.2f}×"
        lines.append(f"| {TITLES[scenario]} | {b.peer} | {seconds(b.seconds)} | {ratio} |")
    return lines


def markdown_tables(table: Mapping[str, Mapping[str, Cell]]) -> str:
    """The tables RESULTS.md shows (and the bench prints at the end)."""
    lines = tools_table(table)
    wd = table.get(WARPDRIVE)
    best = best_peers(table)
    if wd and best:
        lines += best_peer_table(best)
    if wd:
        lines += split_table(wd)
    return "\n".join(lines)


@dataclass
class Conditions:
    """What else the machine was doing: sampled just before every build."""

    load1: list[float] = field(default_factory=list)
    foreign_containers: list[int] = field(default_factory=list)

    def sample(self, docker: Docker) -> None:
        """The load average and the engine's running containers, now."""
        self.load1.append(round(os.getloadavg()[0], 2))
        self.foreign_containers.append(docker.running_containers())

    def describe(self, cpus: int) -> str:
        """The conditions line of RESULTS.md."""
        if not self.load1:
            return "not sampled"
        busy = sum(1 for n in self.foreign_containers if n)
        return (
            f"load average (1 min) at the build starts: median {median(self.load1):.1f}, "
            f"max {max(self.load1):.1f}, on {cpus} CPUs (the bench's own builds count); "
            f"other containers running on the engine at {busy} of "
            f"{len(self.foreign_containers)} build starts"
        )


@dataclass(frozen=True)
class Report:
    """RESULTS.md's header facts (also saved in latest.json, in this order)."""

    date: str
    command: str
    host: str
    revision: str
    runs: int
    package: str
    total_seconds: float
    app: str = EXAMPLE_DESCRIPTION
    code_file: str = EXAMPLE_CODE_FILE


def results_markdown(report: Report, tables: str, conditions: str) -> str:
    """RESULTS.md: the header facts, how to read the tables, the tables."""
    return f"""# Build-time benchmark

- command: `{report.command}`
- date: {report.date}
- machine: {report.host}
- nox-warpdrive: {report.revision}
- runs: {report.runs} per cell (medians shown); total wall time {report.total_seconds / 60:.1f} min
- conditions: {conditions}

The app is {report.app}; `code change` edits `{report.code_file}`, `add package` appends
`{report.package}` to requirements.txt. Seconds, with the ratio to the `{REFERENCE}` peer in
brackets (below 1 is faster), and {WARPDRIVE}'s ratio to the fastest peer of each scenario
below; image size is `docker image inspect .Size` after the cold
build. Method, peers, and what "cold" means for each: [README.md](README.md).

{tables}

Numbers are noisy: the machine is small, its Docker engine is shared with other people's
builds, and PyPI is reached through a TLS proxy. With one run, differences of a few
seconds or under ~20 % mean little; `nox -s bench -- --runs 3` gives medians. For the
sub-second no-change builds the ratio mostly measures start-up cost.
"""


def report_from_json(path: Path) -> str:
    """RESULTS.md again from a saved latest.json (after changing the format)."""
    data = json.loads(path.read_text())
    samples = [Sample(**{**s, "notes": tuple(s.get("notes", ()))}) for s in data["samples"]]
    names = {f.name for f in dataclasses.fields(Report)}
    fields = {k: data[k] for k in names if k in data}
    conditions = Conditions(**data["conditions"])
    cpus = int(str(data["host"]).split(" ", 1)[0]) if str(data["host"])[:1].isdigit() else 0
    tables = markdown_tables(summarize(samples))
    return results_markdown(Report(**fields), tables, conditions.describe(cpus))
