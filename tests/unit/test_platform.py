"""Platform keys: parsing the probe's output, comparing builder and base (no Docker)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from unit_support import BASE, PKEY

from nox_warpdrive.errors import CommandMissing, ConfigError, PlatformMismatchError, WarpdriveError
from nox_warpdrive.platform import (
    MARKER_NAMES,
    PROBE_MARKER,
    PROBE_SCRIPT,
    PlatformKey,
    check_compatible,
    mismatches,
    parse_probe_output,
)

# the shared key, with the executable a probe in python:3.12 would report
KEY = dataclasses.replace(PKEY, executable="/usr/local/bin/python3")


def probe_line(key: PlatformKey) -> str:
    return PROBE_MARKER + json.dumps(dataclasses.asdict(key))


# ----------------------------------------------------------------------------- parsing


def test_parse_picks_the_marker_line_amid_noise() -> None:
    output = "\n".join(
        [
            "Welcome to the image! WARPDRIVE-PROBE is not at the start of this line",
            "/docker-entrypoint.sh: configuring...",
            probe_line(KEY),
            "bye",
        ]
    )
    assert parse_probe_output(output, "python:3.12-slim") == KEY


def test_parse_handles_crlf_output() -> None:
    output = "banner\r\n" + probe_line(KEY) + "\r\n"
    assert parse_probe_output(output, "img") == KEY


def test_parse_ignores_unknown_fields_and_stringifies() -> None:
    data = {**dataclasses.asdict(KEY), "future_field": 1, "libc_version": 2.36}
    key = parse_probe_output(PROBE_MARKER + json.dumps(data), "img")
    assert key.libc_version == "2.36"
    assert not hasattr(key, "future_field")


@pytest.mark.parametrize(
    "output",
    [
        "",
        "sh: python3: not found",
        PROBE_MARKER + "{not json",
        "prefix " + PROBE_MARKER + json.dumps(dataclasses.asdict(KEY)),
    ],
)
def test_parse_garbage_is_a_warpdrive_error_with_fix(output: str) -> None:
    with pytest.raises(WarpdriveError) as info:
        parse_probe_output(output, "alpine:3")
    assert "alpine:3" in str(info.value)
    assert info.value.fix is not None
    assert "python" in info.value.fix
    assert "fix:" in str(info.value)


def test_parse_error_shows_the_output() -> None:
    with pytest.raises(WarpdriveError, match="exec: python3: not found"):
        parse_probe_output("exec: python3: not found\n", "busybox")


@pytest.mark.parametrize("payload", ["{}", "[1, 2]"])
def test_parse_marker_with_wrong_json_shape_is_a_warpdrive_error(payload: str) -> None:
    with pytest.raises(WarpdriveError):
        parse_probe_output(PROBE_MARKER + payload, "img")


# ----------------------------------------------------------------------------- key


def test_slug() -> None:
    assert KEY.slug == "cp312-cp312-linux_x86_64-glibc2.36-debian12"


def test_slug_replaces_unsafe_characters() -> None:
    key = dataclasses.replace(KEY, platform="linux/x86 64", distro_version="12 (bookworm)")
    slug = key.slug
    assert "/" not in slug and " " not in slug and "(" not in slug
    assert slug.startswith("cp312-cp312-linux_x86_64-")


def test_to_json_roundtrip() -> None:
    assert PlatformKey.from_dict(json.loads(KEY.to_json())) == KEY


# ----------------------------------------------------------------------------- comparison


def test_identical_keys_have_no_mismatches() -> None:
    assert mismatches(KEY, dataclasses.replace(KEY)) == []
    check_compatible("b:1", KEY, "base:1", dataclasses.replace(KEY))


def test_patch_version_and_executable_do_not_matter() -> None:
    other = dataclasses.replace(KEY, python_version="3.12.7", executable="/usr/bin/python3")
    assert mismatches(KEY, other) == []
    check_compatible("builder:1", KEY, "base:1", other)  # does not raise


@pytest.mark.parametrize(
    "changes",
    [
        {"libc_version": "2.31"},
        {"distro": "ubuntu"},
        {"distro_version": "11"},
        {"interpreter": "cp311", "abi": "cp311"},
        {"platform": "linux_aarch64"},
        {"libc": "musl"},
        {"abi": "cp312t"},
    ],
)
def test_mismatches_name_the_differing_fields(changes: dict[str, str]) -> None:
    other = dataclasses.replace(KEY, **changes)
    assert sorted(mismatches(KEY, other)) == sorted(changes)


def test_check_compatible_names_images_and_fields() -> None:
    base = dataclasses.replace(KEY, libc_version="2.31", distro_version="11")
    with pytest.raises(PlatformMismatchError) as info:
        check_compatible("mybuilder:bookworm", KEY, "python:3.12-slim-bullseye", base)
    msg = str(info.value)
    assert "mybuilder:bookworm" in msg
    assert "python:3.12-slim-bullseye" in msg
    assert "libc_version" in msg and "distro_version" in msg
    assert "libc," not in msg  # only the fields that differ
    assert info.value.fix
    assert isinstance(info.value, WarpdriveError)


# ----------------------------------------------------------------------------- the real probe


def test_probe_script_runs_on_host_python() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    key = parse_probe_output("some banner\n" + proc.stdout, "host")
    major, minor = sys.version_info[:2]
    assert key.interpreter == f"cp{major}{minor}"
    assert key.abi.startswith(f"cp{major}{minor}")
    assert key.python_version.startswith(f"{major}.{minor}.")
    assert key.executable == sys.executable
    assert key.platform and "-" not in key.platform and "." not in key.platform
    assert key.libc  # "glibc", "musl" or "unknown", never empty
    assert key.distro
    assert mismatches(key, key) == []


def test_probe_script_is_stdlib_only_and_prints_one_marker_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(PROBE_MARKER)]
    assert len(lines) == 1


# ----------------------------------------------------------------------------- marker values


def test_probe_reports_the_marker_values_packaging_computes() -> None:
    """Lock files are read for the image: the probe computes inside it what
    ``packaging.markers.default_environment()`` computes here."""
    from packaging.markers import default_environment

    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE_SCRIPT], capture_output=True, text=True
    )
    key = parse_probe_output(proc.stdout, "host")
    assert key.marker_environment() == {k: str(v) for k, v in default_environment().items()}
    assert set(key.marker_environment()) == set(MARKER_NAMES)


def with_markers(key: PlatformKey, **markers: str) -> PlatformKey:
    return dataclasses.replace(key, markers=tuple(sorted(markers.items())))


def test_markers_are_not_part_of_the_key() -> None:
    """The kernel's release differs between engines; a key is what a wheel fits."""
    a = with_markers(KEY, platform_release="6.1.0", python_full_version="3.12.4")
    b = with_markers(KEY, platform_release="5.10.0", python_full_version="3.12.4")
    assert a == b and hash(a) == hash(b) and mismatches(a, b) == [] and a.slug == b.slug


def test_markers_survive_json() -> None:
    key = with_markers(KEY, sys_platform="linux", python_version="3.12")
    again = PlatformKey.from_dict(json.loads(key.to_json()))
    assert again.markers == key.markers
    assert json.loads(key.to_json())["markers"] == {
        "python_version": "3.12",
        "sys_platform": "linux",
    }
    junk = {**json.loads(key.to_json()), "markers": {"evil": "x", "os_name": 1}}
    assert PlatformKey.from_dict(junk).marker_environment() == {"os_name": "1"}
    assert PlatformKey.from_dict({**junk, "markers": "not a table"}).markers == ()


def test_probe_cache_keeps_markers_and_ignores_older_entries() -> None:
    from nox_warpdrive.wheelhouse import probe_cache

    key = with_markers(KEY, sys_platform="linux")
    probe_cache.store("sha256:one", "python3", key)
    loaded = probe_cache.load("sha256:one", "python3")
    assert loaded == key and loaded is not None and loaded.markers == key.markers
    # written by an older nox-warpdrive: the key alone, no markers: probed again
    path = probe_cache._path("sha256:two", "python3")
    path.write_text(KEY.to_json())
    assert probe_cache.load("sha256:two", "python3") is None
    path.write_text(json.dumps({"format": probe_cache.FORMAT, "key": json.loads(KEY.to_json())}))
    assert probe_cache.load("sha256:two", "python3") is None  # no marker values: probed again
    path.write_text("{broken")
    assert probe_cache.load("sha256:two", "python3") is None


def test_probe_cache_is_keyed_by_the_python_command() -> None:
    """A probe of python3 says nothing of python3.12: the image may not even have it."""
    from nox_warpdrive.wheelhouse import probe_cache

    key = with_markers(KEY, sys_platform="linux")
    probe_cache.store("sha256:one", "python3", key)
    assert probe_cache.load("sha256:one", "python3") == key
    assert probe_cache.load("sha256:one", "python3.12") is None
    assert probe_cache.load("sha256:one", "/usr/bin/python3") is None


class _ProbingEngine(FakeEngine):
    """Runs the probe as an image without ``missing`` would: runc's exec error."""

    def __init__(self, missing: str) -> None:
        super().__init__(images={"app-base:1": BASE})
        self.missing = missing
        self.probes: list[list[str]] = []

    def run_probe(self, image: str, command: list[str], network: str | None = None) -> str:
        self.probes.append(command)
        if command[0] == self.missing:
            said = (
                "HTTP 400: failed to create shim task: OCI runtime create failed: runc create "
                f'failed: unable to start container process: exec: "{command[0]}": executable '
                "file not found in $PATH: unknown"
            )
            raise CommandMissing(image, command[0], said)
        return probe_line(with_markers(KEY, sys_platform="linux"))


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm-probe"])
def test_a_python_the_image_lacks_is_a_config_error_naming_the_key(warm: bool) -> None:
    from nox_warpdrive.config import Config
    from nox_warpdrive.wheelhouse.build import probe_image

    engine = _ProbingEngine(missing="python3.12")
    good = Config(Path("/app"), "app", "app:latest", "app-base:1", "app-base:1", ())
    if warm:  # the probe of the default python3 is cached: it must not stand in
        probe_image(engine, "app-base:1", "base-image", good)
        assert len(engine.probes) == 1
    wrong = dataclasses.replace(good, python="python3.12")
    with pytest.raises(ConfigError) as info:
        probe_image(engine, "app-base:1", "base-image", wrong)
    text = str(info.value)
    assert "`python = 'python3.12'`" in text and "base-image app-base:1" in text, text
    assert "executable file not found" in text
    assert "set `python`" in (info.value.fix or "")
    assert "runs and answers" not in text  # the engine answered: never blamed
