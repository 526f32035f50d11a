"""The only module that imports nox: registers the sessions and maps errors to
``session.error`` (a clean one-line failure, never a traceback for a user mistake).

Registering contacts nothing: ``nox -l`` works without a Docker engine and with a broken
``[tool.warpdrive]``; both are reported when a session actually runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nox
import nox.registry

from .config import load_config
from .engine import Engine
from .errors import WarpdriveError

SESSION_NAMES = ("wheelhouse", "image")


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise _ArgError(f"{message}\n{self.format_usage().strip()}")


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def wheelhouse_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nox -s wheelhouse --", add_help=False)
    p.add_argument("--no-index", action="store_true", help="build from the pip cache only")
    return p


def image_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nox -s image --", add_help=False)
    p.add_argument(
        "--no-index",
        action="store_true",
        default=None,
        help="never consult a package index: install only from the wheelhouse",
    )
    p.add_argument("--tag", metavar="REF", help="tag the image as REF instead of `image`")
    return p


def run_wheelhouse(project_dir: Path, posargs: Sequence[str], log: Callable[[str], None]) -> None:
    from .wheelhouse import build_wheelhouse

    args = wheelhouse_parser().parse_args(list(posargs))
    cfg = load_config(project_dir)
    engine = Engine.connect()
    result = build_wheelhouse(cfg, engine, _out, no_index=args.no_index)
    log(result.summary())


def run_image(project_dir: Path, posargs: Sequence[str], log: Callable[[str], None]) -> None:
    from .image import build_image

    args = image_parser().parse_args(list(posargs))
    overrides = {"image": args.tag} if args.tag else {}
    cfg = load_config(project_dir, overrides)
    engine = Engine.connect()
    result = build_image(cfg, engine, _out, no_index=args.no_index)
    log(result.summary())
    _out(result.table())


def _guard(
    session: Any,
    fn: Callable[[Path, Sequence[str], Callable[[str], None]], None],
    project_dir: Path | None,
) -> None:
    try:
        fn(project_dir or Path.cwd(), session.posargs, session.log)
    except _ArgError as exc:
        session.error(f"bad arguments: {exc}")
    except WarpdriveError as exc:
        session.error(str(exc))


def sessions(*, project_dir: str | Path | None = None, prefix: str = "") -> None:
    """Register the nox-warpdrive sessions in the calling noxfile.

    ``project_dir``: the app (default: the directory nox runs in, the noxfile's).
    ``prefix``: prepended to every session name, for noxfiles that already have an
    ``image`` session.
    """
    existing = nox.registry.get()
    for name in SESSION_NAMES:
        if prefix + name in existing:
            raise WarpdriveError(
                f"a nox session named {prefix + name!r} is already registered",
                fix='call nox_warpdrive.sessions(prefix="wd-") to register ours under other '
                "names, or rename yours",
            )
    root = Path(project_dir).resolve() if project_dir is not None else None

    def wheelhouse(session: Any) -> None:
        """Build every wheel the app needs inside the builder image, into the volume."""
        _guard(session, run_wheelhouse, root)

    def image(session: Any) -> None:
        """Build the app image from the wheelhouse (-- --no-index, -- --tag REF)."""
        _guard(session, run_image, root)

    nox.session(name=prefix + "wheelhouse", venv_backend="none", default=False)(wheelhouse)
    nox.session(name=prefix + "image", venv_backend="none", default=False)(image)
