"""The bench's command line (``nox -s bench -- ARGS``, ``python -m bench ARGS`` or
``python bench/run.py ARGS``) and its ``main``: check the machine, run the matrix, write
bench/results/latest.json and RESULTS.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from .apps import App, make_app
from .common import (
    BASE_IMAGE,
    BENCH_DIR,
    BUILDER_IMAGE,
    DEFAULT_PACKAGE,
    EXAMPLE_DESCRIPTION,
    REFERENCE,
    REPO,
    RESULTS_DIR,
    RUN_ID,
    SCENARIOS,
    TOOLS,
    BenchError,
    out,
    utc_now,
)
from .dockercli import Docker, find_docker
from .fresh_report import kept_sections
from .matrix import make_tools, measure
from .peers import find_ca_bundle
from .platforms_report import PLATFORM_TOOLS, VARIANTS, parse_platform_list
from .report import (
    Conditions,
    Report,
    Sample,
    markdown_tables,
    report_from_json,
    results_markdown,
    summarize,
)

#: the first line of the package's docstring (``--help`` shows it)
DESCRIPTION = "Side-by-side build times: nox-warpdrive against five Dockerfile peers."


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The bench's options; a bad ``--runs`` or ``--tools`` stops it before any build."""
    p = argparse.ArgumentParser(prog="nox -s bench --", description=DESCRIPTION)
    p.add_argument("--runs", type=int, default=1, help="runs per scenario (default 1)")
    p.add_argument(
        "--tools", default=",".join(TOOLS), help=f"comma-separated subset of {', '.join(TOOLS)}"
    )
    p.add_argument(
        "--package",
        default=DEFAULT_PACKAGE,
        help=f"the pure-Python requirement the add-package scenario appends "
        f"(default {DEFAULT_PACKAGE})",
    )
    p.add_argument(
        "--app",
        type=Path,
        help="build a copy of this app's directory instead of examples/wagtail-site "
        "(needs a requirements.txt, and --peer-cmd)",
    )
    p.add_argument(
        "--code-file",
        help="the .py file (relative to the app) the code-change scenario edits "
        "(default: the app's first module by path)",
    )
    p.add_argument(
        "--peer-cmd",
        help="what the Dockerfile peers' images start (their CMD), with --app",
    )
    p.add_argument(
        "--files",
        type=int,
        default=0,
        help="add this many generated small files to every copy of the app (default 0)",
    )
    p.add_argument(
        "--assets-mb",
        type=int,
        default=0,
        help="add this many MB of generated binary assets to every copy (default 0)",
    )
    p.add_argument(
        "--fresh-runner",
        action="store_true",
        help="CI on a fresh runner: nox-warpdrive's and the buildkit-cache peer's "
        "pipelines on an empty second engine, with a local registry (see bench/README.md)",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="the inner loop instead: --edits edits of the example's /health/ view through "
        "`nox -s run -- --watch` and through a uv Dockerfile rebuild + `docker run` loop, "
        "each timed from the write to the new text served, with a 50 ms poller "
        "(bench/watchbench.py)",
    )
    p.add_argument(
        "--platforms",
        help="multi-platform build times instead (e.g. linux/amd64,linux/arm64: the "
        "engine's platform and one other): nox-warpdrive for each alone and both, the "
        "buildkit-cache and uv peers built emulated for the other (bench/platforms.py)",
    )
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="with --platforms: the app as it is and/or with psycopg2-binary "
        f"(comma list of {', '.join(VARIANTS)}; default both)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=2400,
        help="with --platforms: seconds a build may take before it is stopped and counted "
        "as a lower bound (default 2400)",
    )
    p.add_argument(
        "--edits", type=int, default=20, help="with --watch: how many edits (default 20)"
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="only write bench/RESULTS.md again from bench/results/latest.json",
    )
    args = p.parse_args(list(argv))
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.edits < 1:
        p.error("--edits must be at least 1")
    if args.watch and (args.fresh_runner or args.report_only or args.app or args.files):
        p.error(
            "--watch times the example's view: no --fresh-runner, --report-only, --app, --files"
        )
    if args.files < 0 or args.assets_mb < 0:
        p.error("--files and --assets-mb cannot be negative")
    if args.platforms is not None:
        check_platform_args(p, args)
    unknown = [t for t in args.tools.split(",") if t not in TOOLS]
    if unknown:
        p.error(f"unknown tool(s) {', '.join(unknown)}; known: {', '.join(TOOLS)}")
    if args.fresh_runner and (args.report_only or args.tools != ",".join(TOOLS)):
        p.error(
            "--fresh-runner compares nox-warpdrive with buildkit-cache only: no --tools, "
            "no --report-only"
        )
    return args


def check_platform_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--platforms`` and its options: read into ``args`` (platforms, variants and tools
    as tuples), or the parser's error."""
    if args.fresh_runner or args.watch or args.files or args.assets_mb:
        p.error("--platforms: no --fresh-runner, --watch, --files, --assets-mb")
    try:
        args.platforms = parse_platform_list(args.platforms)
    except ValueError as exc:
        p.error(str(exc))
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if not variants or any(v not in VARIANTS for v in variants):
        p.error(f"--variants takes a comma list of {', '.join(VARIANTS)}")
    args.variants = tuple(dict.fromkeys(variants))
    if args.tools == ",".join(TOOLS):
        args.tools = ",".join(PLATFORM_TOOLS)
    tools = [t for t in args.tools.split(",") if t]
    if not tools or any(t not in PLATFORM_TOOLS for t in tools):
        p.error(f"--platforms compares {', '.join(PLATFORM_TOOLS)}: --tools takes those")
    if args.timeout <= 0:
        p.error("--timeout must be positive")


def command_line(argv: Sequence[str]) -> str:
    """The command RESULTS.md says was run: as the user typed it, through nox or not."""
    if os.environ.get("NOX_CURRENT_SESSION") == "bench":
        return "nox -s bench" + (" -- " + shlex.join(argv) if argv else "")
    return "python bench/run.py" + (" " + shlex.join(argv) if argv else "")


def tool_revision() -> str:
    """The nox-warpdrive revision measured, and whether the checkout had local edits."""

    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        )
        return proc.stdout.strip() if proc.returncode == 0 else ""

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "nox_warpdrive")
    return rev + (" with uncommitted changes to nox_warpdrive/" if dirty else "")


def check_base_images(docker: Docker) -> None:
    """Stop before any build when a base image is missing: the bench never builds or
    pulls them (they are not part of what it measures)."""
    missing = [ref for ref in (BASE_IMAGE, BUILDER_IMAGE) if docker.image_id(ref) is None]
    if missing:
        raise BenchError(
            f"missing base image(s) {', '.join(missing)}: run "
            "`bash scripts/base-images.sh` (or scripts/quickstart.sh) first"
        )


def host_description(docker: Docker, cpus: int) -> str:
    """The machine line of RESULTS.md (``--report-only`` reads the CPUs back from it)."""
    versions = docker.run("version", "--format", "{{.Client.Version}} / {{.Server.Version}}")
    return (
        f"{cpus} CPUs, {platform.system()} {platform.machine()}, Docker client / engine "
        f"{versions.stdout.strip()} (BuildKit built into the engine)"
    )


def start_logs(matrix: str, revision: str, docker: Docker) -> None:
    """An empty results/logs/ (a log per build of this bench only), and the first line of
    progress: what is measured, and with which code and CLI."""
    logs = RESULTS_DIR / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    out(
        f"bench: {matrix}; nox-warpdrive {revision}; docker CLI {docker.cli}; "
        f"logs in {logs.relative_to(REPO)}/"
    )


def report_only() -> int:
    """``--report-only``: RESULTS.md again from results/latest.json, written where the
    bench wrote it (the example's in bench/, another app's in results/)."""
    saved = json.loads((RESULTS_DIR / "latest.json").read_text())
    own = saved.get("app", EXAMPLE_DESCRIPTION) == EXAMPLE_DESCRIPTION
    markdown = BENCH_DIR / "RESULTS.md" if own else RESULTS_DIR / "RESULTS.md"
    kept = kept_sections(markdown.read_text()) if markdown.is_file() else ""
    text = report_from_json(RESULTS_DIR / "latest.json")
    markdown.write_text(text + ("\n" + kept if kept else ""))
    out(f"wrote {markdown.relative_to(REPO)}")
    return 0


def save_results(
    report: Report,
    samples: Sequence[Sample],
    error: str | None,
    names: Sequence[str],
    conditions: Conditions,
) -> str:
    """Write results/latest.json (also when the bench failed: it says so) and return the
    markdown tables of the medians."""
    table = summarize(samples)
    data = {
        "complete": error is None,
        "error": error,
        **asdict(report),
        "total_seconds": round(report.total_seconds, 1),
        "reference": REFERENCE,
        "scenarios": list(SCENARIOS),
        "tools": list(names),
        "medians": {t: {k: asdict(c) for k, c in row.items()} for t, row in table.items()},
        "samples": [asdict(s) for s in samples],
        "conditions": asdict(conditions),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "latest.json").write_text(json.dumps(data, indent=2) + "\n")
    return markdown_tables(table)


def write_markdown(app: App, report: Report, tables: str, conditions: str) -> Path:
    """RESULTS.md of a complete bench. bench/RESULTS.md is the example's table (the
    README quotes it); another app's goes next to the raw numbers."""
    markdown = BENCH_DIR / "RESULTS.md" if app.is_example else RESULTS_DIR / "RESULTS.md"
    kept = kept_sections(markdown.read_text()) if markdown.is_file() else ""
    text = results_markdown(report, tables, conditions)
    markdown.write_text(text + ("\n" + kept if kept else ""))
    return markdown


def main(argv: Sequence[str]) -> int:
    """The whole bench; 1 when a build failed or it was interrupted (after cleaning up
    and saving latest.json), 0 otherwise."""
    args = parse_args(argv)
    if args.report_only and args.platforms is not None:
        from .platforms import report_only_platforms

        return report_only_platforms()
    if args.report_only:
        return report_only()
    began = time.perf_counter()
    date = utc_now().strftime("%Y-%m-%d %H:%M UTC")
    app = make_app(args.app, args.code_file, args.peer_cmd, args.files, args.assets_mb)
    docker = find_docker()
    check_base_images(docker)
    ca = find_ca_bundle()
    if args.watch:
        from .watchbench import main_watch

        return main_watch(app, args.edits, docker, ca, command_line(argv), tool_revision())
    if args.platforms is not None:
        from .platforms import main_platforms

        meta = {
            "command": f"`{command_line(argv)}`",
            "date": date,
            "machine": host_description(docker, os.cpu_count() or 1),
            "nox-warpdrive": tool_revision(),
            "app": app.describe(),
            "runs": f"{args.runs} (medians shown)",
            "timeout": f"{args.timeout:.0f} s a build",
        }
        chosen = [t for t in PLATFORM_TOOLS if t in args.tools.split(",")]
        return main_platforms(
            app, args.platforms, args.variants, chosen, args.runs, args.timeout, docker, ca, meta
        )
    if args.fresh_runner:
        from .fresh import main_fresh

        package = args.package
        return main_fresh(app, args.runs, package, command_line(argv), tool_revision(), docker, ca)
    nonce = RUN_ID  # the suffix of every name this run gives in Docker
    names = [t for t in TOOLS if t in args.tools.split(",")]
    revision = tool_revision()
    cpus = os.cpu_count() or 1
    host = host_description(docker, cpus)
    start_logs(
        f"{len(names)} tools x {len(SCENARIOS)} scenarios x {args.runs} run(s)", revision, docker
    )
    conditions = Conditions()
    cache_before = {r.get("ID", "") for r in docker.build_cache()}
    workdir = Path(tempfile.mkdtemp(prefix="warpdrive-bench-"))
    tools = make_tools(names, docker, workdir, app, ca, nonce)
    samples, error = measure(
        tools,
        args.runs,
        args.package,
        nonce,
        conditions,
        cache_before=cache_before,
        workdir=workdir,
    )
    total = time.perf_counter() - began
    report = Report(
        date,
        command_line(argv),
        host,
        revision,
        args.runs,
        args.package,
        total,
        app.describe(),
        app.code_file,
    )
    tables = save_results(report, samples, error, names, conditions)
    out("")
    out(tables)
    out("")
    if error is not None:
        sys.stderr.write(f"bench failed: {error}\n")
        return 1
    markdown = write_markdown(app, report, tables, conditions.describe(cpus))
    out(
        f"ratios: to {REFERENCE} (below 1 is faster); total {total / 60:.1f} min; "
        f"wrote {(RESULTS_DIR / 'latest.json').relative_to(REPO)} and "
        f"{markdown.relative_to(REPO)}"
    )
    return 0
