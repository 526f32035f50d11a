"""The deps layer's shared-library check: `ldd` output read (glibc, musl), the files
found and owned, the report turned into an error naming library, Debian package,
packages and fix; the deps step's report line turned into that error."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from unit_support import write

from nox_warpdrive.build.deps import run_deps
from nox_warpdrive.build.libraries import (
    MissingLibraries,
    debian_package,
    dpkg_command,
    missing_message,
    parse_dpkg_search,
    parse_report,
)
from nox_warpdrive.errors import BuildError
from nox_warpdrive.plan import Step
from nox_warpdrive.runtime import assemble, protocol

#: what glibc's ldd printed in the runtime image for two files (a real run)
LDD_TWO = """\
/opt/app-root/venv/bin/uwsgi:
\tlinux-vdso.so.1 (0x00007ffd3b5f2000)
\tlibpython3.11.so.1.0 => not found
\tlibcrypt.so.1 => /lib/x86_64-linux-gnu/libcrypt.so.1 (0x00007f0c1c3c0000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0c1c1df000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0c1c5f4000)
/opt/app-root/venv/lib/python3.11/site-packages/psycopg2/_psycopg.so:
\tlinux-vdso.so.1 (0x00007ffe0e9d1000)
\tlibpq.so.5 => not found
\tlibpython3.11.so.1.0 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f9c8a5d5000)
"""


def test_ldd_of_several_files_names_each_missing_library_with_its_files() -> None:
    files = [
        "/opt/app-root/venv/bin/uwsgi",
        "/opt/app-root/venv/lib/python3.11/site-packages/psycopg2/_psycopg.so",
    ]
    assert assemble.parse_ldd(LDD_TWO, files) == {
        "libpython3.11.so.1.0": files,
        "libpq.so.5": [files[1]],
    }


def test_ldd_of_one_file_has_no_header() -> None:
    out = "\tlinux-vdso.so.1 (0x1)\n\tlibjansson.so.4 => not found\n\tlibc.so.6 => /x (0x2)\n"
    assert assemble.parse_ldd(out, ["/v/bin/uwsgi"]) == {"libjansson.so.4": ["/v/bin/uwsgi"]}


def test_ldd_statically_linked_and_not_dynamic_files_miss_nothing() -> None:
    out = "/v/a:\n\tnot a dynamic executable\n/v/b:\n\tstatically linked\n"
    assert assemble.parse_ldd(out, ["/v/a", "/v/b"]) == {}


def test_musl_ldd_is_read_too() -> None:
    out = (
        "\t/lib/ld-musl-x86_64.so.1 (0x7f)\n"
        "Error loading shared library libpython3.12.so.1.0: No such file or directory "
        "(needed by /v/bin/uwsgi)\n"
    )
    assert assemble.parse_ldd(out, ["/v/bin/uwsgi", "/v/x.so"]) == {
        "libpython3.12.so.1.0": ["/v/bin/uwsgi"]
    }


def test_gpu_driver_libraries_come_from_the_host_at_run_time() -> None:
    out = "\tlibcuda.so.1 => not found\n\tlibnvidia-ml.so.1 => not found\n"
    assert assemble.parse_ldd(out, ["/v/torch/lib/libtorch_cuda.so"]) == {}


def test_elf_files_are_extensions_and_executables_not_links_or_scripts(tmp_path: Path) -> None:
    elf = b"\x7fELF" + b"\0" * 60
    write(tmp_path, "lib/python3.11/site-packages/a/_x.cpython-311-x86_64-linux-gnu.so", elf)
    write(tmp_path, "lib/python3.11/site-packages/a.libs/libz-1a2b.so.1.2.13", elf)
    write(tmp_path, "bin/uwsgi", elf, mode=0o755)
    write(tmp_path, "bin/gunicorn", "#!/opt/app-root/venv/bin/python\n", mode=0o755)
    write(tmp_path, "lib/python3.11/site-packages/a/data.bin", elf)  # not loaded
    write(tmp_path, "lib/python3.11/site-packages/a/fake.so", b"not elf")
    os.symlink("/usr/bin/python3", tmp_path / "bin" / "python")
    found = [os.path.relpath(p, tmp_path) for p in assemble.elf_files(str(tmp_path))]
    assert found == [
        "bin/uwsgi",
        "lib/python3.11/site-packages/a.libs/libz-1a2b.so.1.2.13",
        "lib/python3.11/site-packages/a/_x.cpython-311-x86_64-linux-gnu.so",
    ]
    assert stat.S_IMODE(os.stat(tmp_path / "bin" / "uwsgi").st_mode) == 0o755


def test_elf_files_of_an_install_on_a_checked_layer_are_only_what_it_added(
    tmp_path: Path,
) -> None:
    elf = b"\x7fELF" + b"\0" * 60
    write(tmp_path, "lib/python3.11/site-packages/old/_o.so", elf)  # the layer below
    write(tmp_path, "lib/python3.11/site-packages/new/_n.so", elf)
    write(tmp_path, "lib/python3.11/site-packages/new/__init__.py", "")
    added = [
        str(tmp_path / "lib/python3.11/site-packages/new"),  # directories are listed too
        str(tmp_path / "lib/python3.11/site-packages/new/_n.so"),
        str(tmp_path / "lib/python3.11/site-packages/new/__init__.py"),
    ]
    found = assemble.elf_files(str(tmp_path), added)
    assert found == [str(tmp_path / "lib/python3.11/site-packages/new/_n.so")]
    assert len(assemble.elf_files(str(tmp_path))) == 2


def test_a_grow_checks_the_libraries_of_the_files_it_added_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elf = b"\x7fELF" + b"\0" * 60
    write(tmp_path, "venv/lib/python3.11/site-packages/old/_o.so", elf)
    write(tmp_path, "venv/lib/python3.11/site-packages/new/_n.so", elf)
    asked: list[list[str]] = []
    monkeypatch.setattr(assemble, "missing_libraries", lambda files: asked.append(files) or {})
    plan = {"venv": str(tmp_path / "venv")}
    new = str(tmp_path / "venv/lib/python3.11/site-packages/new/_n.so")
    assemble.check_libraries(plan, [new[1:]])  # relative to /, as the grow lists them
    assemble.check_libraries(plan)
    assert asked == [
        [str(tmp_path / "venv/lib/python3.11/site-packages/new/_n.so")],
        [
            str(tmp_path / "venv/lib/python3.11/site-packages/new/_n.so"),
            str(tmp_path / "venv/lib/python3.11/site-packages/old/_o.so"),
        ],
    ]


def test_owners_come_from_the_records_scripts_included(tmp_path: Path) -> None:
    site = "lib/python3.11/site-packages"
    write(
        tmp_path, f"{site}/uWSGI-2.0.28.dist-info/METADATA", "Metadata-Version: 2.1\nName: uWSGI\n"
    )
    write(
        tmp_path,
        f"{site}/uWSGI-2.0.28.dist-info/RECORD",
        "../../../bin/uwsgi,sha256=x,10\nuwsgidecorators.py,,\n",
    )
    found = assemble.owners(str(tmp_path))
    assert found[str(tmp_path / "bin" / "uwsgi")] == "uWSGI"
    assert found[str(tmp_path / site / "uwsgidecorators.py")] == "uWSGI"


def test_debian_packages_of_common_libraries() -> None:
    assert debian_package("libpython3.11.so.1.0") == "libpython3.11"
    assert debian_package("libpython3.13.so.1.0") == "libpython3.13"
    assert debian_package("libpq.so.5") == "libpq5"
    assert debian_package("libmysqlclient.so.21") == "libmysqlclient21"
    assert debian_package("libsomething.so.9") is None


def test_dpkg_search_is_matched_by_file_name() -> None:
    out = (
        "libpython3.11:amd64: /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0\n"
        "libpq5:amd64: /usr/lib/x86_64-linux-gnu/libpq.so.5.15\n"
        "libpq5:amd64: /usr/lib/x86_64-linux-gnu/libpq.so.5\n"
        "diversion by foo from: /usr/lib/libpq.so.5\n"
    )
    assert parse_dpkg_search(out, ["libpython3.11.so.1.0", "libpq.so.5", "libx.so.1"]) == {
        "libpython3.11.so.1.0": "libpython3.11",
        "libpq.so.5": "libpq5",
    }
    assert dpkg_command(["libpq.so.5"])[-1] == "libpq.so.5"


def test_the_message_names_library_package_files_and_fix() -> None:
    report = {
        "libpython3.11.so.1.0": [
            {"file": "/opt/app-root/venv/bin/uwsgi", "package": "uWSGI"},
        ]
    }
    message, fix = missing_message(report, "python:3.11-slim", {})
    assert "the base image python:3.11-slim lacks" in message
    assert "libpython3.11.so.1.0 (Debian package libpython3.11): needed by uWSGI (bin/uwsgi)" in (
        message
    )
    assert "apt-get install -y --no-install-recommends libpython3.11" in fix
    assert "do without uWSGI (another `server`" in fix and "nothing was tagged" in fix


def test_a_library_no_table_knows_still_gets_a_fix() -> None:
    files = [f"/opt/app-root/venv/lib/python3.11/site-packages/x/m{i}.so" for i in range(5)]
    report = {"libodd.so.3": [{"file": f, "package": "odd"} for f in files]}
    message, fix = missing_message(report, "", {"libodd.so.3": "libodd3"})
    assert "libodd.so.3 (Debian package libodd3): needed by odd" in message
    assert "site-packages/x/m0.so" in message and "and 2 more" in message
    assert "libodd3" in fix
    message, fix = missing_message({"libodd.so.3": report["libodd.so.3"]}, "", {})
    assert "Debian package" not in message and "the packages that provide them" in fix


def test_the_deps_steps_report_becomes_the_error() -> None:
    report = {"libpq.so.5": [{"file": "/opt/app-root/venv/x.so", "package": "psycopg2"}]}
    line = protocol.LIBRARIES_LINE + json.dumps(report)
    engine = FakeEngine(output=["installing", line], exit_code=assemble.LIBRARIES_EXIT)
    shown: list[str] = []
    with pytest.raises(MissingLibraries) as exc:
        run_deps(engine, Step(name="deps", image="base", command=("x",)), shown.append)
    assert exc.value.report == report and isinstance(exc.value, BuildError)
    assert shown == ["installing"], "the machine-read line was shown"
    named = exc.value.named("base:1", {"libpq.so.5": "libpq5"})
    assert "base image base:1" in named.message and "(Debian package libpq5)" in named.message


class _Builder(FakeEngine):
    """An engine whose builder image answers `dpkg -S` as Debian's does."""

    def __init__(self) -> None:
        super().__init__()
        self.probes: list[tuple[str, list[str]]] = []

    def run_probe(self, image: str, command: list[str], network: str | None = None) -> str:
        self.probes.append((image, command))
        return "libpython3.13:amd64: /usr/lib/x86_64-linux-gnu/libpython3.13.so.1.0\n"


def test_the_builder_names_the_debian_package(tmp_path: Path) -> None:
    from nox_warpdrive.build.deps import name_missing
    from nox_warpdrive.config import load_config

    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n[tool.warpdrive]\nbase-image = "python:3.13-slim"\n'
        'builder-image = "builder:3.13"\n'
    )
    cfg = load_config(tmp_path)
    engine = _Builder()
    report = {
        "libpython3.13.so.1.0": [{"file": "/opt/app-root/venv/bin/uwsgi", "package": "uWSGI"}]
    }
    named = name_missing(engine, cfg, MissingLibraries(report))
    assert engine.probes[0][0] == "builder:3.13"
    assert "libpython3.13.so.1.0 (Debian package libpython3.13)" in named.message
    assert "the base image python:3.13-slim lacks" in named.message


def test_a_malformed_report_is_no_report() -> None:
    assert parse_report(None) == {}  # its JSON could not be read (protocol.parse)
    assert parse_report([1]) == {}
    assert parse_report({"libx.so": [{"file": "/a"}, 3]}) == {
        "libx.so": [{"file": "/a", "package": ""}]
    }


def test_a_server_that_cannot_load_fails_the_deps_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As uwsgi linked against a libpython the image lacks: the loader exits 127."""
    write(
        tmp_path,
        "bin/uwsgi",
        "#!/bin/sh\necho 'uwsgi: error while loading shared libraries' >&2\nexit 127\n",
        mode=0o755,
    )
    write(tmp_path, "bin/gunicorn", "#!/bin/sh\necho 'gunicorn (version 23)'\n", mode=0o755)
    with pytest.raises(SystemExit) as exc:
        assemble.check_servers({"venv": str(tmp_path)})
    assert exc.value.code == 127
    out = capsys.readouterr().out
    assert "the web server uwsgi cannot start here (exit code 127)" in out
    assert "error while loading shared libraries" in out


def test_servers_that_load_pass(tmp_path: Path) -> None:
    write(tmp_path, "bin/gunicorn", "#!/bin/sh\necho 'gunicorn (version 23)'\n", mode=0o755)
    assemble.check_servers({"venv": str(tmp_path)})  # no exit
    assemble.check_servers({"venv": str(tmp_path / "none")})  # no servers at all


def _shared(path: Path, soname: str, needs: Path | None = None) -> None:
    """A real shared library (gcc), named ``soname``, linking ``needs`` when given."""
    import subprocess

    src = path.with_suffix(".c")
    src.write_text(f"int f_{abs(hash(soname)) % 10**6}(void) {{ return 1; }}\n")
    cmd = ["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-Wl,--no-as-needed"]
    cmd += ["-o", str(path), str(src)]
    if needs is not None:
        cmd += [str(needs)]
    subprocess.run(cmd, check=True)
    src.unlink()


def test_a_repaired_wheels_bundled_libraries_are_not_missing(tmp_path: Path) -> None:
    """auditwheel bundles a package's libraries in `<package>.libs/`, each needing its
    hashed siblings, which `ldd` of the bundled file alone cannot find (psycopg-binary
    3.3 on trixie): not missing. The same library beside a file anywhere else is."""
    import shutil

    if shutil.which("gcc") is None or shutil.which("ldd") is None:
        pytest.fail("this test builds real shared libraries: it needs gcc and ldd")
    for where in ("site/psycopg_binary.libs", "site/plain"):
        d = tmp_path / where
        d.mkdir(parents=True)
        _shared(d / "libcrypt-13f4f5d0.so.1", "libcrypt-13f4f5d0.so.1")
        _shared(
            d / "libsasl2-84219a89.so.3", "libsasl2-84219a89.so.3", d / "libcrypt-13f4f5d0.so.1"
        )
    bundle = str(tmp_path / "site/psycopg_binary.libs/libsasl2-84219a89.so.3")
    plain = str(tmp_path / "site/plain/libsasl2-84219a89.so.3")
    assert assemble.missing_libraries([bundle, plain]) == {"libcrypt-13f4f5d0.so.1": [plain]}
