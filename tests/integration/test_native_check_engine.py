"""The check of a foreign deps layer without emulation (issue 22, item 4): the arm64 deps
layer made in the amd64 twin is checked there from data (each ELF file's needs against the
arm64 image's /etc/ld.so.cache, read out of it unrun; gunicorn loaded natively), on the
real engine with the real arm64 images and QEMU. A clean layer passes with no emulated
check container, and `ldd` in the arm64 image agrees; a wheel compiled for arm64 that
links libpython3.11.so.1.0 (which the arm64 base lacks) is found by the native check and
fails the build with MissingLibraries naming it, as the emulated check says."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

from conftest import App
from pkgindex import Index
from test_build import nox
from test_foreign_deps_engine import images
from test_platforms_engine import ARM_BASE, arm64_ready, use

from nox_warpdrive.build import deps_step as d
from nox_warpdrive.build.foreign_deps import check_step, read_base
from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.runtime import elfcheck

__all__ = ["arm64_ready", "images"]  # the fixtures, used by name

NATIVE = "no emulated check"
EMULATED = "checking the linux/arm64 deps layer in its own image (emulated)"


def test_the_arm64_loader_cache_and_an_aarch64_wheels_module_read_on_the_host(
    engine: Engine, arm64_ready: None, index: Index, tmp_path: Path
) -> None:
    """The parsers on real aarch64 files: the arm64 image's loader cache (read out of
    the image unrun) and the extension module of a real manylinux aarch64 wheel."""
    passwd, sonames = read_base(engine, ARM_BASE, "aarch64")
    assert passwd.startswith(b"root:") and sonames is not None
    assert {"libc.so.6", "ld-linux-aarch64.so.1", "libz.so.1"} <= set(sonames)
    assert "libpython3.11.so.1.0" not in sonames
    (wheel,) = (index.root / "files").glob("markupsafe-*aarch64*.whl")
    with zipfile.ZipFile(wheel) as whl:
        (name,) = [n for n in whl.namelist() if n.endswith(".so")]
        info = elfcheck.parse_elf(whl.read(name))
    assert info.machine == 183  # AArch64
    assert "libc.so.6" in info.needed
    assert elfcheck.unresolved(str(tmp_path / name), info, set(sonames)) == []
    assert elfcheck.unresolved(str(tmp_path / name), info, set(sonames) - {"libc.so.6"}) == [
        "libc.so.6"
    ]


def whole_layer_build(app: App) -> subprocess.CompletedProcess[str]:
    """`nox -s image -- --platform linux/arm64` with the wheelhouse made first (a deps
    layer made whole, not on an early one) for both platforms (the volume then has the
    amd64 uv the twin installs with)."""
    wheels = nox(app, "-s", "wheelhouse", "--", "--platform", "linux/amd64,linux/arm64")
    assert wheels.returncode == 0, wheels.stdout + wheels.stderr
    return nox(app, "-s", "image", "--", "--platform", "linux/arm64")


def test_a_clean_arm64_layer_is_checked_natively_and_ldd_agrees(
    make_app: object, engine: Engine, index_env: Index, images: tuple[str, str]
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-cext-demo", "markupsafe", "gunicorn"])  # type: ignore[operator]
    use(app, *images)
    built = whole_layer_build(app)
    said = built.stdout + built.stderr
    assert built.returncode == 0, said
    assert "deps layer in " in said and "(no emulation)" in said, said
    assert NATIVE in said and EMULATED not in said, said
    assert "servers loaded natively (gunicorn)" in said, said
    print("\n" + "\n".join(ln for ln in said.splitlines() if "deps layer" in ln or NATIVE in ln))
    # the emulated check (ldd of every file, gunicorn started, in the arm64 image) agrees
    lines: list[str] = []
    d.run_deps(engine, check_step(load_config(app.root), app.image), lines.append)
    assert any("compiled files checked in" in line for line in lines), lines


def test_a_library_the_arm64_base_lacks_is_found_natively_and_fails_the_build(
    make_app: object, engine: Engine, index_env: Index, images: tuple[str, str]
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-embed-demo"])  # type: ignore[operator]
    use(app, *images)
    built = whole_layer_build(app)
    said = built.stdout + built.stderr
    assert built.returncode != 0, said
    # what the native check found, then what ldd in the arm64 image says: the same library
    assert f"{EMULATED}: its loader cache lacks libpython3.11.so.1.0" in said, said
    assert "libpython3.11.so.1.0 (Debian package libpython3.11)" in said, said
    assert "needed by wd-embed-demo" in said and "_embed.cpython-311" in said, said
    assert engine.image(app.image) is None, "an image was tagged"
    print("\n" + "\n".join(line for line in said.splitlines() if EMULATED in line))
