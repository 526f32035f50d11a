"""The bench's handling of another app (`--app`): which file the code change edits, the
pyproject it writes into the copy, and the peers' CMD. The bench itself is not run here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # plain `pytest` puts tests/unit first, not the checkout
    sys.path.insert(0, str(REPO))

from bench.apps import bench_pyproject, default_code_file, make_app  # noqa: E402
from bench.common import (  # noqa: E402
    BASE_IMAGE,
    EXAMPLE,
    PROJECT_NAME,
    WD_IMAGE,
    WD_VOLUME,
    BenchError,
)
from bench.peers import Peer  # noqa: E402


def write(root: Path, rel: str, text: str = "") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_example_is_the_default() -> None:
    app = make_app(None, None, None)
    assert app.source == EXAMPLE
    assert app.code_file == "mysite/urls.py"
    assert app.peer_cmd[-1] == "mysite.wsgi:application"
    assert "wagtail-site" in app.describe()


def test_another_app_needs_a_requirements_file_and_a_peer_command(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=r"no requirements\.txt"):
        make_app(tmp_path, None, "gunicorn app:app")
    write(tmp_path, "requirements.txt", "flask\n")
    write(tmp_path, "app.py", "app = None\n")
    with pytest.raises(BenchError, match="--peer-cmd"):
        make_app(tmp_path, None, None)
    with pytest.raises(BenchError, match=r"--code-file nope\.py"):
        make_app(tmp_path, "nope.py", "x")
    app = make_app(tmp_path, None, "gunicorn --bind 0.0.0.0:8080 app:app")
    assert app.peer_cmd == ("gunicorn", "--bind", "0.0.0.0:8080", "app:app")
    assert app.describe() == f"a copy of `{tmp_path.resolve()}`"


def test_the_code_change_edits_the_first_module_that_is_not_a_launcher(tmp_path: Path) -> None:
    for rel in ("manage.py", "noxfile.py", "tests/test_views.py", ".venv/lib/x.py", "z.py"):
        write(tmp_path, rel)
    write(tmp_path, "shop/views.py")
    assert default_code_file(tmp_path) == "shop/views.py"
    empty = tmp_path / "empty"
    write(empty, "manage.py")
    with pytest.raises(BenchError, match="--code-file"):
        default_code_file(empty)


def test_the_copys_pyproject_keeps_the_apps_settings(tmp_path: Path) -> None:
    write(
        tmp_path,
        "pyproject.toml",
        '[project]\nname = "shop"\n\n[tool.warpdrive]\nimage = "shop:1"\nserver = "uvicorn"\n'
        'collectstatic = false\nrequirements = ["requirements.txt"]\nvolume = "mine"\n',
    )
    data = tomllib.loads(bench_pyproject(tmp_path / "pyproject.toml"))
    assert data["project"]["name"] == PROJECT_NAME
    table = data["tool"]["warpdrive"]
    assert (table["server"], table["collectstatic"]) == ("uvicorn", False)
    assert table["requirements"] == ["requirements.txt"]
    # what the bench removes and resets is its own, never the app's
    assert (table["image"], table["volume"]) == (WD_IMAGE, WD_VOLUME)
    assert table["base-image"] == BASE_IMAGE
    none = tomllib.loads(bench_pyproject(tmp_path / "missing.toml"))
    assert none["tool"]["warpdrive"]["image"] == WD_IMAGE


def test_the_peers_start_the_apps_command(tmp_path: Path) -> None:
    write(tmp_path, "requirements.txt", "flask\n")
    write(tmp_path, "app.py")
    app = make_app(tmp_path, None, "gunicorn 'app:create_app()'")
    peer = Peer("buildkit-cache", None, tmp_path / "work", app, tmp_path / "ca", "n")
    peer.root.mkdir(parents=True)
    peer.render("cache-1")
    text = peer.dockerfile.read_text()
    assert 'CMD ["gunicorn", "app:create_app()"]' in text
    assert "id=cache-1" in text and "mysite" not in text
    assert "if [ -f manage.py ]" in text  # collectstatic only for a Django app


def test_generated_files_are_named_and_keep_the_readme_table_apart(tmp_path: Path) -> None:
    from bench.gentree import PER_DIR, SMALL_KINDS, generate

    app = make_app(None, None, None, files=250, assets_mb=3)
    assert not app.is_example and make_app(None, None, None).is_example
    assert "250 generated small files and 3 MB" in app.describe()
    made = generate(tmp_path, 250, 3)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 250 + len(made.assets)
    assert sum(p.stat().st_size for p in (tmp_path / "media").iterdir()) == 3 * 1024 * 1024
    assert len(list((tmp_path / "generated").iterdir())) == -(-250 // PER_DIR)
    assert {p.suffix for p in (tmp_path / "generated").rglob("*.*")} == set(SMALL_KINDS)
    again = tmp_path / "again"
    generate(again, 250, 3)  # the same bytes every time
    for path in files:
        assert (again / path.relative_to(tmp_path)).read_bytes() == path.read_bytes()


def test_each_bench_run_names_what_it_makes_in_docker_with_its_own_suffix() -> None:
    """Two benches on one engine: each process gets its own suffix, in its image, volume,
    project (its deps images and watch containers) and peers' tags, so neither builds
    into nor removes the other's; the clean-up references carry it too."""
    import subprocess

    from bench.common import RUN_ID, WD_REFERENCES, peer_tag

    assert f"bench-warpdrive-{RUN_ID}:latest" == WD_IMAGE and WD_VOLUME.endswith(RUN_ID)
    assert PROJECT_NAME.endswith(RUN_ID) and all(RUN_ID in r for r in WD_REFERENCES)
    assert peer_tag("uv") == f"bench-peer-uv-{RUN_ID}:latest"
    code = "import bench.common as c; print(c.WD_IMAGE, c.peer_tag('uv'))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.split()
    assert other[0] != WD_IMAGE and other[1] != peer_tag("uv")
