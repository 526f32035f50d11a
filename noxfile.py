"""nox-warpdrive's own sessions (the plugin's sessions live in users' noxfiles)."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests (the integration ones need `scripts/engine-up.sh`)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy, and the import layers (import-linter's contracts in pyproject.toml)."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", "nox_warpdrive", "tests", "bench")
    session.run("ruff", "format", "--check", "nox_warpdrive", "tests", "bench")
    session.run("mypy")
    session.run("mypy", "--strict", "bench")
    session.run("lint-imports")


@nox.session(venv_backend="none", default=False)
def bench(session: nox.Session) -> None:
    """Build times against Dockerfile peers (slow; `-- --runs 3`): bench/RESULTS.md."""
    import sys

    session.run(sys.executable, "-m", "bench", *session.posargs, external=True)
