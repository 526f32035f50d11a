"""What the app is installed from (no Docker): the order inputs are chosen in, the target
image's tags and markers, requirement files with --hash, the plan the builder gets, and
the errors a locked build reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_inputs_locks import LINUX, PY310, WINDOWS, key, pins, project
from unit_support import PKEY

from nox_warpdrive.config import load_config
from nox_warpdrive.errors import ConfigError
from nox_warpdrive.inputs.model import LockedFile, Pin, host_target, target_for, target_tags
from nox_warpdrive.inputs.read import read_hashed_requirements, read_inputs
from nox_warpdrive.inputs.requirements import RequirementSet
from nox_warpdrive.platform import PROBE_SCRIPT, parse_probe_output
from nox_warpdrive.wheelhouse.build import WheelhousePlan, builder_failure

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


def write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def config_error(root: Path, **overrides: Any) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(root, overrides)
    return str(exc.value)


# ----------------------------------------------------------------------------- which inputs

PYPROJECT = '[project]\nname = "app"\ndependencies = ["flask"]\n'


@pytest.mark.parametrize(
    ("present", "chosen"),
    [
        (["pylock.toml", "requirements.txt"], "pylock.toml"),
        (["pylock.web.toml", "requirements.txt"], "pylock.web.toml"),
        (["uv.lock", "requirements.txt"], "uv.lock"),
        (["poetry.lock", "requirements.txt"], "poetry.lock"),
        (["Pipfile.lock", "requirements.txt"], "Pipfile.lock"),
        (["requirements.txt"], "requirements.txt"),
        ([], "[project].dependencies"),
    ],
)
def test_inputs_are_chosen_in_order(tmp_path: Path, present: list[str], chosen: str) -> None:
    write(tmp_path, {"pyproject.toml": PYPROJECT, **dict.fromkeys(present, "")})
    cfg = load_config(tmp_path)
    assert cfg.inputs_reason.startswith(chosen)
    if chosen.endswith((".lock", ".toml")):
        assert cfg.lock_file == tmp_path / chosen and cfg.requirement_files == ()
        assert cfg.inputs_reason == f"{chosen} (found)"
    elif chosen == "requirements.txt":
        assert cfg.lock_file is None and cfg.requirement_files == (tmp_path / chosen,)
    else:
        assert cfg.dependencies == ("flask",)


def test_several_locks_and_no_key_is_an_error_that_shows_the_key(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": PYPROJECT, "uv.lock": "", "pylock.toml": "", "x.lock": ""})
    message = config_error(tmp_path)
    assert "several lock files (pylock.toml, uv.lock)" in message
    assert 'fix: set `lock = "pylock.toml"` (or another of them) in [tool.warpdrive]' in message
    cfg = load_config(tmp_path, {"lock": "uv.lock"})
    assert cfg.lock_format == "uv"
    assert cfg.inputs_reason == "uv.lock (set by `lock` in [tool.warpdrive])"


def test_requirements_key_wins_over_lock_files(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": PYPROJECT, "uv.lock": "", "req.txt": "flask\n"})
    cfg = load_config(tmp_path, {"requirements": ["req.txt"]})
    assert cfg.lock_file is None and cfg.requirement_files == (tmp_path / "req.txt",)
    assert "set `lock` and `requirements`" not in cfg.inputs_reason
    assert "both `lock` and `requirements`" in config_error(
        tmp_path, lock="uv.lock", requirements=["req.txt"]
    )


@pytest.mark.parametrize(
    ("overrides", "expect"),
    [
        ({"lock": "deps.lock"}, "not a lock file name nox-warpdrive reads"),
        ({"lock": "poetry.lock"}, "lock file 'poetry.lock' not found"),
        ({"lock": 1}, "expected a string"),
        ({"groups": "prod"}, "expected a list of dependency group names"),
        ({"groups": [1]}, "must be a list of names"),
        ({"extras": [""]}, "must be a list of names"),
        ({"install-project": "no"}, "expected true or false"),
        ({"lcok": "uv.lock"}, "did you mean `lock`?"),
        ({"group": ["prod"]}, "did you mean `groups`?"),
    ],
)
def test_bad_keys(tmp_path: Path, overrides: dict[str, Any], expect: str) -> None:
    write(tmp_path, {"pyproject.toml": PYPROJECT})
    assert expect in config_error(tmp_path, **overrides)


def test_groups_and_extras_need_a_lock_or_project_dependencies(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": PYPROJECT, "requirements.txt": "flask\n"})
    message = config_error(tmp_path, groups=["prod"])
    assert "`groups` in [tool.warpdrive] needs a lock file or [project].dependencies" in message
    assert "requirements.txt (found)" in message
    assert "only applies to a lock file" in config_error(tmp_path, **{"install-project": False})


def test_project_dependencies_with_groups_and_extras(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": PYPROJECT.replace('["flask"]', '["flask"]\n')
            + '[project.optional-dependencies]\nPostgres = ["psycopg2"]\n'
            + '[dependency-groups]\nprod = ["gunicorn", {include-group = "base"}]\n'
            + 'base = ["whitenoise"]\ndev = ["pytest"]\n'
        },
    )
    cfg = load_config(tmp_path, {"groups": ["prod"], "extras": ["postgres"]})
    assert cfg.dependencies == ("flask", "gunicorn", "whitenoise", "psycopg2")
    assert "has: base, dev, prod" in config_error(tmp_path, groups=["test"])
    assert "has: Postgres" in config_error(tmp_path, extras=["mysql"])


# ----------------------------------------------------------------------------- the target


def test_target_tags_equal_packagings_for_this_host() -> None:
    """The probe run here, turned into tags, gives exactly packaging's sys_tags: the same
    code then lists an image's tags from its probe."""
    out = subprocess.run([sys.executable, "-c", PROBE_SCRIPT], capture_output=True, text=True)
    probed = parse_probe_output(out.stdout, "host")
    if probed.libc != "glibc":
        pytest.skip("the host's libc is not glibc")  # pragma: no cover
    assert target_for(probed).tags == host_target().tags
    assert dict(target_for(probed).markers) == dict(host_target().markers)


def test_target_tags_of_other_platforms() -> None:
    arm = target_tags(key(machine="aarch64"))
    assert arm[0] == "cp311-cp311-linux_aarch64"
    assert "cp311-cp311-manylinux_2_17_aarch64" in arm
    assert "cp311-cp311-manylinux2014_aarch64" in arm
    assert not any("manylinux_2_16_aarch64" in t or "manylinux1" in t for t in arm)
    x86 = target_tags(key())
    assert (
        x86.index("cp311-cp311-manylinux_2_36_x86_64")
        < x86.index("cp311-cp311-manylinux2014_x86_64")
        < x86.index("cp311-cp311-manylinux1_x86_64")
    )
    assert x86[-1] == "py30-none-any"
    musl = target_tags(key(libc="musl"))
    assert "cp311-cp311-musllinux_1_2_x86_64" in musl
    assert not any("manylinux" in t for t in musl)


def test_target_without_probed_markers_derives_them() -> None:
    target = target_for(PKEY)  # a key from an older probe: no markers
    env = target.environment()
    assert env["python_full_version"] == "3.12.4" and env["python_version"] == "3.12"
    assert env["sys_platform"] == "linux" and env["platform_machine"] == "x86_64"
    assert env["implementation_name"] == "cpython"


def test_markers_and_ranks() -> None:
    assert LINUX.matches("sys_platform == 'linux'") and not WINDOWS.matches("os_name == 'posix'")
    assert not LINUX.matches('extra == "cli"') and LINUX.matches('extra == "cli"', ["cli"])
    assert PY310.matches("python_version < '3.11'") and not LINUX.matches("python_version < '3.11'")
    assert LINUX.rank("x-1-py3-none-any.whl") is not None
    assert LINUX.rank("x-1-cp311-cp311-win_amd64.whl") is None
    assert LINUX.rank("not a wheel.whl") is None
    best = LINUX.rank("x-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert best is not None and best < (LINUX.rank("x-1-py3-none-any.whl") or 0)


# ----------------------------------------------------------------------------- --hash


def hashed(tmp_path: Path, text: str, more: dict[str, str] | None = None) -> Path:
    return write(
        tmp_path,
        {"pyproject.toml": '[project]\nname = "h"\n', "requirements.txt": text, **(more or {})},
    )


def test_hashed_requirements_are_pins(tmp_path: Path) -> None:
    root = hashed(
        tmp_path,
        "# generated\n--index-url https://mirror.example/simple\n"
        f"flask==3.1.3 \\\n    --hash=sha256:{SHA_A} \\\n    --hash=sha256:{SHA_B}\n"
        "    # via -r requirements.in\n"
        f"pywin32==311 ; sys_platform == 'win32' --hash=sha256:{SHA_C}\n"
        f"tomli==2.0.1 ; python_version < '3.11' --hash=sha256:{SHA_C}\n"
        "-r more.txt\n-c constraints.txt\n",
        {
            "more.txt": f"Jinja2==3.1.6 --hash=sha256:{SHA_C}\n--extra-index-url https://x.example/\n"
        },
    )
    reqs = read_inputs(load_config(root), LINUX)
    assert pins(reqs) == {"flask": "3.1.3", "jinja2": "3.1.6"}
    flask = next(p for p in reqs.locked if p.name == "flask")
    assert flask.hashes == (SHA_A, SHA_B) and flask.where == "requirements.txt line 3"
    assert flask.index == "https://mirror.example/simple"
    assert reqs.indexes == ("https://x.example/",)
    assert reqs.locked_from == "requirements.txt (--hash)" and reqs.files == ()
    assert set(pins(read_inputs(load_config(root), PY310))) == {"flask", "jinja2", "tomli"}
    assert "pywin32" in pins(read_inputs(load_config(root), WINDOWS))


def test_requirements_without_hashes_are_resolved(tmp_path: Path) -> None:
    root = hashed(tmp_path, "--find-links /wheels\n--no-binary :all:\nflask>=3\n")
    assert read_hashed_requirements(load_config(root), LINUX) is None
    reqs = read_inputs(load_config(root), LINUX)
    assert not reqs.locked_from and reqs.top == ("requirements.txt",)


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        (f"flask==3.1.3 --hash=sha256:{SHA_A}\njinja2==3.1.6\n", "requirements.txt line 2: a "),
        (f"flask>=3.1 --hash=sha256:{SHA_A}\n", "is not pinned with =="),
        (f"flask==3.* --hash=sha256:{SHA_A}\n", "is not pinned with =="),
        (f"flask==3.1.3 --hash=md5:{'a' * 32}\n", "only sha256 hashes are checked"),
        (f"--find-links /x\nflask==3.1.3 --hash=sha256:{SHA_A}\n", "option --find-links"),
        (f"flask==3.1.3 --hash=sha256:{SHA_A}\nflask==3.1.2 --hash=sha256:{SHA_B}\n", "twice"),
    ],
)
def test_hashed_requirement_errors(tmp_path: Path, text: str, expect: str) -> None:
    root = hashed(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        read_inputs(load_config(root), LINUX)
    assert expect in str(exc.value)


def test_the_same_pin_twice_joins_its_hashes(tmp_path: Path) -> None:
    root = hashed(
        tmp_path, f"flask==3.1.3 --hash=sha256:{SHA_A}\nflask==3.1.3 --hash=sha256:{SHA_B}\n"
    )
    (flask,) = read_inputs(load_config(root), LINUX).locked
    assert flask.hashes == (SHA_A, SHA_B)


# ----------------------------------------------------------------------------- the set


def locked_set(*pins_: Pin, extra: tuple[str, ...] = ()) -> RequirementSet:
    return RequirementSet(files=(), top=(), extra=extra, locked_from="uv.lock", locked=tuple(pins_))


FLASK = Pin(
    "flask",
    "3.1.3",
    (LockedFile("flask-3.1.3-py3-none-any.whl", SHA_A, "https://f/flask.whl"),),
    LockedFile("flask-3.1.3.tar.gz", SHA_B, "https://f/flask.tar.gz"),
    where="uv.lock line 3",
)


def test_the_key_ignores_urls_lines_and_order() -> None:
    moved = Pin(
        "flask",
        "3.1.3",
        (LockedFile("flask-3.1.3-py3-none-any.whl", SHA_A, "https://mirror/flask.whl"),),
        LockedFile("flask-3.1.3.tar.gz", SHA_B),
        where="uv.lock line 90",
    )
    other = Pin("jinja2", "3.1.6", hashes=(SHA_C,))
    assert locked_set(FLASK, other).digest == locked_set(other, moved).digest
    assert locked_set(FLASK).digest != locked_set(FLASK, other).digest
    assert locked_set(FLASK).digest != locked_set(FLASK, extra=("gunicorn",)).digest
    assert locked_set().empty and not locked_set(FLASK).empty
    assert locked_set(FLASK, extra=("gunicorn",)).names() == {"flask", "gunicorn"}


def test_a_locked_plan_tells_the_builder_every_pin() -> None:
    plan = WheelhousePlan(
        volume="v",
        builder_image="img",
        key=PKEY,
        requirements=locked_set(FLASK, extra=("gunicorn",)),
        no_index=False,
        network=None,
        python="python3",
    )
    data = json.loads(plan.plan_json())
    assert data["locked"] == [
        {
            "name": "flask",
            "version": "3.1.3",
            "wheels": [
                {
                    "file": "flask-3.1.3-py3-none-any.whl",
                    "sha256": SHA_A,
                    "url": "https://f/flask.whl",
                }
            ],
            "sdist": {
                "file": "flask-3.1.3.tar.gz",
                "sha256": SHA_B,
                "url": "https://f/flask.tar.gz",
            },
            "hashes": [],
            "index": None,
            "where": "uv.lock line 3",
        }
    ]
    assert data["project"] is None and data["extra"] == ["gunicorn"] and data["top"] == []
    unlocked = WheelhousePlan(
        "v", "img", PKEY, RequirementSet((), ("r.txt",), ()), False, None, "p"
    )
    assert "locked" not in json.loads(unlocked.plan_json())


def test_the_project_source_goes_to_the_builder_as_data(tmp_path: Path) -> None:
    import io
    import tarfile

    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    (root / ".dockerignore").write_text("secret.txt\n")
    (root / "secret.txt").write_text("no")
    reqs = read_inputs(load_config(root), LINUX)
    assert reqs.project is not None
    step = WheelhousePlan("v", "img", PKEY, reqs, False, None, "python3").step()
    ((_, archive),) = step.files
    with tarfile.open(fileobj=io.BytesIO(archive)) as outer:
        assert "warpdrive-build/project.tar" in outer.getnames()
        inner = outer.extractfile("warpdrive-build/project.tar")
        assert inner is not None
        with tarfile.open(fileobj=io.BytesIO(inner.read())) as source:
            names = source.getnames()
    assert "pyproject.toml" in names and "src/lockdemo/__init__.py" in names
    assert "secret.txt" not in names
    plan = json.loads(WheelhousePlan("v", "img", PKEY, reqs, False, None, "python3").plan_json())
    assert plan["project"]["dest"] == "/opt/app-root/src" and plan["project"]["editable"]


def test_the_project_is_built_where_the_image_has_the_source() -> None:
    from nox_warpdrive import layout

    assert layout.APP_SRC == "/opt/app-root/src"


# ----------------------------------------------------------------------------- failures


def test_a_hash_mismatch_names_the_package_the_line_and_both_hashes() -> None:
    failure = {
        "stage": "hash",
        "package": "wd-pure-demo",
        "file": "wd_pure_demo-0.1.0-py3-none-any.whl",
        "expected": [SHA_A],
        "got": SHA_B,
        "where": "uv.lock line 12",
        "detail": [],
    }
    message = str(builder_failure(5, failure, {}))
    assert message.startswith("uv.lock line 12: the lock does not allow the file of wd-pure-demo")
    assert SHA_A in message and SHA_B in message and "it was not installed" in message
    assert "fix:" in message


@pytest.mark.parametrize(
    ("stage", "expect"),
    [
        ("missing", "is missing from the index"),
        ("platform", "fits the builder's Python"),
        ("project", "building the project x itself failed"),
    ],
)
def test_other_locked_failures(stage: str, expect: str) -> None:
    message = str(
        builder_failure(5, {"stage": stage, "package": "x", "where": "uv.lock line 3"}, {})
    )
    assert expect in message and "fix:" in message
