"""[tool.warpdrive] -> Config, and requirement files -> RequirementSet (no Docker)."""

from __future__ import annotations

import posixpath
from pathlib import Path

import pytest
from unit_support import write

from nox_warpdrive.config import DEFAULT_BASE_IMAGE, Config, load_config, normalize, start_config
from nox_warpdrive.errors import ConfigError, WarpdriveError
from nox_warpdrive.inputs.requirements import RequirementSet, read_requirements

# ----------------------------------------------------------------------------- helpers


def project(root: Path, pyproject: str | None = None, **files: str) -> Path:
    """A project dir with an optional pyproject.toml and top-level files."""
    root.mkdir(parents=True, exist_ok=True)
    if pyproject is not None:
        (root / "pyproject.toml").write_text(pyproject)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def config_error(root: Path, **overrides: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(root, overrides or None)
    return str(info.value)


def files_of(reqs: RequirementSet) -> dict[str, str]:
    return {name: data.decode() for name, data in reqs.files}


# ----------------------------------------------------------------------------- defaults


def test_defaults_come_from_project_name(tmp_path: Path) -> None:
    root = project(tmp_path / "folder", '[project]\nname = "My_Site"\n')
    cfg = load_config(root)
    assert cfg.name == "my-site"
    assert cfg.image == "my-site:latest"
    assert cfg.base_image == DEFAULT_BASE_IMAGE
    assert cfg.builder_image == DEFAULT_BASE_IMAGE
    assert cfg.volume == "warpdrive-my-site"
    assert cfg.no_index is False
    assert cfg.network is None
    assert cfg.python == "python3"
    assert cfg.collectstatic is True
    assert cfg.server is None  # chosen by the app: gunicorn for WSGI, uvicorn for ASGI
    assert cfg.installer == "auto"
    assert cfg.project_dir == root.resolve()


def test_name_falls_back_to_normalised_folder_name(tmp_path: Path) -> None:
    root = project(tmp_path / "My Cool App", "")
    cfg = load_config(root)
    assert cfg.name == "my-cool-app"
    assert cfg.image == "my-cool-app:latest"
    assert cfg.volume == "warpdrive-my-cool-app"


def test_name_comes_from_the_image_repository_before_the_folder(tmp_path: Path) -> None:
    """A checkout's folder may be called anything ("repo"): the repository the user
    named in `image` is a better name for the volume and the deps images."""
    table = '[tool.warpdrive]\nimage = "registry.example.com:5000/team/bakery_demo:1.0"\n'
    cfg = load_config(project(tmp_path / "repo", table))
    assert (cfg.name, cfg.name_source) == ("bakery-demo", "image")
    assert cfg.volume == "warpdrive-bakery-demo"
    assert cfg.image == "registry.example.com:5000/team/bakery_demo:1.0"
    named = load_config(project(tmp_path / "r2", '[project]\nname = "shop"\n' + table))
    assert (named.name, named.name_source) == ("shop", "[project].name")
    folder = load_config(project(tmp_path / "Shop"))
    assert (folder.name, folder.name_source) == ("shop", "folder")


def test_no_pyproject_at_all_uses_folder_name(tmp_path: Path) -> None:
    root = project(tmp_path / "Shop")
    cfg = load_config(root)
    assert (cfg.name, cfg.image) == ("shop", "shop:latest")
    assert cfg.requirement_files == ()
    assert cfg.dependencies == ()


def test_builder_image_defaults_to_base_image(tmp_path: Path) -> None:
    root = project(tmp_path / "p", '[tool.warpdrive]\nbase-image = "python:3.11-slim"\n')
    cfg = load_config(root)
    assert cfg.base_image == "python:3.11-slim"
    assert cfg.builder_image == "python:3.11-slim"


def test_explicit_settings_are_read(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p",
        "[tool.warpdrive]\n"
        'image = "registry.example.com:5000/team/site:v2"\n'
        'base-image = "python:3.12-slim"\n'
        'builder-image = "mybuilder:3.12"\n'
        'volume = "my-wheels"\n'
        "no-index = true\n"
        'network = "host"\n'
        'python = "python3.12"\n'
        "collectstatic = false\n",
    )
    cfg = load_config(root)
    assert cfg.image == "registry.example.com:5000/team/site:v2"
    assert cfg.builder_image == "mybuilder:3.12"
    assert cfg.volume == "my-wheels"
    assert cfg.no_index is True
    assert cfg.network == "host"
    assert cfg.python == "python3.12"
    assert cfg.collectstatic is False


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(project(tmp_path / "p", ""))
    with pytest.raises(AttributeError):
        cfg.image = "other:latest"  # type: ignore[misc]


# ----------------------------------------------------------------------------- requirements


def test_requirements_txt_is_auto_detected(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p",
        '[project]\nname = "p"\ndependencies = ["flask"]\n',
        **{"requirements.txt": "django\n"},
    )
    cfg = load_config(root)
    assert cfg.requirement_files == ((root / "requirements.txt").resolve(),)
    assert cfg.dependencies == ()  # requirements.txt wins over [project].dependencies


def test_project_dependencies_used_without_requirements_txt(tmp_path: Path) -> None:
    root = project(tmp_path / "p", '[project]\nname = "p"\ndependencies = ["flask>=3", "rich"]\n')
    cfg = load_config(root)
    assert cfg.requirement_files == ()
    assert cfg.dependencies == ("flask>=3", "rich")
    reqs = read_requirements(cfg)
    assert reqs.top == ("_project-dependencies.txt",)
    assert files_of(reqs) == {"_project-dependencies.txt": "flask>=3\nrich\n"}


def test_explicit_requirements_list_and_string(tmp_path: Path) -> None:
    root = project(tmp_path / "p", None, **{"a.txt": "x\n", "b.txt": "y\n", "requirements.txt": ""})
    (root / "pyproject.toml").write_text('[tool.warpdrive]\nrequirements = ["a.txt", "b.txt"]\n')
    root = root.resolve()
    assert load_config(root).requirement_files == (root / "a.txt", root / "b.txt")
    (root / "pyproject.toml").write_text('[tool.warpdrive]\nrequirements = "b.txt"\n')
    assert load_config(root).requirement_files == (root / "b.txt",)


def test_missing_requirements_file_is_a_config_error(tmp_path: Path) -> None:
    root = project(tmp_path / "p", '[tool.warpdrive]\nrequirements = ["nope.txt"]\n')
    msg = config_error(root)
    assert "nope.txt" in msg
    assert "fix:" in msg


def test_project_dependencies_must_be_strings(tmp_path: Path) -> None:
    root = project(tmp_path / "p", '[project]\nname = "p"\ndependencies = [1]\n')
    assert "[project].dependencies" in config_error(root)


# ----------------------------------------------------------------------------- bad keys


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("base_image", "base-image"), ("no_index", "no-index"), ("imag", "image")],
)
def test_unknown_key_names_it_and_suggests_the_closest(
    tmp_path: Path, key: str, suggestion: str
) -> None:
    root = project(tmp_path / "p", f'[tool.warpdrive]\n{key} = "x"\n')
    msg = config_error(root)
    assert f"unknown key `{key}`" in msg
    assert f"did you mean `{suggestion}`?" in msg


def test_unknown_key_far_from_everything_lists_valid_keys(tmp_path: Path) -> None:
    msg = config_error(project(tmp_path / "p", "[tool.warpdrive]\nzzzzzzzz = 1\n"))
    assert "unknown key `zzzzzzzz`" in msg
    assert "valid keys:" in msg
    assert "base-image" in msg and "no-index" in msg


WRONG_TYPE = ("expected", "fix:")
NOT_AN_IMAGE = ("not a valid Docker image reference",)


@pytest.mark.parametrize(
    ("line", "key", "expected"),
    [
        # a value of the wrong type
        pytest.param('no-index = "yes"', "no-index", WRONG_TYPE, id="type-no-index"),
        pytest.param("requirements = 3", "requirements", WRONG_TYPE, id="type-requirements"),
        pytest.param("image = 1", "image", WRONG_TYPE, id="type-image"),
        # an int is not a bool
        pytest.param("collectstatic = 1", "collectstatic", WRONG_TYPE, id="type-collectstatic"),
        pytest.param("network = true", "network", WRONG_TYPE, id="type-network"),
        pytest.param("volume = []", "volume", WRONG_TYPE, id="type-volume"),
        # requirements entries must be strings
        pytest.param("requirements = [3]", "requirements", (), id="requirements-entry"),
        # an invalid image reference
        pytest.param('image = "MySite:latest"', "image", NOT_AN_IMAGE, id="image-uppercase"),
        pytest.param('image = "my site"', "image", NOT_AN_IMAGE, id="image-space"),
        pytest.param('base-image = "python:"', "base-image", NOT_AN_IMAGE, id="base-image-tag"),
        pytest.param('builder-image = "-bad"', "builder-image", NOT_AN_IMAGE, id="builder-image"),
        # an invalid volume name
        pytest.param('volume = "my volume"', "volume", (), id="volume-name"),
    ],
)
def test_bad_value_names_the_key(
    tmp_path: Path, line: str, key: str, expected: tuple[str, ...]
) -> None:
    msg = config_error(project(tmp_path / "p", f"[tool.warpdrive]\n{line}\n"))
    assert f"`{key}`" in msg
    for fragment in expected:
        assert fragment in msg, fragment


def test_installer(tmp_path: Path) -> None:
    root = project(tmp_path / "p", "")
    assert load_config(root).installer == "auto"
    assert load_config(root, {"installer": "pip"}).installer == "pip"
    msg = config_error(root, installer="conda")
    assert "`installer`" in msg and "conda" in msg


def test_unsupported_server(tmp_path: Path) -> None:
    msg = config_error(project(tmp_path / "p", '[tool.warpdrive]\nserver = "hypercorn"\n'))
    assert "`server`" in msg and "hypercorn" in msg
    for name in ("gunicorn", "uvicorn", "waitress", "mod_wsgi", "uwsgi"):
        assert name in msg


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn", "waitress", "mod_wsgi", "uwsgi"])
def test_supported_servers(tmp_path: Path, server: str) -> None:
    cfg = load_config(project(tmp_path / "p", f'[tool.warpdrive]\nserver = "{server}"\n'))
    assert cfg.server == server


def test_start_and_app_module_go_to_the_launcher(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p",
        '[tool.warpdrive]\nstart = "python serve.py"\napp-module = "site.web:app"\n'
        'server = "waitress"\n',
    )
    cfg = load_config(root)
    assert (cfg.start, cfg.app_module) == ("python serve.py", "site.web:app")
    assert start_config(cfg) == {
        "start": "python serve.py",
        "app_module": "site.web:app",
        "server": "waitress",
    }
    # unset keys are left out: the launcher detects
    assert start_config(load_config(project(tmp_path / "q", ""))) == {}


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    root = project(tmp_path / "p", "[tool.warpdrive\nimage = \n")
    msg = config_error(root)
    assert "not valid TOML" in msg
    assert str(root / "pyproject.toml") in msg


def test_warpdrive_must_be_a_table(tmp_path: Path) -> None:
    msg = config_error(project(tmp_path / "p", "[tool]\nwarpdrive = 1\n"))
    assert "must be a table" in msg


def test_non_utf8_pyproject_is_a_config_error(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "pyproject.toml").write_bytes(b"\xff\xfe[tool.warpdrive]\n")
    with pytest.raises(ConfigError):
        load_config(root)


def test_tool_that_is_not_a_table_is_a_config_error(tmp_path: Path) -> None:
    root = project(tmp_path / "p", 'tool = "x"\n')
    with pytest.raises(ConfigError):
        load_config(root)


def test_default_image_from_name_with_mixed_separators_is_valid(tmp_path: Path) -> None:
    root = project(tmp_path / "p", '[project]\nname = "my_-site"\n')
    cfg = load_config(root)
    assert cfg.image.endswith(":latest")


def test_errors_share_the_root_class(tmp_path: Path) -> None:
    with pytest.raises(WarpdriveError):
        load_config(project(tmp_path / "p", "[tool.warpdrive]\nfoo = 1\n"))


# ----------------------------------------------------------------------------- overrides


def test_overrides_win(tmp_path: Path) -> None:
    root = project(tmp_path / "p", '[tool.warpdrive]\nimage = "site:1"\nno-index = false\n')
    cfg = load_config(root, {"image": "site:2", "no-index": True})
    assert cfg.image == "site:2"
    assert cfg.no_index is True


def test_overrides_are_validated_too(tmp_path: Path) -> None:
    root = project(tmp_path / "p", "")
    assert "not a valid Docker image reference" in config_error(root, image="Bad Ref")
    assert "unknown key `tag`" in config_error(root, tag="x:1")


# ----------------------------------------------------------------------------- read_requirements


def cfg_with(root: Path, *reqs: str) -> Config:
    items = ", ".join(f'"{r}"' for r in reqs)
    (root / "pyproject.toml").write_text(f"[tool.warpdrive]\nrequirements = [{items}]\n")
    return load_config(root)


def include_targets(text: str, name: str) -> list[tuple[str, str]]:
    """``(option, shipped name)`` of each include line of shipped file ``name``."""
    out = []
    for line in text.splitlines():
        option, _, target = line.partition(" ")
        if option in ("-r", "-c", "--requirement", "--constraint"):
            out.append(
                (option, posixpath.normpath(posixpath.join(posixpath.dirname(name), target)))
            )
    return out


def test_includes_are_followed_and_rewritten(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root, "requirements.txt", "-r reqs/base.txt\n-c reqs/constraints.txt\nflask\n")
    write(root, "reqs/base.txt", "--requirement=../common.txt\ndjango\n")
    write(root, "reqs/constraints.txt", "django<6\n")
    write(root, "common.txt", "requests\n")
    reqs = read_requirements(cfg_with(root, "requirements.txt"))
    files = files_of(reqs)
    assert reqs.top == ("requirements.txt",)
    assert set(files) == {
        "requirements.txt",
        "reqs/base.txt",
        "reqs/constraints.txt",
        "common.txt",
    }
    assert files["requirements.txt"] == "-r reqs/base.txt\n-c reqs/constraints.txt\nflask\n"
    # the include is rewritten relative to the *including* file in the shipped layout
    assert include_targets(files["reqs/base.txt"], "reqs/base.txt") == [
        ("--requirement", "common.txt")
    ]
    assert files["reqs/base.txt"].endswith("\ndjango\n")
    assert files["common.txt"] == "requests\n"


def test_nested_dir_includes_sibling_dir(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root, "reqs/prod/app.txt", "-r ../dev/tools.txt\n")
    write(root, "reqs/dev/tools.txt", "-c ../../pins.txt\npytest\n")
    write(root, "pins.txt", "pytest==8.0\n")
    reqs = read_requirements(cfg_with(root, "reqs/prod/app.txt"))
    files = files_of(reqs)
    assert reqs.top == ("reqs/prod/app.txt",)
    assert set(files) == {"reqs/prod/app.txt", "reqs/dev/tools.txt", "pins.txt"}
    # the exact spelling is free; what the include resolves to in the shipped tree is not
    assert include_targets(files["reqs/prod/app.txt"], "reqs/prod/app.txt") == [
        ("-r", "reqs/dev/tools.txt")
    ]
    assert include_targets(files["reqs/dev/tools.txt"], "reqs/dev/tools.txt") == [
        ("-c", "pins.txt")
    ]
    assert files["reqs/dev/tools.txt"].endswith("\npytest\n")
    assert files["pins.txt"] == "pytest==8.0\n"


def test_rewritten_includes_resolve_inside_the_shipped_tree(tmp_path: Path) -> None:
    """Every rewritten include, resolved the way pip does (relative to the including file)
    in a fresh directory, must name a shipped file."""
    root = tmp_path / "p"
    write(root, "a/b/c.txt", "-r ../../d/e.txt\n-r ../f.txt\n")
    write(root, "d/e.txt", "-r ../a/b/g.txt\n")
    write(root, "a/f.txt", "x\n")
    write(root, "a/b/g.txt", "y\n")
    reqs = read_requirements(cfg_with(root, "a/b/c.txt"))
    shipped = tmp_path / "shipped"
    for name, data in reqs.files:
        path = shipped / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for name, data in reqs.files:
        for line in data.decode().splitlines():
            if line.startswith(("-r ", "-c ")):
                target = (shipped / name).parent / line.split(" ", 1)[1]
                assert target.resolve().is_file(), (name, line)
                assert target.resolve().is_relative_to(shipped.resolve())


def test_include_outside_the_project_is_shipped_under_external(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(tmp_path, "shared/base.txt", "attrs\n")
    write(root, "requirements.txt", "-r ../shared/base.txt\n")
    reqs = read_requirements(cfg_with(root, "requirements.txt"))
    files = files_of(reqs)
    external = [n for n in files if n.startswith("_external/")]
    assert len(external) == 1 and external[0].endswith("-base.txt")
    assert files["requirements.txt"] == f"-r {external[0]}\n"
    assert files[external[0]] == "attrs\n"


def test_include_cycle_terminates(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root, "a.txt", "-r b.txt\nx\n")
    write(root, "b.txt", "-r a.txt\ny\n")
    files = files_of(read_requirements(cfg_with(root, "a.txt")))
    assert files == {"a.txt": "-r b.txt\nx\n", "b.txt": "-r a.txt\ny\n"}


def test_missing_include_is_a_config_error(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root, "requirements.txt", "-r missing.txt\n")
    with pytest.raises(ConfigError, match=r"missing\.txt"):
        read_requirements(cfg_with(root, "requirements.txt"))


@pytest.mark.parametrize("line", ["-e .", "-e git+https://example.com/x.git#egg=x", "--editable ."])
def test_editable_requirement_is_refused_with_a_fix(tmp_path: Path, line: str) -> None:
    root = tmp_path / "p"
    write(root, "requirements.txt", f"django\n{line}\n")
    with pytest.raises(ConfigError) as info:
        read_requirements(cfg_with(root, "requirements.txt"))
    assert "requirements.txt:2" in str(info.value)
    assert "editable" in str(info.value)
    assert info.value.fix


@pytest.mark.parametrize("line", ["./libs/mypkg", "../other", "/abs/pkg.tar.gz", "file:///x.whl"])
def test_local_path_requirement_is_refused_with_a_fix(tmp_path: Path, line: str) -> None:
    root = tmp_path / "p"
    write(root, "reqs/base.txt", f"# comment\n{line}\n")
    write(root, "requirements.txt", "-r reqs/base.txt\n")
    with pytest.raises(ConfigError) as info:
        read_requirements(cfg_with(root, "requirements.txt"))
    assert "base.txt:2" in str(info.value)
    assert "local path" in str(info.value)
    assert info.value.fix


def test_an_app_that_needs_no_packages_has_an_empty_set(tmp_path: Path) -> None:
    root = project(tmp_path / "p", "")
    reqs = read_requirements(load_config(root))
    assert reqs.empty and reqs.top == () and reqs.files == ()
    write(root, "requirements.txt", "# nothing yet\n--index-url https://example.org/simple\n")
    assert read_requirements(load_config(root)).empty
    # with an extra (the server) there is something to install
    with_server = read_requirements(load_config(root), extra=("gunicorn",))
    assert with_server.extra == ("gunicorn",) and not with_server.empty


# ----------------------------------------------------------------------------- digest, names


def test_digest_is_stable_and_tracks_content(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root, "requirements.txt", "-r base.txt\nflask\n")
    write(root, "base.txt", "django\n")
    cfg = cfg_with(root, "requirements.txt")
    first = read_requirements(cfg).digest
    assert read_requirements(cfg).digest == first
    assert len(first) == 64

    write(root, "base.txt", "django==5.0\n")  # an included file changes
    changed = read_requirements(cfg).digest
    assert changed != first

    write(root, "base.txt", "django\n")
    assert read_requirements(cfg).digest == first  # back to the same content


def test_digest_tracks_extra_but_not_its_order(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root, "requirements.txt", "flask\n")
    cfg = cfg_with(root, "requirements.txt")
    plain = read_requirements(cfg).digest
    one = read_requirements(cfg, extra=("gunicorn",)).digest
    assert one != plain
    a = read_requirements(cfg, extra=("gunicorn", "uvicorn")).digest
    b = read_requirements(cfg, extra=("uvicorn", "gunicorn")).digest
    assert a == b != one


def test_digest_tracks_file_names_and_top() -> None:
    data = b"flask\n"
    a = RequirementSet(files=(("a.txt", data),), top=("a.txt",), extra=())
    b = RequirementSet(files=(("b.txt", data),), top=("b.txt",), extra=())
    c = RequirementSet(files=(("a.txt", data),), top=(), extra=())
    assert len({a.digest, b.digest, c.digest}) == 3


def test_names_are_normalised() -> None:
    reqs = RequirementSet(
        files=(
            (
                "r.txt",
                b"# a comment\n"
                b"Django>=4.2 ; python_version > '3'\n"
                b"zope.interface==6\n"
                b"Flask_SQLAlchemy[async]  # inline comment\n"
                b"-r other.txt\n"
                b"--index-url https://example.com/simple\n"
                b"\n",
            ),
        ),
        top=("r.txt",),
        extra=("Gunicorn",),
    )
    assert reqs.names() == {"django", "zope-interface", "flask-sqlalchemy", "gunicorn"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Foo_Bar", "foo-bar"), ("foo.bar", "foo-bar"), ("foo--_.bar", "foo-bar"), ("x", "x")],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected
