"""What every part of the bench shares: its paths, the names of what it creates in
Docker, the scenarios and tools, its error type and its console output.

One place for these names because the clean-up relies on them: the bench removes only
images, volumes and cache it can recognise as its own."""

from __future__ import annotations

import datetime as dt
import re
import signal
import subprocess
import sys
import uuid
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
PEERS = ("s2i-style", "layered", "buildkit-cache", "multistage", "uv")
TOOLS = (WARPDRIVE, *PEERS)
REFERENCE = "buildkit-cache"
DEFAULT_PACKAGE = "django-environ"

#: this bench run's own suffix, in every name it gives in Docker (images, volume, build
#: cache ids, containers): two benches on one engine then never build into, or remove,
#: each other's; the clean-up still finds everything of its own run by these names
RUN_ID = uuid.uuid4().hex[:8]
#: the copy's [project].name (deps cache images were named after it before they were
#: named after the image's repository: ``warpdrive-deps/<repository>:<key>``)
PROJECT_NAME = f"bench-site-{RUN_ID}"
WD_REPOSITORY = f"bench-warpdrive-{RUN_ID}"
WD_IMAGE = f"{WD_REPOSITORY}:latest"
WD_VOLUME = WD_REPOSITORY
WD_REFERENCES = (
    WD_REPOSITORY,
    f"warpdrive-deps/{WD_REPOSITORY}",
    f"warpdrive-deps/{PROJECT_NAME}",
)


def peer_tag(name: str) -> str:
    """The image a peer's Dockerfile builds in this bench run (``name``: the peer, with
    its platform's slug for an emulated one)."""
    return f"bench-peer-{name}-{RUN_ID}:latest"


#: what an app copy leaves out (build outputs of a local run, caches)
COPY_IGNORE = ("__pycache__", "*.pyc", "db.sqlite3", "static", "media", ".nox", ".venv", "*.log")
CACHE_ID_ARG = re.compile(r"id=\$\{?CACHE_ID\}?")


class BenchError(Exception):
    """A failed step: the message says which, and where its log is."""


def out(line: str = "") -> None:
    """A line of progress, flushed at once: a bench run takes minutes and its output is
    often piped (nox, tee), where Python would otherwise buffer it."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def utc_now() -> dt.datetime:
    """Aware UTC time: the build cache's CreatedAt is compared with it."""
    return dt.datetime.now(dt.timezone.utc)


def interrupt(proc: subprocess.Popen[str] | subprocess.Popen[bytes], timeout: float) -> None:
    """Stop ``proc`` as Ctrl-C does (its containers are removed in its `finally`, not
    killed while they hold the volume); killed only when it has not ended in ``timeout``."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
