"""uv workspaces and locks above the app (no Docker): which directories are members
(globs, exclude, nested roots), the member's selection from the workspace's uv.lock
compared with what `uv export --package app --no-dev` wrote for the same lock, the
workspace root naming its member with `package`, locks found above and not used, and
the diagnoses of a lock that is (and is not) out of date.

tests/fixtures/locks/uv-workspace is a workspace locked by the real uv 0.13.9 against a
local index (python -m http.server over a PyPI mirror, hence the 127.0.0.1 URLs): a
virtual root (no [project], a dev group), the app in backend/, packages/worker (which
depends on the member packages/common) and packages/legacy, excluded. Its
export-*.txt files are `uv export --package app --no-dev --frozen --format
requirements-txt --no-hashes --no-header --no-annotate` (export-app-prod-http.txt with
`--group prod --extra http`, export-worker.txt with `--package worker`), written by that
uv from that lock."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_inputs_locks import LINUX, edit, error, pins, read

from nox_warpdrive.config import load_config
from nox_warpdrive.errors import ConfigError
from nox_warpdrive.inputs.read import inputs_line
from nox_warpdrive.workspace import find_workspace, unused_locks, workspace_at

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "locks" / "uv-workspace"


def workspace(tmp_path: Path, warpdrive: str = "", at: str = "backend") -> Path:
    """A copy of the workspace (with a .git, the repository root), [tool.warpdrive] in
    the pyproject of ``at``; the directory ``at``."""
    root = tmp_path / "repo"
    shutil.copytree(FIXTURE, root)
    (root / ".git").mkdir()
    pyproject = root / at / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n[tool.warpdrive]\n" + warpdrive)
    return root / at


def exported(name: str) -> dict[str, str]:
    """What uv exported: name -> version (the member itself, `-e ./backend`, left out)."""
    out = {}
    for line in (FIXTURE / name).read_text().splitlines():
        if line.startswith("-e "):
            continue
        req = line.split(";")[0].strip()
        n, _, v = req.partition("==")
        out[n] = v
    return out


# ----------------------------------------------------------------------- discovery


def test_members_from_globs_minus_exclude() -> None:
    ws = workspace_at(FIXTURE)
    assert ws is not None
    names = {p.relative_to(FIXTURE).as_posix() for p in ws.members}
    # the root is virtual (no [project]): not a member; packages/legacy is excluded
    assert names == {"backend", "packages/common", "packages/worker"}
    assert set(ws.member_names()) == {"app", "common", "worker"}


def test_find_workspace_member_excluded_and_nested(tmp_path: Path) -> None:
    app = workspace(tmp_path)
    root = app.parent
    found = find_workspace(app)
    assert found is not None and found.member and found.workspace.root == root
    legacy = find_workspace(root / "packages" / "legacy")
    assert legacy is not None and not legacy.member
    assert "`exclude` (packages/legacy) leaves out packages/legacy" in legacy.why_not
    # a project inside a member that is not itself a member: not matched by the globs
    tools = root / "backend" / "tools"
    tools.mkdir()
    (tools / "pyproject.toml").write_text('[project]\nname = "tools"\n')
    inner = find_workspace(tools)
    assert inner is not None and not inner.member
    assert "`members` (backend, packages/*) do not match backend/tools" in inner.why_not
    # a nested workspace: the nearest root wins
    nested = root / "backend" / "sub"
    (nested / "svc").mkdir(parents=True)
    (nested / "pyproject.toml").write_text('[tool.uv.workspace]\nmembers = ["svc"]\n')
    (nested / "svc" / "pyproject.toml").write_text('[project]\nname = "svc"\n')
    svc = find_workspace(nested / "svc")
    assert svc is not None and svc.member and svc.workspace.root == nested


def test_no_workspace_above_the_repository_root(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.uv.workspace]\nmembers = ["repo/app"]\n')
    app = tmp_path / "repo" / "app"
    app.mkdir(parents=True)
    (tmp_path / "repo" / ".git").mkdir()
    (app / "pyproject.toml").write_text('[project]\nname = "app"\n')
    assert find_workspace(app) is None


# ----------------------------------------------------------------------- selection


def test_member_selection_is_what_uv_exports(tmp_path: Path) -> None:
    app = workspace(tmp_path)
    reqs = read(app)
    assert pins(reqs) == exported("export-app.txt")
    # no dev group (the member's or the root's), nothing of the other members
    assert not {"iniconfig", "colorama", "anyio", "idna", "gunicorn"} & set(pins(reqs))
    assert reqs.project is not None and reqs.project.name == "app" and reqs.project.editable
    assert reqs.project.root == app
    cfg = load_config(app)
    assert cfg.lock_file == app.parent / "uv.lock"
    assert cfg.inputs_reason == "uv.lock (workspace root ../uv.lock, member app)"
    assert reqs.source.startswith("uv.lock (workspace root ../uv.lock, member app): 3 pinned")


def test_member_groups_and_extras_as_configured(tmp_path: Path) -> None:
    app = workspace(tmp_path, 'groups = ["prod"]\nextras = ["http"]\n')
    assert pins(read(app)) == exported("export-app-prod-http.txt")


def test_from_the_workspace_root_with_package(tmp_path: Path) -> None:
    app = workspace(tmp_path)
    root = app.parent
    (root / "pyproject.toml").write_text(
        (root / "pyproject.toml").read_text() + '\n[tool.warpdrive]\npackage = "app"\n'
    )
    edit(
        app / "pyproject.toml",
        "[tool.warpdrive]\n",
        '[tool.warpdrive]\nimage = "m:1"\nserver = "uvicorn"\n',
    )
    edit(root / "pyproject.toml", 'package = "app"', 'package = "app"\nimage = "shop/api:2"')
    cfg = load_config(root)
    assert cfg.project_dir == app and cfg.name == "app"
    assert (cfg.image, cfg.server) == ("shop/api:2", "uvicorn")  # the root's over the member's
    assert cfg.inputs_reason == "uv.lock (workspace root ../uv.lock, member app)"
    assert pins(read(root)) == exported("export-app.txt")
    edit(root / "pyproject.toml", 'package = "app"', 'package = "nope"')
    with pytest.raises(ConfigError) as exc:
        load_config(root)
    assert "no member by that name (members: app, common, worker)" in str(exc.value)


def test_workspace_root_without_package_names_the_members(tmp_path: Path) -> None:
    root = workspace(tmp_path).parent
    (root / "pyproject.toml").write_text(
        (root / "pyproject.toml").read_text() + '\n[tool.warpdrive]\nlock = "uv.lock"\n'
    )
    message = error(root)
    assert "has no [project].name" in message and "members: app, common, worker" in message
    assert 'package = "NAME"' in message
    assert "the project  itself" not in message


def test_explicit_lock_above_is_the_workspace_lock(tmp_path: Path) -> None:
    """`lock = "../uv.lock"` from the member: the member's entry is
    `source = { editable = "backend" }`, and the lock is fresh (`uv lock --check`)."""
    app = workspace(tmp_path, 'lock = "../uv.lock"\n')
    assert pins(read(app)) == exported("export-app.txt")
    assert "out of date" not in read(app).source


def test_other_members_it_depends_on_are_built_as_wheels(tmp_path: Path) -> None:
    """worker depends on the member common: its dependencies are pinned as uv exports
    them, and common is built as a wheel from its directory (keyed by its files)."""
    worker = workspace(tmp_path, at="packages/worker")
    reqs = read(worker)
    assert pins(reqs) == exported("export-worker.txt")
    assert [(m.name, m.editable, m.root) for m in reqs.members] == [
        ("common", False, worker.parent / "common")
    ]
    assert reqs.members[0].plan()["archive"] == "member-common.tar"
    assert "the workspace members common (wheels built from their directories)" in reqs.source
    before = reqs.digest
    (worker.parent / "common" / "common.py").write_text("X = 1\n")
    assert read(worker).digest != before  # a change of the member builds it again


def test_the_workspace_requires_python_is_all_members_together(tmp_path: Path) -> None:
    """uv.lock says >=3.11 (worker's), the app asks >=3.10: not out of date; a change
    of the members' range is."""
    app = workspace(tmp_path)
    assert read(app).locked
    edit(app.parent / "packages" / "worker" / "pyproject.toml", ">=3.11", ">=3.12")
    assert "the members' requires-python is '>=3.10,>=3.12', uv.lock has '>=3.11'" in error(app)


# ----------------------------------------------------------------------- stale locks


def test_stale_member_names_what_changed(tmp_path: Path) -> None:
    app = workspace(tmp_path)
    pyproject = app / "pyproject.toml"
    edit(pyproject, '"click>=8.1",', '"click>=8.2",\n    "anyio>=4",')
    edit(pyproject, "    \"markupsafe>=3.0; sys_platform != 'win32'\",\n", "")
    message = error(app)
    assert "out of date" in message
    assert "`click>=8.1` changed to `click>=8.2` in pyproject.toml" in message
    assert "`anyio>=4` added to pyproject.toml, uv.lock does not record it" in message
    assert (
        "`markupsafe>=3.0; sys_platform != 'win32'` is in uv.lock, pyproject.toml no longer"
        in message
    )
    assert "fix: run `uv lock`" in message


def test_a_renamed_member_is_not_found(tmp_path: Path) -> None:
    app = workspace(tmp_path)
    edit(app / "pyproject.toml", 'name = "app"', 'name = "api"')
    message = error(app)
    assert "no entry for the project api in 'backend'" in message


# ----------------------------------------------------------------------- not used


def test_locks_above_not_used_say_why(tmp_path: Path) -> None:
    app = workspace(tmp_path, at="packages/legacy")
    (app.parent.parent / "poetry.lock").write_text("")
    (app / "pdm.lock").write_text("")
    cfg = load_config(app)
    assert cfg.lock_file is None and cfg.inputs_reason == "[project].dependencies"
    text = "\n".join(cfg.unused_locks)
    assert "pdm.lock (nox-warpdrive does not read pdm.lock" in text
    assert "../../uv.lock (the workspace's `exclude` (packages/legacy)" in text
    assert "../../poetry.lock (Poetry has no workspaces" in text
    # a member with a lock of its own: the workspace's is not used, and said so
    (app.parent.parent / "backend" / "uv.lock").write_text("")
    assert (
        unused_locks(app.parent.parent / "backend", app.parent.parent / "backend" / "uv.lock")[0]
        == "../uv.lock (the app's own uv.lock is used)"
    )
    (app.parent.parent / "backend" / "uv.lock").unlink()
    # the member's own build says nothing of the lock it uses
    assert unused_locks(app.parent.parent / "backend", app.parent.parent / "uv.lock") == (
        "../poetry.lock (Poetry has no workspaces: it locks the project in .. only)",
    )


def test_poetry_lock_above_is_refused(tmp_path: Path) -> None:
    app = workspace(tmp_path, 'lock = "../poetry.lock"\n', at="packages/legacy")
    (app.parent / "poetry.lock").write_text("")
    with pytest.raises(ConfigError) as exc:
        load_config(app)
    assert "Poetry has no workspaces" in str(exc.value)


def test_uv_lock_above_of_no_workspace_is_refused(tmp_path: Path) -> None:
    app = workspace(tmp_path, 'lock = "../../uv.lock"\n', at="packages/legacy")
    with pytest.raises(ConfigError) as exc:
        load_config(app)
    assert "not one of its members" in str(exc.value)


def test_target_is_linux() -> None:
    assert dict(LINUX.markers)["sys_platform"] == "linux"


# ----------------------------------------------------------------------- the line


def test_every_build_says_what_it_installs_from(tmp_path: Path) -> None:
    app = workspace(tmp_path)
    line = inputs_line(load_config(app), read(app))
    assert line.startswith(
        "warpdrive: installing from uv.lock (workspace root ../uv.lock, member app): 3 pinned"
    )
    assert "not locked" not in line and "not used" not in line
    legacy = app.parent / "packages" / "legacy"
    line = inputs_line(load_config(legacy), read(legacy))
    assert line.startswith("warpdrive: installing from [project].dependencies, not locked; ")
    assert "not used: ../../uv.lock (the workspace's `exclude`" in line
    (legacy / "requirements.txt").write_text("sniffio\n")
    line = inputs_line(load_config(legacy), read(legacy))
    assert "from requirements.txt (found), resolved at build (not locked)" in line


def test_own_locks_not_used_say_why(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / ".git").mkdir()
    (tmp_path / "uv.lock").write_text("")  # above the repository: never looked at
    for name in ("uv.lock", "poetry.lock", "requirements.txt"):
        (app / name).write_text("")
    assert unused_locks(app, app / "uv.lock") == (
        "poetry.lock (`lock` in [tool.warpdrive] names uv.lock)",
    )
    assert unused_locks(app, None) == (
        "uv.lock (`requirements` in [tool.warpdrive] is set)",
        "poetry.lock (`requirements` in [tool.warpdrive] is set)",
    )
