"""Side-by-side build times: nox-warpdrive against four Dockerfile peers.

Every tool builds its own copy of ``examples/wagtail-site`` through four scenarios, in
order: ``cold`` (nothing cached), ``no-change`` (rebuild at once), ``code-change`` (one .py
file edited) and ``add-package`` (one small pure-Python requirement appended). Runs are
interleaved: every tool does a scenario before any tool does the next one, so a slow
minute on a shared machine hits all of them. See bench/README.md for what "cold" means
for each tool and why.

    nox -s bench                  # one run
    nox -s bench -- --runs 3      # medians of three
    nox -s bench -- --app ../myapp --package httpx --peer-cmd "gunicorn app:app"

Writes bench/results/latest.json, one log per build under bench/results/logs/, and
bench/RESULTS.md. Everything the bench creates in Docker (images, the volume, its build
cache) and on disk (app copies) is removed at the end, also when a build fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
EXAMPLE = REPO / "examples" / "wagtail-site"
EXAMPLE_DESCRIPTION = (
    "a copy of `examples/wagtail-site` (Django 5.2, Wagtail 8.0.1, psycopg2 compiled from "
    "source, gunicorn)"
)
#: the file the code-change scenario edits in EXAMPLE
EXAMPLE_CODE_FILE = "mysite/urls.py"
#: what the peers' Dockerfiles start (their CMD), for EXAMPLE
EXAMPLE_PEER_CMD = ("gunicorn", "--bind", "0.0.0.0:8080", "mysite.wsgi:application")
CMD_LINE = re.compile(r"^CMD .*$", re.MULTILINE)
#: files the code-change scenario never picks on its own
NOT_APP_CODE = {"manage.py", "setup.py", "noxfile.py", "conftest.py"}
PEERS_DIR = BENCH_DIR / "peers"
RESULTS_DIR = BENCH_DIR / "results"

BASE_IMAGE = "warpdrive/python:3.11-bookworm"
BUILDER_IMAGE = "warpdrive/python-builder:3.11-bookworm"

SCENARIOS = ("cold", "no-change", "code-change", "add-package")
TITLES = {
    "cold": "cold",
    "no-change": "no change",
    "code-change": "code change",
    "add-package": "add package",
}
WARPDRIVE = "nox-warpdrive"
PEERS = ("s2i-style", "layered", "buildkit-cache", "multistage")
TOOLS = (WARPDRIVE, *PEERS)
REFERENCE = "buildkit-cache"
DEFAULT_PACKAGE = "django-environ"

#: the copy's [project].name: names the deps cache images ``warpdrive-deps/<name>:<key>``
PROJECT_NAME = "bench-site"
WD_IMAGE = "bench-warpdrive:latest"
WD_VOLUME = "bench-warpdrive"
WD_REFERENCES = ("bench-warpdrive", f"warpdrive-deps/{PROJECT_NAME}")
#: what an app copy leaves out (build outputs of a local run, caches)
COPY_IGNORE = ("__pycache__", "*.pyc", "db.sqlite3", "static", "media", ".nox", ".venv", "*.log")
CACHE_ID_ARG = re.compile(r"id=\$\{?CACHE_ID\}?")
CA_ENV_KEYS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT")
SYSTEM_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


class BenchError(Exception):
    """A failed step: the message says which, and where its log is."""


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --------------------------------------------------------------------------- docker


@dataclass(frozen=True)
class Docker:
    """The docker CLI the bench drives (one that can build with BuildKit)."""

    cli: str

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_BUILDKIT": "1"}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.cli, *args], capture_output=True, text=True, env=self.env(), check=False
        )
        if check and proc.returncode != 0:
            raise BenchError(f"`docker {shlex.join(args)}` failed: {proc.stderr.strip()}")
        return proc

    def image_id(self, ref: str) -> str | None:
        proc = self.run("image", "inspect", "--format", "{{.Id}}", ref, check=False)
        if proc.returncode != 0:
            return None
        return proc.stdout.strip() or None

    def image_size(self, ref: str) -> int:
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
        return len(self.run("ps", "--quiet", check=False).stdout.split())

    def build_cache(self) -> list[dict[str, str]]:
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


def find_ca_bundle() -> Path:
    for key in CA_ENV_KEYS:
        value = os.environ.get(key)
        if value and Path(value).is_file():
            return Path(value)
    for candidate in SYSTEM_CA_BUNDLES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise BenchError("no CA bundle found for the peers' builds: set SSL_CERT_FILE")


# --------------------------------------------------------------------------- running


@dataclass
class Step:
    """One timed command, its output appended to a log file."""

    seconds: float
    output: str


def timed(cmd: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path) -> Step:
    with log.open("a") as fh:
        fh.write(f"$ {shlex.join(cmd)}\n")
        fh.flush()
        start = log.stat().st_size
        began = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env=dict(env), stdout=fh, stderr=subprocess.STDOUT
        )
        try:
            returncode = proc.wait()
        except KeyboardInterrupt:
            # let the build stop as on Ctrl-C (its containers are removed in `finally`),
            # not be killed with its container still holding the volume
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        seconds = time.perf_counter() - began
        fh.write(f"# exit {returncode} after {seconds:.1f} s\n")
    with log.open() as fh:
        fh.seek(start)
        output = fh.read()
    if returncode != 0:
        tail = "\n".join("    " + line for line in output.splitlines()[-25:])
        raise BenchError(f"`{shlex.join(cmd)}` failed (exit {returncode}); log: {log}\n{tail}")
    return Step(seconds, output)


@dataclass(frozen=True)
class Sample:
    run: int
    scenario: str
    tool: str
    seconds: float
    size: int
    parts: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    log: str = ""


@dataclass(frozen=True)
class App:
    """The app every tool builds a copy of, and how the scenarios change it."""

    source: Path
    code_file: str  # relative POSIX path of the .py file the code change edits
    peer_cmd: tuple[str, ...]  # the peers' CMD

    def describe(self) -> str:
        if self.source == EXAMPLE:
            return EXAMPLE_DESCRIPTION
        return f"a copy of `{self.source}`"


def default_code_file(app: Path) -> str:
    """The .py file the code change edits when none is named: the app's first module (by
    path) that is not a launcher or a test; appending a constant to it changes no
    behaviour."""
    ignore = {"__pycache__", ".nox", ".venv", "venv", "node_modules", ".git"}
    found = sorted(
        p.relative_to(app).as_posix()
        for p in app.rglob("*.py")
        if not ignore.intersection(p.relative_to(app).parts)
        and p.name not in NOT_APP_CODE
        and not p.name.startswith("test")
    )
    if not found:
        raise BenchError(f"{app} has no .py file for the code-change scenario: pass --code-file")
    return found[0]


def make_app(source: Path | None, code_file: str | None, peer_cmd: str | None) -> App:
    """The bench's app: EXAMPLE unless --app names another one (a directory with a
    requirements.txt, what `nox -s image` builds)."""
    src = (source or EXAMPLE).resolve()
    if not (src / "requirements.txt").is_file():
        raise BenchError(f"{src} has no requirements.txt: --app takes an app's directory")
    if code_file is None:
        code_file = EXAMPLE_CODE_FILE if src == EXAMPLE else default_code_file(src)
    if not (src / code_file).is_file():
        raise BenchError(f"--code-file {code_file}: no such file in {src}")
    if peer_cmd is not None:
        cmd = tuple(shlex.split(peer_cmd))
    elif src == EXAMPLE:
        cmd = EXAMPLE_PEER_CMD
    else:
        raise BenchError(
            "--app needs --peer-cmd: the command the Dockerfile peers' images start, "
            'e.g. --peer-cmd "gunicorn --bind 0.0.0.0:8080 myapp.wsgi:application"'
        )
    if not cmd:
        raise BenchError("--peer-cmd is empty")
    return App(src, code_file, cmd)


class Tool:
    """One way of building the app: owns an app copy and the Docker objects it creates."""

    name = ""

    def __init__(self, docker: Docker, workdir: Path, app: App) -> None:
        self.docker = docker
        self.spec = app
        self.root = workdir / self.name
        self.app = self.root / "app"
        self.image_ids: set[str] = set()

    def fresh_copy(self) -> None:
        shutil.rmtree(self.app, ignore_errors=True)
        shutil.copytree(self.spec.source, self.app, ignore=shutil.ignore_patterns(*COPY_IGNORE))

    def edit_code(self, stamp: str) -> None:
        """A code-only change: a new module-level constant in one .py file."""
        with (self.app / self.spec.code_file).open("a") as fh:
            fh.write(f"\nBENCH_REVISION = {stamp!r}\n")

    def mark_run(self, marker: str) -> None:
        """A comment naming the run at the top of requirements.txt: every run's files
        differ, so no build reuses a layer an earlier run cached for the same text (the
        layered peer's "add package" did: its RUN step hit run 1's cache in run 2)."""
        path = self.app / "requirements.txt"
        path.write_text(f"# bench run {marker}\n" + path.read_text())

    def add_package(self, package: str) -> None:
        path = self.app / "requirements.txt"
        text = path.read_text()
        path.write_text(text + ("" if text.endswith("\n") else "\n") + package + "\n")

    def reset(self, run: int) -> None:
        """Cold state for this tool, and a fresh copy of the app."""
        raise NotImplementedError

    def build(self, log: Path) -> tuple[float, dict[str, float], tuple[str, ...]]:
        raise NotImplementedError

    def image(self) -> str:
        raise NotImplementedError

    def cleanup(self) -> list[str]:
        """Remove everything this tool created in Docker; returns what could not be."""
        raise NotImplementedError


class Warpdrive(Tool):
    name = WARPDRIVE

    def __init__(self, docker: Docker, workdir: Path, app: App) -> None:
        super().__init__(docker, workdir, app)
        self.xdg = self.root / "xdg-cache"
        self.src = self.root / "src"

    def env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(self.src), os.environ.get("PYTHONPATH")) if p)
        return {**os.environ, "XDG_CACHE_HOME": str(self.xdg), "PYTHONPATH": path}

    def snapshot(self) -> None:
        """Freeze the code under test: nox-warpdrive is installed editable, so an edit to
        the checkout during the bench would otherwise change the tool (and its cache keys)
        between two scenarios. PYTHONPATH comes before the editable finder."""
        shutil.copytree(
            REPO / "nox_warpdrive",
            self.src / "nox_warpdrive",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        # with bytecode, as an installed package has it (pip compiles at install): with
        # PYTHONDONTWRITEBYTECODE set every build would compile the whole package again
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(self.src / "nox_warpdrive")],
            check=True,
            capture_output=True,
        )
        proc = subprocess.run(
            [sys.executable, "-c", "import nox_warpdrive; print(nox_warpdrive.__file__)"],
            cwd=self.root,  # not the checkout: `-c` puts the working directory first
            capture_output=True,
            text=True,
            env=self.env(),
            check=False,
        )
        if not proc.stdout.strip().startswith(str(self.src)):
            raise BenchError(
                f"{sys.executable} does not import nox_warpdrive from the bench's snapshot "
                f"({proc.stdout.strip() or proc.stderr.strip()})"
            )

    def fresh_copy(self) -> None:
        super().fresh_copy()
        (self.app / "pyproject.toml").write_text(bench_pyproject(self.app / "pyproject.toml"))

    def remove_all(self) -> list[str]:
        ids = set(self.image_ids)
        for reference in WD_REFERENCES:
            ids.update(self.docker.images(reference))
        left = self.docker.remove_images(ids)
        self.image_ids.clear()
        self.docker.run("volume", "rm", "--force", WD_VOLUME, check=False)
        if self.docker.run("volume", "inspect", WD_VOLUME, check=False).returncode == 0:
            left.append(f"volume {WD_VOLUME}")
        return left

    def reset(self, run: int) -> None:
        left = self.remove_all()
        if left:
            raise BenchError(f"could not remove {', '.join(left)} for a cold start")
        # the host-side probe cache too: a cold start knows nothing about the images
        shutil.rmtree(self.xdg, ignore_errors=True)
        self.fresh_copy()
        self.mark_run(f"r{run}")

    def build(self, log: Path) -> tuple[float, dict[str, float], tuple[str, ...]]:
        """One command, what a user runs after any change: `nox -s image` builds what the
        wheelhouse lacks (cached, incremental), then the image."""
        env = self.env()
        nox = [sys.executable, "-m", "nox", "--no-color"]
        image = timed([*nox, "-s", "image"], cwd=self.app, env=env, log=log)
        parts = {"image": image.seconds}
        for step in ("wheelhouse", "deps", "app"):
            m = re.search(rf"[(,] ?{step} (\d+(?:\.\d+)?) s", image.output)
            if m:
                parts[step] = float(m.group(1))
        notes = [
            line.split("nox > ", 1)[-1].strip()
            for line in image.output.splitlines()
            if re.search(r"nox > image ", line)
        ]
        # remember every image made, so the ones a later build untags are removed too
        self.image_ids.update(self.docker.images(WD_REFERENCES[1]))
        image_id = self.docker.image_id(WD_IMAGE)
        if image_id:
            self.image_ids.add(image_id)
        return image.seconds, parts, tuple(notes)

    def image(self) -> str:
        return WD_IMAGE

    def cleanup(self) -> list[str]:
        return self.remove_all()


def toml_value(value: object) -> str:
    """A [tool.warpdrive] value written back as TOML (strings, booleans, numbers, lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise BenchError(f"cannot copy the [tool.warpdrive] value {value!r} into the bench's app")


def bench_pyproject(existing: Path) -> str:
    """The app copy's pyproject.toml: the bench's own name, image, volume and base images
    (so it removes only what it made), and the app's other [tool.warpdrive] settings
    (server, module, collectstatic, ...) as they are."""
    settings: dict[str, object] = {}
    if existing.is_file():
        import tomllib

        data = tomllib.loads(existing.read_text())
        table = data.get("tool", {}).get("warpdrive", {})
        settings = {k: v for k, v in table.items() if not isinstance(v, dict)}
    settings |= {
        "image": WD_IMAGE,
        "volume": WD_VOLUME,
        "base-image": BASE_IMAGE,
        "builder-image": BUILDER_IMAGE,
    }
    lines = [
        "[project]",
        f'name = "{PROJECT_NAME}"',
        'version = "0.1.0"',
        'requires-python = ">=3.11"',
        "",
        "[tool.warpdrive]",
        *(f"{key} = {toml_value(value)}" for key, value in settings.items()),
    ]
    return "\n".join(lines) + "\n"


class Peer(Tool):
    """A Dockerfile from bench/peers/, built with ``docker build`` and BuildKit."""

    def __init__(
        self, name: str, docker: Docker, workdir: Path, app: App, ca: Path, nonce: str
    ) -> None:
        self.name = name
        super().__init__(docker, workdir, app)
        self.template = PEERS_DIR / f"{name}.Dockerfile"
        self.dockerfile = self.root / "Dockerfile"
        self.tag = f"bench-peer-{name}:latest"
        self.ca = ca
        self.nonce = nonce
        self.cache_id = ""
        self.no_cache_next = False
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
        self.docker.remove_images({self.tag, *self.image_ids})
        self.image_ids.clear()
        self.cache_id = f"warpdrive-bench-{self.name}-{self.nonce}-r{run}"
        self.fresh_copy()
        self.mark_run(f"{self.nonce}-r{run}")
        self.render(self.cache_id)
        self.no_cache_next = True

    def build(self, log: Path) -> tuple[float, dict[str, float], tuple[str, ...]]:
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
        began = utc_now()
        try:
            step = timed([*cmd, str(self.app)], cwd=self.root, env=self.docker.env(), log=log)
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


# --------------------------------------------------------------------------- build cache


def parse_created(value: str) -> dt.datetime | None:
    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)?", value)
    if not m:
        return None
    fraction = (m.group(2) or ".0")[:7]
    return dt.datetime.strptime(m.group(1) + fraction, "%Y-%m-%d %H:%M:%S.%f").replace(
        tzinfo=dt.timezone.utc
    )


def our_cache_records(
    records: list[dict[str, str]], before: set[str], peers: Sequence[Peer]
) -> list[str]:
    """Build cache records the peers' builds made: new since the bench began, created
    during one of their builds, and for RUN steps with one of their commands."""
    intervals = [i for p in peers for i in p.intervals]
    commands = {c for p in peers for c in p.commands}
    ours = []
    for record in records:
        rid = record.get("ID", "")
        created = parse_created(record.get("CreatedAt", ""))
        if not rid or rid in before or created is None or record.get("InUse") == "true":
            continue
        if not any(a - dt.timedelta(seconds=1) <= created <= b for a, b in intervals):
            continue
        description = record.get("Description", "")
        if " from exec " in description:
            command = description.split(" from exec /bin/sh -c ", 1)[-1]
            if command not in commands:
                continue
        ours.append(rid)
    return ours


def depth(rid: str, parents: Mapping[str, str]) -> int:
    """How many ancestors a build cache record has."""
    n = 0
    while parents.get(rid) and n < 100:
        rid, n = parents[rid], n + 1
    return n


def prune_cache(docker: Docker, before: set[str], peers: Sequence[Peer]) -> int:
    """Remove the peers' build cache by record id (never a global prune: other builds
    may share the engine). A record goes only after its children, so deepest first."""
    left: list[str] = []
    for _ in range(4):
        records = docker.build_cache()
        left = our_cache_records(records, before, peers)
        if not left:
            break
        parents = {r.get("ID", ""): r.get("Parent", "") for r in records}
        for rid in sorted(left, key=lambda r: depth(r, parents), reverse=True):
            docker.run("builder", "prune", "--force", "--filter", f"id={rid}", check=False)
    return len(left)


# --------------------------------------------------------------------------- results


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


@dataclass(frozen=True)
class Cell:
    """One tool in one scenario: medians over the runs."""

    seconds: float
    size: int
    parts: dict[str, float]
    runs: int
    ratio: float | None = None


def summarize(samples: Sequence[Sample]) -> dict[str, dict[str, Cell]]:
    """tool -> scenario -> medians, with the ratio to the reference peer."""
    cells: dict[str, dict[str, Cell]] = {}
    for tool in TOOLS:
        for scenario in SCENARIOS:
            mine = [s for s in samples if s.tool == tool and s.scenario == scenario]
            if not mine:
                continue
            part_names = sorted({k for s in mine for k in s.parts})
            cells.setdefault(tool, {})[scenario] = Cell(
                seconds=round(median([s.seconds for s in mine]), 2),
                size=int(median([float(s.size) for s in mine])),
                parts={
                    k: round(median([s.parts[k] for s in mine if k in s.parts]), 2)
                    for k in part_names
                },
                runs=len(mine),
            )
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


def markdown_tables(table: Mapping[str, Mapping[str, Cell]]) -> str:
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
    wd = table.get(WARPDRIVE)
    if wd:
        lines += [
            "",
            f"{WARPDRIVE}, split (seconds):",
            "",
            "| scenario | `nox -s image` | of which wheelhouse | of which deps layer "
            "| of which app layer |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for scenario in SCENARIOS:
            cell = wd.get(scenario)
            if cell is None:
                continue
            row_cells = [TITLES[scenario]] + [
                seconds(cell.parts[k]) if k in cell.parts else "–"
                for k in ("image", "wheelhouse", "deps", "app")
            ]
            lines.append("| " + " | ".join(row_cells) + " |")
    return "\n".join(lines)


@dataclass
class Conditions:
    """What else the machine was doing: sampled just before every build."""

    load1: list[float] = field(default_factory=list)
    foreign_containers: list[int] = field(default_factory=list)

    def sample(self, docker: Docker) -> None:
        self.load1.append(round(os.getloadavg()[0], 2))
        self.foreign_containers.append(docker.running_containers())

    def describe(self, cpus: int) -> str:
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
    return f"""# Build-time benchmark

- command: `{report.command}`
- date: {report.date}
- machine: {report.host}
- nox-warpdrive: {report.revision}
- runs: {report.runs} per cell (medians shown); total wall time {report.total_seconds / 60:.1f} min
- conditions: {conditions}

The app is {report.app}; `code change` edits `{report.code_file}`, `add package` appends
`{report.package}` to requirements.txt. Seconds, with the ratio to the `{REFERENCE}` peer in
brackets (below 1 is faster); image size is `docker image inspect .Size` after the cold
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
    fields = {k: data[k] for k in Report.__dataclass_fields__ if k in data}
    conditions = Conditions(**data["conditions"])
    cpus = int(str(data["host"]).split(" ", 1)[0]) if str(data["host"])[:1].isdigit() else 0
    tables = markdown_tables(summarize(samples))
    return results_markdown(Report(**fields), tables, conditions.describe(cpus))


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="nox -s bench --", description=__doc__.split("\n")[0])
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
        "--report-only",
        action="store_true",
        help="only write bench/RESULTS.md again from bench/results/latest.json",
    )
    args = p.parse_args(list(argv))
    if args.runs < 1:
        p.error("--runs must be at least 1")
    unknown = [t for t in args.tools.split(",") if t not in TOOLS]
    if unknown:
        p.error(f"unknown tool(s) {', '.join(unknown)}; known: {', '.join(TOOLS)}")
    return args


def command_line(argv: Sequence[str]) -> str:
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
    missing = [ref for ref in (BASE_IMAGE, BUILDER_IMAGE) if docker.image_id(ref) is None]
    if missing:
        raise BenchError(
            f"missing base image(s) {', '.join(missing)}: run "
            "`bash scripts/base-images.sh` (or scripts/quickstart.sh) first"
        )


def shorten(text: str, width: int = 110) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


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
                if scenario == "cold":
                    tool.reset(run)
                elif scenario == "code-change":
                    tool.edit_code(f"{nonce}-{run}")
                elif scenario == "add-package":
                    tool.add_package(package)
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


def cleanup(tools: Sequence[Tool], cache_before: set[str], workdir: Path) -> None:
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


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.report_only:
        saved = json.loads((RESULTS_DIR / "latest.json").read_text())
        own = saved.get("app", EXAMPLE_DESCRIPTION) == EXAMPLE_DESCRIPTION
        markdown = BENCH_DIR / "RESULTS.md" if own else RESULTS_DIR / "RESULTS.md"
        markdown.write_text(report_from_json(RESULTS_DIR / "latest.json"))
        out(f"wrote {markdown.relative_to(REPO)}")
        return 0
    began = time.perf_counter()
    date = utc_now().strftime("%Y-%m-%d %H:%M UTC")
    app = make_app(args.app, args.code_file, args.peer_cmd)
    docker = find_docker()
    check_base_images(docker)
    ca = find_ca_bundle()
    nonce = uuid.uuid4().hex[:8]
    names = [t for t in TOOLS if t in args.tools.split(",")]
    revision = tool_revision()
    versions = docker.run("version", "--format", "{{.Client.Version}} / {{.Server.Version}}")
    cpus = os.cpu_count() or 1
    host = (
        f"{cpus} CPUs, {platform.system()} {platform.machine()}, Docker client / engine "
        f"{versions.stdout.strip()} (BuildKit built into the engine)"
    )
    logs = RESULTS_DIR / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    out(
        f"bench: {len(names)} tools x {len(SCENARIOS)} scenarios x {args.runs} run(s); "
        f"nox-warpdrive {revision}; docker CLI {docker.cli}; logs in {logs.relative_to(REPO)}/"
    )
    conditions = Conditions()
    samples: list[Sample] = []
    error: str | None = None
    cache_before = {r.get("ID", "") for r in docker.build_cache()}
    workdir = Path(tempfile.mkdtemp(prefix="warpdrive-bench-"))
    tools: list[Tool] = [
        Warpdrive(docker, workdir, app)
        if name == WARPDRIVE
        else Peer(name, docker, workdir, app, ca, nonce)
        for name in names
    ]
    try:
        for tool in tools:
            if isinstance(tool, Warpdrive):
                tool.snapshot()
        samples = run_matrix(tools, args.runs, args.package, nonce, conditions)
    except BenchError as exc:
        error = str(exc)
    except KeyboardInterrupt:
        error = "interrupted"
    finally:
        cleanup(tools, cache_before, workdir)

    total = time.perf_counter() - began
    table = summarize(samples)
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
    data = {
        "complete": error is None,
        "error": error,
        **asdict(report),
        "total_seconds": round(total, 1),
        "reference": REFERENCE,
        "scenarios": list(SCENARIOS),
        "tools": names,
        "medians": {t: {k: asdict(c) for k, c in row.items()} for t, row in table.items()},
        "samples": [asdict(s) for s in samples],
        "conditions": asdict(conditions),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "latest.json").write_text(json.dumps(data, indent=2) + "\n")
    tables = markdown_tables(table)
    out("")
    out(tables)
    out("")
    if error is not None:
        sys.stderr.write(f"bench failed: {error}\n")
        return 1
    # bench/RESULTS.md is the example's table (the README quotes it); another app's goes
    # next to the raw numbers
    markdown = BENCH_DIR / "RESULTS.md" if app.source == EXAMPLE else RESULTS_DIR / "RESULTS.md"
    markdown.write_text(results_markdown(report, tables, conditions.describe(cpus)))
    out(
        f"ratios: to {REFERENCE} (below 1 is faster); total {total / 60:.1f} min; "
        f"wrote {(RESULTS_DIR / 'latest.json').relative_to(REPO)} and "
        f"{markdown.relative_to(REPO)}"
    )
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # `kill` cleans up like Ctrl-C: main's finally removes what it made


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        sys.stderr.write(f"bench: {exc}\n")
        sys.exit(1)
