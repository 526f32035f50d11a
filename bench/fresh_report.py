"""The fresh-runner bench's tables: medians per scenario, the ratio nox-warpdrive / peer
against the issue's targets, each pipeline split into its commands; and the section of
RESULTS.md they go in. Pure functions of the samples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .common import REFERENCE, WARPDRIVE
from .report import Cell, Sample, median_cell, seconds

FIRST = "first"
FRESH_SCENARIOS = ("no-change", "code-change", "add-package")
FRESH_TITLES = {
    FIRST: "first pipeline",
    "no-change": "nothing changed",
    "code-change": "code change",
    "add-package": "one package added",
}
#: the issue's targets: the highest ratio nox-warpdrive / peer that meets each
TARGETS = {"no-change": 1.0, "code-change": 0.5, "add-package": 0.2}
TOOLS = (WARPDRIVE, REFERENCE)
#: each tool's commands, in the order they run, as the split table names them
STEPS = {
    WARPDRIVE: (("image", "`nox -s image -- --cache-from I --push-only`"),),
    REFERENCE: (
        ("build", "`docker build --cache-from P` (inline cache)"),
        ("push", "`docker push P`"),
    ),
}
BEGIN = "<!-- fresh-runner: written by `nox -s bench -- --fresh-runner` -->"
END = "<!-- /fresh-runner -->"
#: the measurement history (earlier runs and one-off measurements, moved from the README):
#: neither bench writes it, both keep it as it is when they write RESULTS.md again
HISTORY_BEGIN = "<!-- history: "
HISTORY_END = "<!-- /history -->"


def fresh_cells(samples: Sequence[Sample]) -> dict[str, dict[str, Cell]]:
    """scenario -> tool -> medians (FIRST included when there are samples of it)."""
    cells: dict[str, dict[str, Cell]] = {}
    for scenario in (FIRST, *FRESH_SCENARIOS):
        for tool in TOOLS:
            mine = [s for s in samples if s.scenario == scenario and s.tool == tool]
            if mine:
                cells.setdefault(scenario, {})[tool] = median_cell(mine)
    return cells


def ratio(row: Mapping[str, Cell]) -> float | None:
    """nox-warpdrive's median over the peer's; None without both."""
    ours, peer = row.get(WARPDRIVE), row.get(REFERENCE)
    if ours is None or peer is None or peer.seconds <= 0:
        return None
    return round(ours.seconds / peer.seconds, 2)


def verdict(scenario: str, value: float | None) -> str:
    """Whether the ratio meets the issue's target for the scenario."""
    target = TARGETS.get(scenario)
    if target is None or value is None:
        return "–"
    return "yes" if value <= target else "**no**"


def fresh_tables(samples: Sequence[Sample]) -> str:
    """The main table (a row per scenario) and the split table (a row per scenario and
    tool, a column per command), as markdown."""
    cells = fresh_cells(samples)
    lines = [
        f"| fresh runner | {WARPDRIVE} | {REFERENCE} peer | ratio | target | met |",
        "| --- | ---: | ---: | ---: | ---: | :---: |",
    ]
    for scenario, row in cells.items():
        value = ratio(row)
        target = TARGETS.get(scenario)
        lines.append(
            "| "
            + " | ".join(
                [
                    FRESH_TITLES[scenario],
                    *(seconds(row[t].seconds) if t in row else "–" for t in TOOLS),
                    f"{value:.2f}×" if value is not None else "–",
                    f"≤ {target:.1f}×" if target is not None else "–",
                    verdict(scenario, value),
                ]
            )
            + " |"
        )
    lines += ["", "Each pipeline by command (seconds, medians):", ""]
    head = [f"{t}: {label}" for t in TOOLS for _, label in STEPS[t]]
    lines += [
        "| scenario | " + " | ".join(head) + " |",
        "| --- | " + " | ".join("---:" for _ in head) + " |",
    ]
    for scenario, row in cells.items():
        values = [
            seconds(row[t].parts[k]) if t in row and k in row[t].parts else "–"
            for t in TOOLS
            for k, _ in STEPS[t]
        ]
        lines.append(f"| {FRESH_TITLES[scenario]} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def fresh_markdown(facts: Mapping[str, object], tables: str) -> str:
    """The fresh-runner section of RESULTS.md, between its markers."""
    return f"""{BEGIN}
## Fresh CI runner

- command: `{facts["command"]}`
- date: {facts["date"]}
- fresh runner: {facts["engine"]}; a local registry (Debian's docker-registry) on loopback
- nox-warpdrive: {facts["revision"]}
- runs: {facts["runs"]} per scenario (medians shown; the first pipeline once per tool);
  total wall time {float(str(facts["total_seconds"])) / 60:.1f} min
- conditions: {facts["conditions"]}

The app is {facts["app"]}. An earlier pipeline of each tool built it on the empty engine
and pushed (the "first pipeline" row: a cold build, an empty registry). Then every
scenario starts on the engine emptied again (base images only: no volume, no image, no
build cache), the registry as that earlier pipeline left it, a fresh copy of the app and
no host cache, and runs the whole pipeline, pushes included: `code change` edits
`{facts["code_file"]}`, `one package added` appends `{facts["package"]}` to
requirements.txt. nox-warpdrive: `nox -s image -- --cache-from I --push-only` with
`wheelhouse-image = "W"` (built in the registry, nothing pulled, when only the app
layers change or packages were only added: then the wheelhouse is seeded from W, the
added wheels become one layer on the cache's deps layers, and the wheels it adds are
pushed to W; else built here and pushed); the peer:
`bench/peers/buildkit-cache.Dockerfile`,
`DOCKER_BUILDKIT=1 docker build --cache-from P --build-arg BUILDKIT_INLINE_CACHE=1 -t P`
(Debian's docker client, the engine's built-in BuildKit), then `docker push P`. Wall
clock seconds; the ratio is nox-warpdrive / peer (below 1 is faster); targets from issue
12. Method: [README.md](README.md#fresh-ci-runner).

{tables}
{END}
"""


def replace_section(text: str, section: str) -> str:
    """``text`` with its fresh-runner section replaced by ``section`` (added before the
    history, or at the end, when it has none): the rest of RESULTS.md is the main bench's."""
    start = text.find(BEGIN)
    end = text.find(END, start)
    if start < 0 or end < 0:
        history = history_section(text)
        text = text.replace(history, "") if history else text
        added = text.rstrip("\n") + ("\n\n" if text.strip() else "") + section
        return added + ("\n" + history if history else "")
    return text[:start] + section.rstrip("\n") + text[end + len(END) :]


def _section(text: str, begin: str, end_marker: str) -> str:
    """The part of ``text`` from ``begin`` to ``end_marker`` included, with a newline
    (empty when either marker is missing)."""
    start = text.find(begin)
    end = text.find(end_marker, start)
    if start < 0 or end < 0:
        return ""
    return text[start : end + len(end_marker)] + "\n"


def fresh_section(text: str) -> str:
    """The fresh-runner section of ``text`` (empty when it has none), so that the main
    bench keeps it when it writes RESULTS.md again."""
    return _section(text, BEGIN, END)


def history_section(text: str) -> str:
    """The measurement history of ``text`` (empty when it has none): written by hand,
    kept as it is by both benches."""
    return _section(text, HISTORY_BEGIN, HISTORY_END)


def kept_sections(text: str) -> str:
    """What the main bench keeps when it writes RESULTS.md again: the fresh-runner
    section, the multi-platform one (``--platforms``), then the history."""
    from .platforms_report import platforms_section

    kept = [s for s in (fresh_section(text), platforms_section(text), history_section(text)) if s]
    return "\n".join(kept)
