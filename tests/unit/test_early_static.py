"""collectstatic beside a grow (build/early_static.py): the guard's report, the grown
layer's names (runtime/layerdiff.grown_names) and the decision between them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nox_warpdrive.build import early_static
from nox_warpdrive.build.early_static import EarlyStatic, Imports, why_not
from nox_warpdrive.runtime import layerdiff

SITE = "opt/app-root/venv/lib/python3.11/site-packages"


def guarded(tmp_path: Path, code: str) -> Imports:
    """What the guard reports for one Python running ``code`` (as manage.py)."""
    guard = tmp_path / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(early_static.GUARD)
    script = tmp_path / "manage.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=str(guard))
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, check=True
    )
    return Imports.of(proc.stderr.splitlines())


def test_the_guard_reports_what_was_loaded_missed_asked_and_listed(tmp_path: Path) -> None:
    found = guarded(
        tmp_path,
        "import json, importlib.metadata as md, pkgutil\n"
        "try:\n    import wd_not_here.sub\nexcept ImportError:\n    pass\n"
        "try:\n    md.version('Not_Installed.pkg')\nexcept md.PackageNotFoundError:\n    pass\n"
        "list(pkgutil.iter_modules([]))\n",  # a given path lists no package
    )
    assert found.programs == {"manage.py"}
    assert {"json", "importlib", "pkgutil"} <= found.loaded
    assert "wd_not_here" in found.missing and "json" not in found.missing
    assert found.dists == {"Not_Installed.pkg"}
    assert found.listed == frozenset()
    listed = guarded(tmp_path, "import importlib.metadata as md\nmd.entry_points()\n")
    assert "importlib.metadata.entry_points" in listed.listed


def test_the_grown_names_are_what_an_import_or_a_listing_finds() -> None:
    paths = [
        SITE,
        f"{SITE}/wd_cext_demo",
        f"{SITE}/wd_cext_demo/_ext.cpython-311-x86_64-linux-gnu.so",
        f"{SITE}/wd_cext_demo-0.1.0.dist-info",
        f"{SITE}/wd_cext_demo-0.1.0.dist-info/RECORD",
        f"{SITE}/six.py",
        f"{SITE}/__pycache__/six.cpython-311.pyc",
        "opt/app-root/venv/bin/wd-cext",
    ]
    assert layerdiff.grown_names(paths) == {
        "top": ["six", "wd_cext_demo"],
        "dists": ["wd-cext-demo"],
        "why": [],
    }
    more = [
        f"{SITE}/Some.Plugin-2.dist-info/entry_points.txt",
        f"{SITE}/extra.pth",
        f"{SITE}/widgets/static/widgets/w.css",
    ]
    assert layerdiff.grown_names(more)["why"] == [
        "a .pth file (extra.pth)",
        "entry points (Some.Plugin-2.dist-info)",
        "static files (widgets/static)",
    ]


def early(**imports: set[str]) -> EarlyStatic:
    fields = {k: frozenset(imports.get(k, set())) for k in ("loaded", "missing", "dists")}
    listed = frozenset(imports.get("listed", set()))
    programs = frozenset(imports.get("programs", {"assemble.py", "manage.py"}))
    found = Imports(fields["loaded"], fields["missing"], fields["dists"], listed, programs)
    return EarlyStatic(collected=None, imports=found, lines=())  # type: ignore[arg-type]


GROWN = {"top": ["psycopg2"], "dists": ["psycopg2"], "why": []}


@pytest.mark.parametrize(
    ("run", "grown", "why"),
    [
        (early(loaded={"django", "os"}, missing={"jinja2"}), GROWN, ""),
        (early(missing={"psycopg2"}), GROWN, "collectstatic imports psycopg2, which the"),
        (early(loaded={"psycopg2"}), GROWN, "collectstatic imports psycopg2"),
        (early(dists={"PsycoPG2"}), GROWN, "collectstatic asked about psycopg2"),
        (early(listed={"pkg_resources"}), GROWN, "collectstatic listed every package"),
        (early(programs={"assemble.py"}), GROWN, "did not report what it imported"),
        (early(), {}, "did not say what it holds"),
        (early(), {**GROWN, "why": ["a .pth file (x.pth)"]}, "have a .pth file (x.pth)"),
    ],
)
def test_the_early_files_are_taken_only_when_the_grow_holds_nothing_they_used(
    run: EarlyStatic, grown: dict[str, object], why: str
) -> None:
    said = why_not(run, grown)
    assert (why in said and said) if why else said == ""


def test_imports_from_several_programs_are_joined_and_other_lines_ignored() -> None:
    mark = early_static.IMPORTS_MARK
    lines = [
        "warpdrive: $ python manage.py collectstatic",
        mark + json.dumps({"argv0": "assemble.py", "loaded": ["os"], "missing": ["a"]}),
        mark + json.dumps({"argv0": "manage.py", "loaded": ["django"], "dists": ["x"]}),
        mark + "{not json",
    ]
    found = Imports.of(lines)
    assert found.programs == {"assemble.py", "manage.py"}
    assert found.loaded == {"os", "django"} and found.missing == {"a"}
    assert found.dists == {"x"}


def test_a_refusal_is_remembered_per_app_settings_and_added_wheels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    class Cfg:
        name = "shop"

    class Plan:
        class app:
            settings = "site1.settings"

    cfg, app = Cfg(), Plan()
    added = ("psycopg2-2.9.13-cp311-cp311-linux_x86_64.whl",)
    assert not early_static.refused_before(cfg, app, added)  # type: ignore[arg-type]
    memory = early_static._memory(cfg, app, added)  # type: ignore[arg-type]
    memory.parent.mkdir(parents=True)
    memory.write_text("collectstatic imports psycopg2\n")
    assert early_static.refused_before(cfg, app, added)  # type: ignore[arg-type]
    assert not early_static.refused_before(cfg, app, ("uWSGI-2.0.whl",))  # type: ignore[arg-type]
