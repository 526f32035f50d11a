"""The tables of ``nox -s bench -- --platforms``: samples to medians, the ratios the
issue sets targets for, and the markdown section of RESULTS.md.

Pure functions of the samples (no engine, no clock), unit-tested in
tests/unit/test_bench_platforms.py. A build the bench stopped at its timeout is kept as a
lower bound (``> 600 s``), and a ratio with one is shown as the bound it gives."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .common import WARPDRIVE

#: the peers built for the other platform, emulated (the issue names these two)
EMULATED_PEERS = ("buildkit-cache", "uv")
PLATFORM_TOOLS = (WARPDRIVE, *EMULATED_PEERS)
PLATFORM_SCENARIOS = ("cold", "code-change")
SCENARIO_TITLES = {"cold": "cold", "code-change": "code change"}

#: the app variants: the app as it is, and with psycopg2's binary wheels instead of its
#: sdist (every wheel of the example exists for aarch64 then)
VARIANTS = ("as-is", "binary")
VARIANT_TITLES = {
    "as-is": "as it is (psycopg2 sdist compiled)",
    "binary": "psycopg2-binary (every wheel exists for aarch64)",
}
_PSYCOPG2 = re.compile(r"^psycopg2(?=\s*(?:[=<>!~;\[]|$))", re.MULTILINE | re.IGNORECASE)

BEGIN = "<!-- platforms: written by `nox -s bench -- --platforms` -->"
END = "<!-- /platforms -->"


def binary_requirements(text: str) -> str:
    """``requirements.txt`` with ``psycopg2`` (an sdist: compiled for every platform)
    replaced by ``psycopg2-binary`` of the same version spec (manylinux wheels for x86_64
    and aarch64). Not psycopg2-binary itself, nor other names that start so."""
    new, count = _PSYCOPG2.subn("psycopg2-binary", text)
    if not count:
        raise ValueError("no psycopg2 requirement to replace with psycopg2-binary")
    return new


def arch(platform: str) -> str:
    """``linux/arm64`` -> ``arm64`` (``linux/arm/v7`` -> ``arm/v7``): the column names."""
    return platform.split("/", 1)[1] if "/" in platform else platform


def parse_platform_list(text: str) -> tuple[str, ...]:
    """``--platforms``: a comma list of two or more distinct ``os/arch[/variant]``, in
    OCI names (``x86_64``/``aarch64`` taken for amd64/arm64). ValueError says why not."""
    aliases = {"x86_64": "amd64", "aarch64": "arm64"}
    found: list[str] = []
    for item in (t.strip().lower() for t in text.split(",")):
        if not item:
            continue
        parts = item.split("/")
        if len(parts) not in (2, 3) or not all(re.fullmatch(r"[a-z0-9_.-]+", p) for p in parts):
            raise ValueError(f"{item!r} is not a platform (OS/ARCH[/VARIANT], e.g. linux/arm64)")
        parts[1] = aliases.get(parts[1], parts[1])
        name = "/".join(parts)
        if name not in found:
            found.append(name)
    if len(found) < 2:
        raise ValueError("--platforms names two platforms or more, e.g. linux/amd64,linux/arm64")
    return tuple(found)


@dataclass(frozen=True)
class PlatformSample:
    """One build: the app variant, tool, scenario, the platforms it built, its seconds
    (the timeout's when ``timed_out``), the parts nox-warpdrive reported per platform,
    and why it failed, if it did."""

    variant: str
    tool: str
    scenario: str
    platforms: tuple[str, ...]
    seconds: float
    timed_out: bool = False
    error: str = ""
    parts: dict[str, float] = field(default_factory=dict)
    log: str = ""
    run: int = 1
    #: the 1-minute load average when the build started (the engine is shared)
    load: float = math.nan


def load_line(samples: Sequence[PlatformSample]) -> str:
    """The machine's load at the build starts, for the section's head ("" if unknown)."""
    loads = [s.load for s in samples if not math.isnan(s.load)]
    if not loads:
        return ""
    return (
        f"load average (1 min) at the {len(loads)} build starts: median "
        f"{statistics.median(loads):.1f}, max {max(loads):.1f} (other work on the engine counts)"
    )


@dataclass(frozen=True)
class Value:
    """A median, or a lower bound when a build ran into the timeout; NaN: none."""

    seconds: float = math.nan
    over: bool = False
    failed: bool = False

    def __str__(self) -> str:
        if self.failed:
            return "failed"
        if math.isnan(self.seconds):
            return "–"
        text = f"{self.seconds:.1f} s" if self.seconds < 100 else f"{self.seconds:.0f} s"
        return ("> " if self.over else "") + text


Key = tuple[str, str, str, tuple[str, ...]]  # variant, tool, scenario, platforms


def summarize(samples: Sequence[PlatformSample]) -> dict[Key, Value]:
    """The median per (variant, tool, scenario, platforms); a lower bound when any run
    timed out (the timed-out runs count with the timeout), failed when none finished."""
    groups: dict[Key, list[PlatformSample]] = {}
    for s in samples:
        groups.setdefault((s.variant, s.tool, s.scenario, s.platforms), []).append(s)
    values: dict[Key, Value] = {}
    for key, group in groups.items():
        usable = [s for s in group if not s.error]
        if not usable:
            values[key] = Value(failed=True)
            continue
        median = float(statistics.median(s.seconds for s in usable))
        values[key] = Value(median, over=any(s.timed_out for s in usable))
    return values


@dataclass(frozen=True)
class Ratio:
    """A ratio the table shows: what over what, and the issue's target (at most)."""

    title: str
    num: Key
    den: Key
    target: float | None = None

    def value(self, values: Mapping[Key, Value]) -> str:
        """``0.25``, ``> 1.20`` (the numerator timed out), ``< 0.30`` (the denominator
        did), ``?`` (both), ``–`` (one is missing)."""
        n, d = values.get(self.num, Value()), values.get(self.den, Value())
        if n.failed or d.failed or math.isnan(n.seconds) or math.isnan(d.seconds):
            return "–"
        if d.seconds <= 0:
            return "–"
        if n.over and d.over:
            return "?"
        ratio = n.seconds / d.seconds
        return ("> " if n.over else "< " if d.over else "") + f"{ratio:.2f}"

    def met(self, values: Mapping[Key, Value]) -> str:
        """Whether the target is met: yes, no, or ? (no target, no number, or a bound
        that does not decide it)."""
        shown = self.value(values)
        if self.target is None or shown in ("–", "?"):
            return ""
        ratio = float(shown.lstrip("<> "))
        if shown.startswith(">"):
            return "no" if ratio >= self.target else "?"
        if shown.startswith("<"):
            return "yes" if ratio <= self.target else "?"
        return "yes" if ratio <= self.target else "no"


def ratios(variant: str, native: str, foreign: str) -> list[Ratio]:
    """The issue's ratios for one app variant. Targets: with every wheel there for the
    other CPU, its cold build at most 1.5x the native one and 0.3x an emulated peer's;
    with an sdist to compile, no slower than the peers; a code change for both
    platforms at most 1.3x one (the native platform's, what a build without platforms
    does)."""
    wheels = variant == "binary"
    a, b = arch(native), arch(foreign)
    both = (native, foreign)
    own = (native,)
    other = (foreign,)
    found: list[Ratio] = [
        Ratio(
            f"{b} cold / {a} cold",
            (variant, WARPDRIVE, "cold", other),
            (variant, WARPDRIVE, "cold", own),
            1.5 if wheels else None,
        )
    ]
    for peer in EMULATED_PEERS:
        found.append(
            Ratio(
                f"{b} cold / {peer} {b} cold (emulated)",
                (variant, WARPDRIVE, "cold", other),
                (variant, peer, "cold", other),
                0.3 if wheels else 1.0,
            )
        )
    found.append(
        Ratio(
            f"{a}+{b} cold / {b} cold",
            (variant, WARPDRIVE, "cold", both),
            (variant, WARPDRIVE, "cold", other),
        )
    )
    found.append(
        Ratio(
            f"{a}+{b} code change / {a} code change",
            (variant, WARPDRIVE, "code-change", both),
            (variant, WARPDRIVE, "code-change", own),
            1.3,
        )
    )
    for peer in EMULATED_PEERS:
        found.append(
            Ratio(
                f"{b} code change / {peer} {b} code change (emulated)",
                (variant, WARPDRIVE, "code-change", other),
                (variant, peer, "code-change", other),
            )
        )
    return found


def columns(native: str, foreign: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """The time table's columns: (title, tool, platforms)."""
    a, b = arch(native), arch(foreign)
    cols = [
        (f"nox-warpdrive {a}", WARPDRIVE, (native,)),
        (f"nox-warpdrive {b}", WARPDRIVE, (foreign,)),
        (f"nox-warpdrive {a}+{b}", WARPDRIVE, (native, foreign)),
    ]
    cols += [(f"{peer} {b} (emulated)", peer, (foreign,)) for peer in EMULATED_PEERS]
    return cols


def time_table(
    values: Mapping[Key, Value], variants: Sequence[str], native: str, foreign: str
) -> str:
    """Seconds per app variant and scenario, one column per tool and platforms."""
    cols = columns(native, foreign)
    lines = [
        "| app | build | " + " | ".join(c[0] for c in cols) + " |",
        "| --- | --- |" + " ---: |" * len(cols),
    ]
    for variant in variants:
        for scenario in PLATFORM_SCENARIOS:
            cells = [str(values.get((variant, t, scenario, p), Value())) for _, t, p in cols]
            title = VARIANT_TITLES.get(variant, variant)
            lines.append(f"| {title} | {SCENARIO_TITLES[scenario]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_table(
    values: Mapping[Key, Value], variants: Sequence[str], native: str, foreign: str
) -> str:
    """The ratios (below 1: nox-warpdrive's build is faster), with the issue's targets."""
    lines = ["| app | ratio | value | target | met |", "| --- | --- | ---: | ---: | --- |"]
    for variant in variants:
        for r in ratios(variant, native, foreign):
            target = f"≤ {r.target}" if r.target is not None else ""
            lines.append(
                f"| {VARIANT_TITLES.get(variant, variant)} | {r.title} | {r.value(values)} | "
                f"{target} | {r.met(values)} |"
            )
    return "\n".join(lines)


def parts_lines(samples: Sequence[PlatformSample]) -> list[str]:
    """Where nox-warpdrive's time went, per build (its step times per platform)."""
    lines = []
    for s in samples:
        if s.tool != WARPDRIVE or not s.parts:
            continue
        split = ", ".join(f"{k} {v:.1f} s" for k, v in s.parts.items())
        platforms = "+".join(arch(p) for p in s.platforms)
        lines.append(
            f"- {VARIANT_TITLES.get(s.variant, s.variant)}, {SCENARIO_TITLES[s.scenario]}, "
            f"{platforms} (run {s.run}): {split}"
        )
    return lines


def section(
    samples: Sequence[PlatformSample],
    variants: Sequence[str],
    native: str,
    foreign: str,
    meta: Mapping[str, str],
) -> str:
    """The RESULTS.md section (also printed, and written to results/platforms.md): the
    lead pastes its tables into the README."""
    values = summarize(samples)
    failed = [s for s in samples if s.error]
    notes = "".join(
        f"- failed: {s.tool} {'+'.join(arch(p) for p in s.platforms)} "
        f"{SCENARIO_TITLES[s.scenario]} ({s.variant}): {s.error.splitlines()[0][:200]}\n"
        for s in failed
    )
    load = load_line(samples)
    meta = {**meta, **({"conditions": load} if load else {})}
    head = "\n".join(f"- {k}: {v}" for k, v in meta.items())
    return f"""{BEGIN}
## Multi-platform: {arch(native)} and {arch(foreign)} (`--platforms`)

{head}

nox-warpdrive: `nox -s image -- --platform P` on a copy of the app, for {arch(native)}
alone, {arch(foreign)} alone, then both: a cold build (no volume, no images, no probe
cache) and a code change after it (one line added to the code file). Peers:
`docker build --platform {foreign}` with BuildKit on the same engine (every RUN step
emulated), FROM the local {arch(foreign)} base images; cold: `--no-cache` and a cache
mount id never used. Wall-clock seconds of the whole command; `> N s`: stopped at the
bench's timeout. Method: [README.md](README.md#multi-platform).

{time_table(values, variants, native, foreign)}

{ratio_table(values, variants, native, foreign)}

{notes}{chr(10).join(parts_lines(samples))}
{END}
"""


def replace_section(text: str, new: str) -> str:
    """``text`` (RESULTS.md) with its multi-platform section replaced by ``new``, or
    ``new`` added before the measurement history (at the end when there is none)."""
    start = text.find(BEGIN)
    end = text.find(END, start)
    if start >= 0 and end >= 0:
        return text[:start] + new.rstrip("\n") + text[end + len(END) :]
    history = text.find("<!-- history: ")
    if history < 0:
        return text.rstrip("\n") + "\n\n" + new
    return text[:history] + new + "\n" + text[history:]


def platforms_section(text: str) -> str:
    """The multi-platform section of ``text`` with a newline (empty when it has none),
    so that the main bench keeps it when it writes RESULTS.md again."""
    start = text.find(BEGIN)
    end = text.find(END, start)
    return text[start : end + len(END)] + "\n" if start >= 0 and end >= 0 else ""


def step_parts(output: str, native: str) -> dict[str, float]:
    """nox-warpdrive's step times per platform from ``nox -s image`` output: each
    platform's part starts at ``warpdrive: == linux/arm64`` (one platform that is the
    engine's own prints no such line) and its summary says ``(wheelhouse 3.1 s, deps
    20.4 s, app 1.2 s; 25.0 s)``; ``early deps``: the deps layer made while the wheelhouse
    finished, overlapping it). Keys: ``arm64 wheelhouse`` and so on."""
    chunks = re.split(r"^.*warpdrive: == (\S+).*$", output, flags=re.MULTILINE)
    pieces: list[tuple[str, str]] = [(native, chunks[0])]
    pieces += [(chunks[i], chunks[i + 1]) for i in range(1, len(chunks) - 1, 2)]
    parts: dict[str, float] = {}
    for platform, text in pieces:
        m = re.search(r"built: [^(\n]*\(([^;\n]*); (\d+(?:\.\d+)?) s\)", text)
        if not m:
            continue
        for item in m.group(1).split(", "):
            found = re.fullmatch(r"(.+) (\d+(?:\.\d+)?) s", item.strip())
            if found:
                parts[f"{arch(platform)} {found.group(1)}"] = float(found.group(2))
    return parts
