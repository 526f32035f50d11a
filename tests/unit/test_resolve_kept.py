"""The builder's resolve keeps the versions the wheelhouse has (runtime/resolve.py): the
wheelhouse as uv's first index, final releases only, and every package resolved from the
package index when those versions do not fit, or when the plan says upgrade. uv itself is
a fake here (a script that records its arguments); the integration test
tests/integration/test_resolve_kept_engine.py runs the real one."""

from __future__ import annotations

import json
import os
import stat
import sys
import urllib.parse
from pathlib import Path

import pytest

from nox_warpdrive.runtime import resolve


def _wheels(tmp_path: Path, names: list[str], known: dict[str, str] | None = None) -> Path:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in names:
        (wheels / name).write_bytes(name.encode())
    (tmp_path / "manifest.json").write_text(json.dumps({"wheels": known or {}}))
    return wheels


@pytest.mark.parametrize(
    ("version", "pre"),
    [
        ("1.0", False),
        ("2026.10.19.post1", False),
        ("1.0+cu118b", False),
        ("1.0rc1", True),
        ("1.0a1", True),
        ("2.0b3", True),
        ("1.0.dev3", True),
        ("3.1.0.dev0+local", True),
        ("1.0c1", True),
        ("0.1", False),
        ("4.16.0", False),
    ],
)
def test_pre_releases_are_told_apart(version: str, pre: bool) -> None:
    assert resolve.is_pre_release(version) is pre


def test_the_wheelhouse_index_has_one_page_per_project_and_no_pre_release(
    tmp_path: Path,
) -> None:
    wheels = _wheels(
        tmp_path,
        [
            "Django-5.2.20-py3-none-any.whl",
            "django-5.2.19-py3-none-any.whl",
            "django-6.0rc1-py3-none-any.whl",
            "zope.interface-7.1-cp311-cp311-linux_x86_64.whl",
            "onlypre-1.0a1-py3-none-any.whl",
        ],
        {"django-5.2.19-py3-none-any.whl": "3" * 64},
    )
    (wheels / ".part-x.whl").write_bytes(b"half")
    staging = tmp_path / "staging"
    staging.mkdir()
    url = resolve.local_index(str(wheels), str(tmp_path / "manifest.json"), str(staging))
    assert url is not None and url.startswith("file://")
    root = Path(urllib.parse.unquote(url[len("file://") :]))
    assert sorted(p.name for p in root.iterdir()) == ["django", "zope-interface"]
    django = (root / "django" / "index.html").read_text()
    assert "6.0rc1" not in django
    assert f'href="file://{wheels}/django-5.2.19-py3-none-any.whl#sha256={"3" * 64}"' in django
    assert f'href="file://{wheels}/Django-5.2.20-py3-none-any.whl"' in django


def test_no_wheelhouse_index_without_final_releases(tmp_path: Path) -> None:
    wheels = _wheels(tmp_path, ["onlypre-1.0a1-py3-none-any.whl"])
    manifest = str(tmp_path / "manifest.json")
    assert resolve.local_index(str(wheels), manifest, str(tmp_path)) is None


FAKE_UV = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_UV_LOG"], "a") as fh:
    fh.write(json.dumps(args) + "\\n")
if "--index" in args and os.environ.get("FAKE_UV_LOCAL") == "fail":
    print("No solution found when resolving dependencies")
    sys.exit(1)
version = "1.0" if "--index" in args else "2.0"
with open(args[args.index("-o") + 1], "w") as fh:
    fh.write('[[packages]]\\nname = "a"\\nversion = "%s"\\n' % version)
"""


def _fake_uv(tmp_path: Path) -> str:
    path = tmp_path / "uv"
    path.write_text(FAKE_UV.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **plan_extra: object) -> tuple:
    wheels = _wheels(tmp_path, ["a-1.0-py3-none-any.whl"])
    staging = tmp_path / "staging"
    staging.mkdir()
    req_dir = tmp_path / "req"
    req_dir.mkdir()
    (req_dir / "requirements.txt").write_text("a\n")
    log = tmp_path / "uv.log"
    monkeypatch.setenv("FAKE_UV_LOG", str(log))
    plan = {"python": sys.executable, "req_dir": str(req_dir), "top": ["requirements.txt"]}
    plan.update(plan_extra)
    constraints = plan.pop("constraints", None)
    pins = resolve.resolve_with_uv(
        _fake_uv(tmp_path),
        plan,
        str(tmp_path),
        str(wheels),
        str(staging),
        dict(os.environ),
        constraints=constraints,
    )
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    return pins, calls


def test_the_versions_the_wheelhouse_has_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pins, calls = _resolve(tmp_path, monkeypatch)
    assert [(p.name, p.version) for p in pins] == [("a", "1.0")]
    assert len(calls) == 1
    first = calls[0]
    assert first[:3] == ["pip", "compile", "--index"] and first[3].startswith("file://")


def test_every_package_from_the_index_when_the_kept_versions_do_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_UV_LOCAL", "fail")
    pins, calls = _resolve(tmp_path, monkeypatch)
    assert [(p.name, p.version) for p in pins] == [("a", "2.0")]
    assert len(calls) == 2 and "--index" in calls[0] and "--index" not in calls[1]
    err = capsys.readouterr()
    assert "No solution found" not in err.out + err.err  # the first try's output is not shown
    assert "could not resolve keeping the wheelhouse" in err.out + err.err


@pytest.mark.parametrize(
    "plan_extra",
    [{"upgrade": True}, {"no_index": True}, {"constraints": "c.txt"}],
    ids=["upgrade", "no-index", "constraints"],
)
def test_resolved_from_the_index_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan_extra: dict[str, object]
) -> None:
    pins, calls = _resolve(tmp_path, monkeypatch, **plan_extra)
    assert [(p.name, p.version) for p in pins] == [("a", "2.0")]
    assert len(calls) == 1 and "--index" not in calls[0]
    # an upgrade asks the index again for every page, whatever uv's cache holds
    assert ("--refresh" in calls[0]) == ("upgrade" in plan_extra)
