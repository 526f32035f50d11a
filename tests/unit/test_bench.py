"""The bench's handling of another app (`--app`): which file the code change edits, the
pyproject it writes into the copy, and the peers' CMD. The bench itself is not run here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import tomllib

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("warpdrive_bench_run", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def write(root: Path, rel: str, text: str = "") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_example_is_the_default(bench: ModuleType) -> None:
    app = bench.make_app(None, None, None)
    assert app.source == bench.EXAMPLE
    assert app.code_file == "mysite/urls.py"
    assert app.peer_cmd[-1] == "mysite.wsgi:application"
    assert "wagtail-site" in app.describe()


def test_another_app_needs_a_requirements_file_and_a_peer_command(
    bench: ModuleType, tmp_path: Path
) -> None:
    with pytest.raises(bench.BenchError, match=r"no requirements\.txt"):
        bench.make_app(tmp_path, None, "gunicorn app:app")
    write(tmp_path, "requirements.txt", "flask\n")
    write(tmp_path, "app.py", "app = None\n")
    with pytest.raises(bench.BenchError, match="--peer-cmd"):
        bench.make_app(tmp_path, None, None)
    with pytest.raises(bench.BenchError, match=r"--code-file nope\.py"):
        bench.make_app(tmp_path, "nope.py", "x")
    app = bench.make_app(tmp_path, None, "gunicorn --bind 0.0.0.0:8080 app:app")
    assert app.peer_cmd == ("gunicorn", "--bind", "0.0.0.0:8080", "app:app")
    assert app.describe() == f"a copy of `{tmp_path.resolve()}`"


def test_the_code_change_edits_the_first_module_that_is_not_a_launcher(
    bench: ModuleType, tmp_path: Path
) -> None:
    for rel in ("manage.py", "noxfile.py", "tests/test_views.py", ".venv/lib/x.py", "z.py"):
        write(tmp_path, rel)
    write(tmp_path, "shop/views.py")
    assert bench.default_code_file(tmp_path) == "shop/views.py"
    empty = tmp_path / "empty"
    write(empty, "manage.py")
    with pytest.raises(bench.BenchError, match="--code-file"):
        bench.default_code_file(empty)


def test_the_copys_pyproject_keeps_the_apps_settings(bench: ModuleType, tmp_path: Path) -> None:
    write(
        tmp_path,
        "pyproject.toml",
        '[project]\nname = "shop"\n\n[tool.warpdrive]\nimage = "shop:1"\nserver = "uvicorn"\n'
        'collectstatic = false\nrequirements = ["requirements.txt"]\nvolume = "mine"\n',
    )
    data = tomllib.loads(bench.bench_pyproject(tmp_path / "pyproject.toml"))
    assert data["project"]["name"] == bench.PROJECT_NAME
    table = data["tool"]["warpdrive"]
    assert (table["server"], table["collectstatic"]) == ("uvicorn", False)
    assert table["requirements"] == ["requirements.txt"]
    # what the bench removes and resets is its own, never the app's
    assert (table["image"], table["volume"]) == (bench.WD_IMAGE, bench.WD_VOLUME)
    assert table["base-image"] == bench.BASE_IMAGE
    none = tomllib.loads(bench.bench_pyproject(tmp_path / "missing.toml"))
    assert none["tool"]["warpdrive"]["image"] == bench.WD_IMAGE


def test_the_peers_start_the_apps_command(bench: ModuleType, tmp_path: Path) -> None:
    write(tmp_path, "requirements.txt", "flask\n")
    write(tmp_path, "app.py")
    app = bench.make_app(tmp_path, None, "gunicorn 'app:create_app()'")
    peer = bench.Peer("buildkit-cache", None, tmp_path / "work", app, tmp_path / "ca", "n")
    peer.root.mkdir(parents=True)
    peer.render("cache-1")
    text = peer.dockerfile.read_text()
    assert 'CMD ["gunicorn", "app:create_app()"]' in text
    assert "id=cache-1" in text and "mysite" not in text
    assert "if [ -f manage.py ]" in text  # collectstatic only for a Django app
