"""The check of another CPU's deps layer from data (runtime/elfcheck.py, assemble.native_check):
the ELF reader and the loader cache reader on this machine's real files, checked against
binutils' readelf and glibc's ldconfig; what is missing against what ldd says; and the
host's decision (foreign_deps.still_to_check). The aarch64 side (a real aarch64 wheel, the
arm64 image's cache) is in tests/integration/test_native_check_engine.py."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nox_warpdrive.build.foreign_deps import still_to_check
from nox_warpdrive.runtime import assemble, elfcheck, protocol

LD_CACHE = Path("/etc/ld.so.cache")
MULTIARCH = "/usr/lib/x86_64-linux-gnu"


def readelf_dynamic(path: str) -> tuple[list[str], list[str], list[str]]:
    """(NEEDED, RPATH dirs, RUNPATH dirs) as binutils' readelf reads them."""
    out = subprocess.run(["readelf", "-dW", path], capture_output=True, text=True).stdout
    found: dict[str, list[str]] = {"NEEDED": [], "RPATH": [], "RUNPATH": []}
    for kind, value in re.findall(r"\((NEEDED|RPATH|RUNPATH)\)\s+\S+.*?\[(.*)\]", out):
        found[kind] += [value] if kind == "NEEDED" else [d for d in value.split(":") if d]
    return found["NEEDED"], found["RPATH"], found["RUNPATH"]


def sample_elf_files() -> list[str]:
    """Real ELF files of this machine: libraries, programs, Python's extension modules."""
    found = sorted(glob.glob(f"{MULTIARCH}/*.so*"))[:150]
    found += [p for p in ("/usr/bin/python3", "/bin/ls", "/usr/bin/env") if os.path.exists(p)]
    found += sorted(glob.glob("/usr/lib/python3*/lib-dynload/*.so"))[:30]
    return [p for p in found if os.path.isfile(p) and Path(p).read_bytes()[:4] == b"\x7fELF"]


@pytest.mark.skipif(shutil.which("readelf") is None, reason="binutils' readelf is not here")
def test_the_elf_reader_finds_what_readelf_finds() -> None:
    files = sample_elf_files()
    assert len(files) > 20
    for path in files:
        info = elfcheck.read_elf(path)
        assert (info.needed, info.rpath, info.runpath) == readelf_dynamic(path), path
        assert info.machine == 62  # x86-64
    assert any(elfcheck.read_elf(p).needed for p in files)


def test_what_is_not_an_elf_file_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "libc.so"
    script.write_text("/* GNU ld script */\nGROUP ( libc.so.6 )\n")
    with pytest.raises(elfcheck.ElfError):
        elfcheck.read_elf(str(script))
    cut = tmp_path / "cut.so"
    cut.write_bytes(Path("/bin/ls").read_bytes()[:200])  # headers cut off
    with pytest.raises(elfcheck.ElfError):
        elfcheck.read_elf(str(cut))


@pytest.mark.skipif(not LD_CACHE.is_file(), reason="no glibc loader cache here")
def test_the_loader_cache_reader_lists_what_ldconfig_lists() -> None:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    listed = {
        m.group(1) for m in re.finditer(r"^\s+(\S+) \((\S+)\)", out, re.M) if "x86-64" in m.group(2)
    }
    data = LD_CACHE.read_bytes()
    assert elfcheck.cache_sonames(data, "x86_64") == sorted(listed)
    assert "libc.so.6" in listed
    assert elfcheck.cache_sonames(data, "aarch64") == []  # filtered by the CPU
    assert set(elfcheck.cache_sonames(data)) >= listed
    with pytest.raises(ValueError):
        elfcheck.cache_sonames(b"\x7fELF" + data)
    with pytest.raises(ValueError):
        elfcheck.cache_sonames(b"")
    with pytest.raises(ValueError):
        elfcheck.cache_sonames(data[:60])  # a cache cut short


@pytest.mark.skipif(not LD_CACHE.is_file(), reason="no glibc loader cache here")
@pytest.mark.skipif(shutil.which("ldconfig") is None, reason="no ldconfig here")
def test_a_cache_in_the_old_format_with_the_new_one_after_it_is_read_too(tmp_path: Path) -> None:
    """glibc before 2.32 wrote both formats by default (Debian bullseye's images): the
    new table follows the old one. A cache of the old format only says too little."""
    made = {}
    for fmt in ("new", "compat", "old"):
        made[fmt] = tmp_path / f"{fmt}.cache"
        subprocess.run(["ldconfig", "-c", fmt, "-C", str(made[fmt])], check=True)
    compat = made["compat"].read_bytes()
    assert compat.startswith(b"ld.so-1.7.0")
    found = elfcheck.cache_sonames(compat, "x86_64")
    assert found == elfcheck.cache_sonames(made["new"].read_bytes(), "x86_64")
    assert "libc.so.6" in found
    with pytest.raises(ValueError):
        elfcheck.cache_sonames(made["old"].read_bytes())


def test_what_is_unresolved_is_what_ldd_says_is_not_found() -> None:
    """Every sampled file against this machine's cache: nothing missing, as ldd says;
    without libz.so.1 in the cache, exactly the files that need it directly."""
    sonames = set(elfcheck.cache_sonames(LD_CACHE.read_bytes(), "x86_64"))
    files = sample_elf_files()
    ldd = subprocess.run(["ldd", *files], capture_output=True, text=True)
    assert not assemble.parse_ldd(ldd.stdout + ldd.stderr, files)
    for path in files:
        assert elfcheck.unresolved(path, elfcheck.read_elf(path), sonames) == [], path
    without = sonames - {"libz.so.1"}
    need_z = [p for p in files if "libz.so.1" in elfcheck.read_elf(p).needed]
    assert need_z
    for path in files:
        lost = elfcheck.unresolved(path, elfcheck.read_elf(path), without)
        assert lost == (["libz.so.1"] if path in need_z else []), path


def test_rpath_origin_and_a_wheels_bundle_are_looked_in(tmp_path: Path) -> None:
    pkg = tmp_path / "site" / "pkg"
    bundle = tmp_path / "site" / "pkg.libs"
    pkg.mkdir(parents=True)
    bundle.mkdir()
    (bundle / "libfoo-1234.so.1").write_bytes(b"")
    (bundle / "libbar-5678.so.2").write_bytes(b"")
    module = str(pkg / "_ext.so")
    info = elfcheck.ElfInfo(183, ["libfoo-1234.so.1", "libc.so.6", "libgone.so.1"], [], [])
    assert elfcheck.unresolved(module, info, {"libc.so.6"}) == ["libfoo-1234.so.1", "libgone.so.1"]
    info.runpath = ["$ORIGIN/../pkg.libs"]
    assert elfcheck.unresolved(module, info, {"libc.so.6"}) == ["libgone.so.1"]
    info.runpath, info.rpath = [], ["${ORIGIN}/../pkg.libs"]
    assert elfcheck.unresolved(module, info, {"libc.so.6"}) == ["libgone.so.1"]
    info.rpath = ["$LIB/pkg.libs"]  # not known here: not looked in
    assert "libfoo-1234.so.1" in elfcheck.unresolved(module, info, {"libc.so.6"})
    # a bundled library needs its sibling: found beside it, as assemble.bundled says
    sibling = elfcheck.ElfInfo(183, ["libbar-5678.so.2"], [], [])
    assert elfcheck.unresolved(str(bundle / "libfoo-1234.so.1"), sibling, set()) == []
    assert elfcheck.expand("$ORIGIN/../x", "/a/b") == "/a/x"


def test_native_check_reports_what_the_cache_lacks_and_loads_no_compiled_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The line the host reads: the missing library with the package whose file needs it,
    uwsgi (a compiled program) not started, a failed server load named."""
    venv = tmp_path / "venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    (site / "demo").mkdir(parents=True)
    shutil.copy(sample_needing_libz(), site / "demo" / "_z.so")
    info = site / "demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Name: demo\nVersion: 1.0\n\n")
    (info / "RECORD").write_text("demo/_z.so,,\n")
    bindir = venv / "bin"
    bindir.mkdir()
    (bindir / "uwsgi").write_bytes(b"")
    (bindir / "gunicorn").write_text("#!/bin/sh\necho 'ImportError: wrong ELF class' >&2\nexit 1\n")
    (bindir / "gunicorn").chmod(0o755)
    cache = elfcheck.cache_sonames(LD_CACHE.read_bytes(), "x86_64")
    plan = {"venv": str(venv), "loader_cache": [s for s in cache if s != "libz.so.1"]}
    assemble.native_check(plan)
    parsed = protocol.parse(capsys.readouterr().out.strip().splitlines()[-1])
    assert parsed is not None and parsed[0] == "checked"
    said = parsed[1]
    assert said["files"] == 1 and said["unread"] == []
    assert said["libraries"] == {
        "libz.so.1": [{"file": str(site / "demo" / "_z.so"), "package": "demo"}]
    }
    assert said["servers"] == ["gunicorn", "uwsgi (libraries only)"]
    assert said["failed"] == "`gunicorn --version` failed here: ImportError: wrong ELF class"
    assert "libz.so.1" in still_to_check(said, True)
    plan["loader_cache"] = cache
    (bindir / "gunicorn").write_text("#!/bin/sh\necho 'gunicorn (version 23.0.0)'\n")
    assemble.native_check(plan)
    said = json.loads(capsys.readouterr().out.strip().split(protocol.CHECKED_LINE, 1)[1])
    assert said["libraries"] == {} and said["failed"] == ""
    assert still_to_check(said, True) == ""


def sample_needing_libz() -> str:
    """A real library of this machine that needs libz.so.1 directly."""
    for path in sample_elf_files():
        if "libz.so.1" in elfcheck.read_elf(path).needed:
            return path
    raise AssertionError("no library here needs libz.so.1")


def test_the_host_checks_in_the_target_image_what_data_cannot_tell() -> None:
    ok = {"files": 3, "unread": [], "libraries": {}, "servers": [], "failed": ""}
    assert still_to_check(ok, True) == ""
    assert "no glibc loader cache" in still_to_check(ok, False)
    assert "said nothing" in still_to_check(None, True)
    unread = dict(ok, unread=["/app/venv/x.so (truncated ELF file)"])
    assert "not readable here: /app/venv/x.so" in still_to_check(unread, True)
    failed = dict(ok, failed="`uvicorn --version` failed here: ImportError")
    assert still_to_check(failed, True).startswith("`uvicorn --version` failed here")
