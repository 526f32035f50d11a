"""Each lock format read for a target image (no Docker): what it selects (markers for the
target, extras, groups), the project itself, freshness against pyproject.toml, the key,
and every bad input as an error naming the file and line.

The lock files in tests/fixtures/locks were written by the real tools (uv 0.13.9,
Poetry 2.5.1, pipenv 2026.10.3) for one small project: itsdangerous and markupsafe
(platform wheels), tomli for Python < 3.11 only, pywin32 (colorama for pipenv) for
Windows only, an extra ``cli`` (click) and dependency groups ``dev`` (iniconfig) and
``prod`` (gunicorn)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from nox_warpdrive.config import load_config
from nox_warpdrive.errors import ConfigError
from nox_warpdrive.inputs.locks.pipenv import pipfile_hash
from nox_warpdrive.inputs.locks.poetry import poetry_content_hash
from nox_warpdrive.inputs.model import Target, target_for
from nox_warpdrive.inputs.read import read_inputs
from nox_warpdrive.inputs.requirements import RequirementSet
from nox_warpdrive.platform import PlatformKey

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "locks"


def key(python: str = "3.11.2", machine: str = "x86_64", libc: str = "glibc") -> PlatformKey:
    """A Debian-like image's probe for ``python`` on ``machine``."""
    cp = "cp" + "".join(python.split(".")[:2])
    markers = {
        "implementation_name": "cpython",
        "implementation_version": python,
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "6.1.0",
        "platform_system": "Linux",
        "platform_version": "#1 SMP",
        "python_full_version": python,
        "python_version": ".".join(python.split(".")[:2]),
        "sys_platform": "linux",
    }
    return PlatformKey(
        cp,
        cp,
        f"linux_{machine}",
        libc,
        "2.36" if libc == "glibc" else "1.2.4",
        "debian" if libc == "glibc" else "alpine",
        "12" if libc == "glibc" else "3.20",
        python,
        markers=tuple(sorted(markers.items())),
    )


LINUX = target_for(key())
PY310 = target_for(key("3.10.13"))
WINDOWS = Target(
    markers=tuple(
        sorted(
            {
                **dict(LINUX.markers),
                "os_name": "nt",
                "platform_machine": "AMD64",
                "platform_system": "Windows",
                "sys_platform": "win32",
            }.items()
        )
    ),
    tags=(
        "cp311-cp311-win_amd64",
        "cp311-abi3-win_amd64",
        "cp311-none-win_amd64",
        "py311-none-win_amd64",
        "py3-none-win_amd64",
        "py311-none-any",
        "py3-none-any",
    ),
    label="windows",
)


def project(tmp_path: Path, fmt: str, warpdrive: str = "") -> Path:
    """A copy of a fixture project, with [tool.warpdrive] settings."""
    root = tmp_path / fmt
    shutil.copytree(FIXTURES / fmt, root)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text() if pyproject.is_file() else '[project]\nname = "lockdemo"\n'
    pyproject.write_text(text + "\n[tool.warpdrive]\n" + warpdrive)
    return root


def read(root: Path, target: Target = LINUX, **overrides: Any) -> RequirementSet:
    return read_inputs(load_config(root, overrides), target)


def pins(reqs: RequirementSet) -> dict[str, str]:
    return {p.name: p.version for p in reqs.locked}


def error(root: Path, target: Target = LINUX, **overrides: Any) -> str:
    with pytest.raises(ConfigError) as exc:
        read(root, target, **overrides)
    return str(exc.value)


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, count))


def line_of(path: Path, pattern: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1) if re.search(pattern, t))


BASE = {"itsdangerous": "2.2.0", "markupsafe": "3.0.4"}


# ----------------------------------------------------------------------------- uv.lock


def test_uv_lock_selects_for_the_target_not_the_host(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    reqs = read(root)
    assert pins(reqs) == BASE  # no tomli (3.11), no pywin32 (linux), no extra, no group
    markupsafe = next(p for p in reqs.locked if p.name == "markupsafe")
    assert markupsafe.wheels[0].filename.startswith("markupsafe-3.0.4-cp311-cp311-manylinux")
    assert all("win" not in w.filename and "macosx" not in w.filename for w in markupsafe.wheels)
    assert markupsafe.sdist is not None and markupsafe.sdist.filename == "markupsafe-3.0.4.tar.gz"
    assert markupsafe.wheels[0].url and markupsafe.wheels[0].url.startswith("https://")
    assert markupsafe.where == f"uv.lock line {line_of(root / 'uv.lock', '^name = .markupsafe.')}"
    assert reqs.locked_from == "uv.lock"
    assert reqs.project is not None and reqs.project.editable and reqs.project.name == "lockdemo"
    assert "uv.lock (set by `lock` in [tool.warpdrive]): 2 pinned packages" in reqs.source


def test_uv_lock_other_python_and_platform(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    assert set(pins(read(root, PY310))) == {*BASE, "tomli"}
    win = read(root, WINDOWS)
    assert "pywin32" in pins(win)
    pywin = next(p for p in win.locked if p.name == "pywin32")
    assert pywin.wheels and all(w.filename.endswith("win_amd64.whl") for w in pywin.wheels)


def test_uv_lock_extras_and_groups(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\nextras = ["cli"]\ngroups = ["prod"]\n')
    reqs = read(root)
    assert set(pins(reqs)) == {*BASE, "click", "gunicorn"}  # dev's iniconfig is not in
    assert "groups: prod" in reqs.source and "extras: cli" in reqs.source
    both = read(project(tmp_path / "b", "uv", 'lock = "uv.lock"\ngroups = ["dev", "prod"]\n'))
    assert set(pins(both)) == {*BASE, "gunicorn", "iniconfig"}


def test_uv_lock_unknown_group_or_extra(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    message = error(root, groups=["test"])
    assert "`groups` names 'test'" in message and "it has: dev, prod" in message
    assert f"uv.lock line {line_of(root / 'uv.lock', '^name = .lockdemo.')}" in message
    assert "it has: cli" in error(root, extras=["postgres"])


def test_uv_lock_out_of_date(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    edit(root / "pyproject.toml", '"itsdangerous>=2.2"', '"itsdangerous>=2.3"')
    message = error(root)
    assert "uv.lock is out of date with pyproject.toml" in message
    assert "`itsdangerous>=2.2` changed to `itsdangerous>=2.3`" in message, message
    assert "uv lock --check" in message
    assert "fix: run `uv lock`" in message


@pytest.mark.parametrize(
    ("old", "new", "what"),
    [
        ('version = "0.1.0"', 'version = "0.2.0"', "version is 0.2.0"),
        ('prod = ["gunicorn>=23"]', 'prod = ["gunicorn>=24"]', "dependency group 'prod'"),
        ('dev = ["iniconfig>=2.0"]', 'dev = ["iniconfig>=2.0"]\ntest = ["pytest"]', "'test'"),
        ('cli = ["click>=8.1"]', 'cli = ["click>=8.1", "rich"]', "`rich`"),
        ('requires-python = ">=3.10"', 'requires-python = ">=3.11"', "requires-python"),
        (
            "\"pywin32>=306; sys_platform == 'win32'\",\n",
            "",
            "`pywin32>=306; sys_platform == 'win32'` is in uv.lock, pyproject.toml no longer",
        ),
    ],
)
def test_uv_lock_out_of_date_cases(tmp_path: Path, old: str, new: str, what: str) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    edit(root / "pyproject.toml", old, new)
    message = error(root)
    assert "out of date" in message and what in message, message


def test_uv_lock_equal_markers_in_other_words_are_fresh(tmp_path: Path) -> None:
    """uv drops what requires-python implies from markers: same meaning, not same text."""
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    edit(
        root / "pyproject.toml",
        "\"tomli>=2.0; python_version < '3.11'\"",
        '"tomli >= 2.0 ; python_version < \\"3.11\\" and python_version >= \'3.8\'"',
    )
    assert pins(read(root)) == BASE


def test_uv_lock_key_covers_only_what_is_installed(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    before = read(root).digest
    lock = root / "uv.lock"
    text = lock.read_text()
    # a dev group's package, another platform's wheel, a comment moving every line
    text = re.sub(r'(name = "iniconfig"\nversion = ")2\.3\.1', r"\g<1>2.3.0", text)
    text = re.sub(r"    \{ url = [^\n]*pywin32-[^\n]*win_arm64[^\n]*\n", "", text)
    text = re.sub(r"    \{ url = [^\n]*markupsafe-[^\n]*macosx[^\n]*\n", "", text)
    lock.write_text("# regenerated\n\n" + text)
    assert read(root).digest == before
    # a file the target installs
    markupsafe = next(p for p in read(root).locked if p.name == "markupsafe")
    edit(lock, markupsafe.wheels[0].sha256, "0" * 64)
    assert read(root).digest != before


def test_uv_lock_server_and_project_are_in_the_key(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    reqs = read(root)
    assert dataclasses.replace(reqs, extra=("gunicorn",)).digest != reqs.digest
    no_project = read(root, **{"install-project": False})
    assert no_project.project is None and no_project.digest != reqs.digest


def test_uv_lock_editable_key_ignores_code_but_not_layout(tmp_path: Path) -> None:
    """The editable project points at the source in the image: a code change keeps the
    key (and the deps layer); what an install maps (packages, top-level modules, the
    packaging files) changes it."""
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    before = read(root).digest
    (root / "src" / "lockdemo" / "__init__.py").write_text("CHANGED = True\n")
    (root / "src" / "lockdemo" / "views.py").write_text("VIEW = 1\n")
    assert read(root).digest == before
    (root / "src" / "lockdemo" / "sub").mkdir()
    with_package = read(root).digest
    assert with_package != before
    (root / "app.py").write_text("print('a new top-level module')\n")
    with_module = read(root).digest
    assert with_module != with_package
    edit(
        root / "pyproject.toml",
        "[tool.warpdrive]",
        "[tool.hatch.build]\ndev-mode-dirs = ['.']\n\n[tool.warpdrive]",
    )
    assert read(root).digest != with_module


def test_a_non_editable_project_is_keyed_by_its_files(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    edit(root / "uv.lock", 'source = { editable = "." }', 'source = { directory = "." }')
    before = read(root)
    assert before.project is not None and not before.project.editable
    (root / "src" / "lockdemo" / "__init__.py").write_text("CHANGED = True\n")
    assert read(root).digest != before.digest


def test_uv_lock_no_entry_for_the_target_python(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    message = error(root, target_for(key("3.9.18")))
    assert "uv.lock line 3: the lock is for Python >=3.10" in message
    assert "runs Python 3.9.18" in message and "no entry for it" in message


def test_uv_lock_no_entry_for_the_target_platform(tmp_path: Path) -> None:
    """pywin32 has only Windows wheels: on Linux, with its marker gone, it is an error."""
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    edit(
        root / "uv.lock",
        '{ name = "pywin32", marker = "sys_platform == \'win32\'" }',
        '{ name = "pywin32" }',
    )
    message = error(root)
    assert f"uv.lock line {line_of(root / 'uv.lock', '^name = .pywin32.')}" in message
    assert "pywin32 312 has no wheel for the target image" in message
    assert "no entry for this platform" in message


def test_uv_lock_supported_environments(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    edit(
        root / "uv.lock",
        'requires-python = ">=3.10"\n',
        'requires-python = ">=3.10"\nsupported-environments = ["sys_platform == \'darwin\'"]\n',
    )
    message = error(root)
    assert "uv.lock line 4: the lock supports only sys_platform == 'darwin'" in message


@pytest.mark.parametrize(
    ("damage", "expect"),
    [
        ("version = 1\n", "uv.lock line 1: uv.lock version 2 is not supported"),
        ("[[package]]\n", "is not valid TOML"),
    ],
)
def test_uv_lock_unreadable(tmp_path: Path, damage: str, expect: str) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    if damage.startswith("version"):
        edit(root / "uv.lock", damage, "version = 2\n")
    else:
        edit(root / "uv.lock", damage, "[[package]\n")
    message = error(root)
    assert expect in message and "fix:" in message, message


def test_uv_lock_binary_garbage(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    (root / "uv.lock").write_bytes(b"\xff\xfe\x00garbage")
    assert "is not UTF-8 text" in error(root)


def test_uv_lock_git_source_is_refused_by_name(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    edit(
        root / "uv.lock",
        'version = "2.2.0"\nsource = { registry = "https://pypi.org/simple" }',
        'version = "2.2.0"\nsource = { git = "https://example.org/x.git" }',
    )
    message = error(root)
    assert "itsdangerous comes from a `git` source" in message
    assert f"uv.lock line {line_of(root / 'uv.lock', '^name = .itsdangerous.')}" in message


def test_uv_lock_virtual_project_installs_no_project(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    edit(root / "uv.lock", 'source = { editable = "." }', 'source = { virtual = "." }')
    assert read(root).project is None
    assert "is virtual" in error(root, **{"install-project": True})


def test_uv_lock_package_without_build_system(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    edit(
        root / "pyproject.toml",
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n',
        "",
    )
    message = error(root)
    assert "has no [build-system]" in message and "install-project = false" in message


def test_uv_lock_fork_takes_the_version_for_the_targets_python(tmp_path: Path) -> None:
    """A forked resolution (two versions of one package, split by markers): the edge
    names the version, the target's Python picks the edge."""
    root = project(tmp_path, "uv-fork")
    assert pins(read(root)) == {"iniconfig": "2.0.0"}
    assert pins(read(root, PY310)) == {"iniconfig": "1.1.1"}
    assert read(root).project is None  # virtual


# ----------------------------------------------------------------------------- pylock.toml


def test_pylock_exported_by_uv(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "pylock.toml"\n')
    reqs = read(root)
    assert pins(reqs) == BASE
    assert reqs.project is not None and reqs.project.editable  # directory = { path = "." }
    assert "tomli" in pins(read(root, PY310)) and "pywin32" in pins(read(root, WINDOWS))
    assert reqs.locked_from == "pylock.toml"


def test_pylock_and_uv_lock_give_the_same_key(tmp_path: Path) -> None:
    """The same packages and files: the same deps layer, whichever lock names them."""
    uv_lock = read(project(tmp_path / "a", "uv", 'lock = "uv.lock"\n'))
    pylock = read(project(tmp_path / "b", "uv", 'lock = "pylock.toml"\n'))
    assert [p.identity() for p in uv_lock.locked] == [p.identity() for p in pylock.locked]


PYLOCK = """\
lock-version = "1.0"
created-by = "hand"
requires-python = ">=3.10"
extras = ["cli"]
dependency-groups = ["dev"]
default-groups = ["default"]

[[packages]]
name = "itsdangerous"
version = "2.2.0"
wheels = [
  { url = "https://f.example/itsdangerous-2.2.0-py3-none-any.whl", hashes = { sha256 = "%(a)s" } },
]

[[packages]]
name = "click"
version = "8.5.1"
marker = "'cli' in extras"
wheels = [
  { url = "https://f.example/click-8.5.1-py3-none-any.whl", hashes = { sha256 = "%(b)s" } },
]

[[packages]]
name = "iniconfig"
version = "2.3.1"
marker = "'dev' in dependency_groups"
sdist = { url = "https://f.example/iniconfig-2.3.1.tar.gz", hashes = { sha256 = "%(c)s" } }

[[packages]]
name = "winonly"
version = "1.0"
marker = "sys_platform == 'win32'"
wheels = [
  { url = "https://f.example/winonly-1.0-py3-none-win_amd64.whl", hashes = { sha256 = "%(d)s" } },
]
"""


def pylock_project(tmp_path: Path, text: str, warpdrive: str = "") -> Path:
    root = tmp_path / "pl"
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "pl"\n\n[tool.warpdrive]\n' + warpdrive)
    (root / "pylock.toml").write_text(text % {k: k * 64 for k in "abcd"})
    return root


def test_pylock_extras_groups_and_markers(tmp_path: Path) -> None:
    root = pylock_project(tmp_path, PYLOCK)
    assert pins(read(root)) == {"itsdangerous": "2.2.0"}
    assert set(pins(read(root, extras=["cli"], groups=["dev"]))) == {
        "itsdangerous",
        "click",
        "iniconfig",
    }
    iniconfig = next(p for p in read(root, groups=["dev"]).locked if p.name == "iniconfig")
    assert not iniconfig.wheels and iniconfig.sdist is not None
    assert iniconfig.sdist.sha256 == "c" * 64
    assert "winonly" in pins(read(root, WINDOWS))


def test_pylock_undeclared_names(tmp_path: Path) -> None:
    root = pylock_project(tmp_path, PYLOCK)
    assert "does not declare (it has: cli)" in error(root, extras=["postgres"])
    assert "it has: default, dev" in error(root, groups=["prod"])


def test_pylock_no_wheel_for_the_target(tmp_path: Path) -> None:
    root = pylock_project(tmp_path, PYLOCK.replace("marker = \"sys_platform == 'win32'\"\n", ""))
    message = error(root)
    assert f"pylock.toml line {line_of(root / 'pylock.toml', '^name = .winonly.')}" in message
    assert "no entry for the target image" in message


def test_pylock_invalid(tmp_path: Path) -> None:
    root = pylock_project(tmp_path, PYLOCK.replace('lock-version = "1.0"\n', ""))
    message = error(root)
    assert "not a valid pylock file" in message and "lock-version" in message
    bad = pylock_project(
        tmp_path / "x", PYLOCK.replace("itsdangerous-2.2.0-py3", "other-2.2.0-py3")
    )
    assert f"pylock.toml line {line_of(bad / 'pylock.toml', '^name = .itsdangerous.')}" in error(
        bad
    )


def test_pylock_named_file_and_python(tmp_path: Path) -> None:
    root = pylock_project(tmp_path, PYLOCK)
    (root / "pylock.toml").rename(root / "pylock.prod.toml")
    reqs = read(root)
    assert reqs.locked_from == "pylock.prod.toml"
    assert "the lock has no entry for the target image" in error(root, target_for(key("3.9.1")))


# ----------------------------------------------------------------------------- poetry.lock


def test_poetry_lock_selects_for_the_target(tmp_path: Path) -> None:
    root = project(tmp_path, "poetry")
    reqs = read(root)
    assert pins(reqs) == BASE
    markupsafe = next(p for p in reqs.locked if p.name == "markupsafe")
    assert markupsafe.wheels and markupsafe.wheels[0].url is None  # found on the index
    assert (
        markupsafe.where
        == f"poetry.lock line {line_of(root / 'poetry.lock', '^name = .markupsafe.')}"
    )
    assert reqs.project is not None and reqs.project.name == "lockdemo"
    assert "tomli" in pins(read(root, PY310)) and "pywin32" in pins(read(root, WINDOWS))
    assert set(pins(read(root, extras=["cli"], groups=["prod"]))) == {*BASE, "click", "gunicorn"}


def test_poetry_lock_same_key_as_uv_lock(tmp_path: Path) -> None:
    uv_lock = read(
        project(tmp_path / "a", "uv", 'lock = "uv.lock"\n'), **{"install-project": False}
    )
    poetry = read(project(tmp_path / "b", "poetry"), **{"install-project": False})
    assert uv_lock.digest == poetry.digest


def test_poetry_content_hash_is_poetrys() -> None:
    from nox_warpdrive.config import load_pyproject

    lock = (FIXTURES / "poetry" / "poetry.lock").read_text()
    want = re.search(r'content-hash = "(\w+)"', lock)
    assert want and poetry_content_hash(load_pyproject(FIXTURES / "poetry")) == want.group(1)


def test_poetry_lock_out_of_date(tmp_path: Path) -> None:
    root = project(tmp_path, "poetry")
    edit(root / "pyproject.toml", '"itsdangerous>=2.2"', '"itsdangerous>=2.3"')
    message = error(root)
    line = line_of(root / "poetry.lock", "^content-hash")
    assert f"poetry.lock line {line}: poetry.lock is out of date" in message
    assert "fix: run `poetry lock`" in message


def test_poetry_lock_names_and_versions(tmp_path: Path) -> None:
    root = project(tmp_path, "poetry")
    assert "it has: dev, main, prod" in error(root, groups=["test"])
    assert "it has: cli" in error(root, extras=["x"])
    edit(root / "poetry.lock", 'lock-version = "2.1"', 'lock-version = "2.0"')
    assert "poetry.lock format 2.0 is not supported" in error(root)


def test_poetry_package_mode_off(tmp_path: Path) -> None:
    root = project(tmp_path, "poetry")
    edit(
        root / "pyproject.toml",
        "[build-system]",
        "[tool.poetry]\npackage-mode = false\n\n[build-system]",
    )
    assert read(root).project is None


@pytest.mark.parametrize(
    ("constraint", "version", "ok"),
    [
        (">=3.10", "3.11.2", True),
        ("^3.11", "3.12.0", True),
        ("^3.11", "4.0.0", False),
        ("~3.11", "3.12.0", False),
        (">=3.8,<3.11", "3.11.2", False),
        (">=3.8 <3.12", "3.11.2", True),
        ("3.10.* || 3.11.*", "3.11.2", True),
        ("3.10.*", "3.11.2", False),
        ("*", "3.11.2", True),
        ("not a constraint", "3.11.2", True),
    ],
)
def test_poetry_python_constraints(constraint: str, version: str, ok: bool) -> None:
    from nox_warpdrive.inputs.locks.poetry import _poetry_python_ok

    assert _poetry_python_ok(constraint, version) is ok


def test_poetry_lock_no_entry_for_the_python(tmp_path: Path) -> None:
    root = project(tmp_path, "poetry")
    edit(
        root / "poetry.lock",
        'python-versions = ">=3.10"\ncontent',
        'python-versions = "^3.12"\ncontent',
    )
    assert "the lock is for Python ^3.12" in error(root)


# ----------------------------------------------------------------------------- Pipfile.lock


def test_pipfile_lock(tmp_path: Path) -> None:
    root = project(tmp_path, "pipenv")
    reqs = read(root)
    assert pins(reqs) == BASE  # colorama (win32) and tomli (< 3.11) were not pinned: skipped
    its = next(p for p in reqs.locked if p.name == "itsdangerous")
    assert len(its.hashes) == 2 and not its.wheels and its.index == "https://pypi.org/simple"
    line = line_of(root / "Pipfile.lock", '"itsdangerous"')
    assert its.where == f"Pipfile.lock line {line}"
    assert set(pins(read(root, groups=["dev", "prod"]))) == {*BASE, "iniconfig", "gunicorn"}


def test_pipfile_hash_is_pipenvs() -> None:
    from nox_warpdrive.inputs.model import tomllib

    lock = json.loads((FIXTURES / "pipenv" / "Pipfile.lock").read_text())
    pipfile = tomllib.loads((FIXTURES / "pipenv" / "Pipfile").read_text())
    assert pipfile_hash(pipfile) == lock["_meta"]["hash"]["sha256"]


def test_pipfile_lock_errors(tmp_path: Path) -> None:
    root = project(tmp_path, "pipenv")
    assert "categories: default, develop, prod" in error(root, groups=["test"])
    assert "does not apply to Pipfile.lock" in error(root, extras=["x"])
    # locked for Python 3.11 on Linux: 3.10 has no entry
    assert "the lock is for Python 3.11" in error(root, PY310)
    # Windows needs colorama, which this lock could not pin
    message = error(root, WINDOWS)
    assert "colorama is not pinned with hashes" in message
    line = line_of(root / "Pipfile.lock", '"colorama"')
    assert f"Pipfile.lock line {line}" in message
    edit(root / "Pipfile", 'gunicorn = ">=23"', 'gunicorn = ">=24"')
    assert "Pipfile.lock is out of date with the Pipfile" in error(root)
    (root / "Pipfile.lock").write_text('{"_meta": {\n  "hash": }')
    assert "Pipfile.lock is not valid JSON: Expecting value: line 2" in error(root)
