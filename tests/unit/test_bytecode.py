"""The deps step's bytecode (assemble.compile_bytecode): every source of the virtualenv
compiled, by one compileall per CPU each given its share, a file that does not compile
left without (as installers leave it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from nox_warpdrive.runtime import assemble


def venv(tmp_path: Path, count: int) -> tuple[dict[str, str], Path]:
    root = tmp_path / "venv"
    (root / "bin").mkdir(parents=True)
    os.symlink(sys.executable, root / "bin" / "python")
    site = root / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    for n in range(count):
        (site / f"pkg{n % 7}").mkdir(parents=True, exist_ok=True)
        (site / f"pkg{n % 7}" / f"m{n}.py").write_text(f"VALUE = {n}\n")
    (site / "pkg0" / "py2.py").write_text("print 'python 2'\n")
    (site / "pkg0" / "data.txt").write_text("not python\n")
    return {"venv": str(root)}, site


def compiled(site: Path) -> set[str]:
    return {p.name.split(".")[0] for p in site.rglob("__pycache__/*.pyc")}


@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_every_source_is_compiled_whatever_the_cpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cpus: int
) -> None:
    plan, site = venv(tmp_path, 450)
    monkeypatch.setattr(assemble.os, "cpu_count", lambda: cpus)
    assemble.compile_bytecode(plan)
    assert compiled(site) == {f"m{n}" for n in range(450)}  # not py2.py, not data.txt
    out = capsys.readouterr().out
    assert "some files did not compile to bytecode" in out
    assert "bytecode compiled in" in out


def test_only_the_listed_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, site = venv(tmp_path, 20)
    only = [str(site / "pkg1" / "m1.py"), str(site / "pkg2" / "m2.py"), str(site / "pkg1")]
    assemble.compile_bytecode(plan, only)
    assert compiled(site) == {"m1", "m2"}
    assert "did not compile" not in capsys.readouterr().out
