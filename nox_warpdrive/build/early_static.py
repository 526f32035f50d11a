"""collectstatic run while the last packages are added (issue 24: the cold build).

A cold build of an app with an sdist goes: the deps layer for the wheels that could be
downloaded is made while the sdist compiles (deps.EarlyDeps), the compiled wheels are
then added on top of it in a small layer (a grow), and only then does collectstatic run
on the app layers, about 1.3 s of the Wagtail example's 10 s. collectstatic copies the
static files of the packages Django imports; a package it does not import cannot change
what it collects. So it runs at once on the deps image the grow starts from, beside the
grow, under a ``sitecustomize`` that notes every module each Python of the step loaded
or looked for in vain, and the distributions it asked importlib.metadata about. Once the
grow has said what its layer holds (the GROWN line: layerdiff.grown_names), the files
are taken when none of its top-level names was loaded or looked for, none of its
distributions was asked about, and it has no .pth file, entry points or static/
directory, and nothing listed every package (pkg_resources, importlib.metadata's
listings, pkgutil over sys.path). Else collectstatic runs as always, after one line that
says why. The files become the image's static layer as native_static's do (the same
tar, so the same blob and image ID: tests/integration/test_early_static_engine.py).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from ..engine import Engine, Output
from ..errors import WarpdriveError
from ..layout import key_digest
from . import static_cache
from .app_layer import AppPlan
from .native_static import Collected, collect_in

#: what the guard prints at the end of each Python of the step (one line of JSON)
IMPORTS_MARK = "warpdrive-early-imports: "

GUARD = f'''"""Written by nox-warpdrive for collectstatic run before the last packages are in
the virtualenv: what this Python loaded, looked for in vain, and asked importlib.metadata
about is printed at its end, for the host to tell whether those packages could matter."""
import atexit
import json
import os
import sys

_missing = set()
_dists = set()
_listed = []


class _Recorder:
    """Last on sys.meta_path: asked only for what no other finder has."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        _missing.add(name.partition(".")[0])
        return None


def _metadata():
    import importlib.metadata as md

    from_name = md.Distribution.from_name.__func__

    def noted(cls, name):
        try:
            return from_name(cls, name)
        except md.PackageNotFoundError:
            _dists.add(name)
            raise

    md.Distribution.from_name = classmethod(noted)
    for attr in ("distributions", "entry_points", "packages_distributions"):
        if hasattr(md, attr):
            _listing(md, attr, "importlib.metadata." + attr)


def _listing(module, attr, what):
    original = getattr(module, attr)

    def listed(*args, **kwargs):
        if what != "pkgutil.iter_modules" or not args or args[0] is None:
            _listed.append(what)
        return original(*args, **kwargs)

    setattr(module, attr, listed)


def _report():
    loaded = sorted(set(n.partition(".")[0] for n in list(sys.modules)))
    if "pkg_resources" in loaded:
        _listed.append("pkg_resources")
    data = {{
        "argv0": os.path.basename(sys.argv[0]) if sys.argv else "",
        "loaded": loaded,
        "missing": sorted(_missing),
        "dists": sorted(_dists),
        "listed": sorted(set(_listed)),
    }}
    sys.stdout.flush()
    sys.stderr.write("{IMPORTS_MARK}" + json.dumps(data) + "\\n")
    sys.stderr.flush()


sys.meta_path.append(_Recorder)
_metadata()
import pkgutil  # noqa: E402

_listing(pkgutil, "iter_modules", "pkgutil.iter_modules")
atexit.register(_report)
'''


@dataclass(frozen=True)
class Imports:
    """What the step's Pythons loaded, looked for in vain, asked about, and listed."""

    loaded: frozenset[str]
    missing: frozenset[str]
    dists: frozenset[str]
    listed: frozenset[str]
    #: the programs (argv[0]) that reported: collectstatic's manage.py among them
    programs: frozenset[str]

    @classmethod
    def of(cls, lines: list[str]) -> Imports:
        seen: dict[str, set[str]] = {k: set() for k in ("loaded", "missing", "dists", "listed")}
        programs: set[str] = set()
        for line in lines:
            _, mark, text = line.partition(IMPORTS_MARK)
            if not mark:
                continue
            try:
                data = json.loads(text)
            except ValueError:
                continue
            programs.add(str(data.get("argv0", "")))
            for key, names in seen.items():
                names.update(str(n) for n in data.get(key) or ())
        loaded, missing, dists, listed = (frozenset(seen[k]) for k in seen)
        return cls(loaded, missing, dists, listed, frozenset(programs))


@dataclass(frozen=True)
class EarlyStatic:
    """collectstatic's files from the grow's parent image, and what the run imported."""

    collected: Collected
    imports: Imports
    #: its output, shown when the files are taken
    lines: tuple[str, ...]


def worth_it(app: AppPlan, foreign: bool) -> bool:
    """Whether collectstatic may run beside a grow: it runs at all, no build hook (whose
    output may depend on any package), and on the engine's own CPU."""
    return app.collectstatic and not app.build_hook and app.runs_something and not foreign


def collect_early(engine: Engine, cfg: Config, parent_id: str, app: AppPlan) -> EarlyStatic | None:
    """collectstatic run on ``parent_id`` (the deps image the grow adds to) under the
    guard; None when it failed or recorded no files (the build runs it as always)."""
    lines: list[str] = []
    try:
        found = collect_in(engine, cfg, parent_id, app, lines.append, guard=GUARD)
    except WarpdriveError:
        return None
    if found is None:
        return None
    shown = tuple(line for line in lines if IMPORTS_MARK not in line)
    return EarlyStatic(found, Imports.of(lines), shown)


def why_not(early: EarlyStatic, grown: dict[str, Any]) -> str:
    """Why the files collected before the grow are not those of the image ("" when they
    are): the grow's layer holds something the run used or could not see."""
    imports = early.imports
    if "manage.py" not in imports.programs:
        return "collectstatic's Python did not report what it imported"
    if not grown:
        return "the added packages' layer did not say what it holds"
    if grown.get("why"):
        return "the added packages have " + ", ".join(grown["why"][:2])
    top = set(grown.get("top") or ())
    used = sorted(top & (imports.loaded | imports.missing))
    if used:
        return "collectstatic imports " + ", ".join(used[:3]) + ", which the added packages hold"
    asked = {_normalize(d) for d in imports.dists} & set(grown.get("dists") or ())
    if asked:
        return "collectstatic asked about " + ", ".join(sorted(asked)[:3])
    if imports.listed and top:
        return "collectstatic listed every package (" + sorted(imports.listed)[0] + ")"
    return ""


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _memory(cfg: Config, app: AppPlan, added: tuple[str, ...]) -> Path:
    """Where a refusal is remembered: per app, settings module and added wheels (a
    cold build of the same app with the same sdists runs collectstatic as always then,
    not twice)."""
    name = key_digest("early collectstatic 1", cfg.name, str(app.app.settings), *sorted(added))
    return static_cache.cache_dir().parent / "early-static" / name


def refused_before(cfg: Config, app: AppPlan, added: tuple[str, ...]) -> bool:
    """Whether the files collected before these wheels were added were refused before."""
    return _memory(cfg, app, added).is_file()


class EarlyRun:
    """collect_early in a thread, started beside a grow that adds the wheels ``added``;
    ``grown`` is filled by the grow (deps.ensure_deps), ``take`` says whether its files
    are the image's."""

    def __init__(
        self, engine: Engine, cfg: Config, parent_id: str, app: AppPlan, added: tuple[str, ...]
    ) -> None:
        self.app, self.memory = app, _memory(cfg, app, added)
        self.grown: dict[str, Any] = {}
        self.result: EarlyStatic | None = None
        self.thread = threading.Thread(
            target=self._run, args=(engine, cfg, parent_id), name="warpdrive-early-static"
        )
        self.thread.start()

    def _run(self, engine: Engine, cfg: Config, parent_id: str) -> None:
        self.result = collect_early(engine, cfg, parent_id, self.app)

    def join(self) -> EarlyStatic | None:
        self.thread.join()
        return self.result

    def take(self, app: AppPlan, out: Output) -> Collected | None:
        """The collected files when they are the image's (its output shown, and one
        line), else None and one line saying why (collectstatic then runs as always)."""
        early = self.join()
        if early is None or app is not self.app:
            return None  # it failed (the regular run says why) or the plan changed
        why = why_not(early, self.grown)
        if why:
            out(f"warpdrive: collectstatic runs again with every package: {why}")
            with contextlib.suppress(OSError):  # not remembered: only time lost
                self.memory.parent.mkdir(parents=True, exist_ok=True)
                self.memory.write_text(why + "\n")
            return None
        for line in early.lines:
            out(line)
        out(
            "warpdrive: collectstatic ran while the last packages were added (it imports "
            "none of them)"
        )
        return early.collected
