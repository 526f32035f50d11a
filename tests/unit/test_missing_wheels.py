"""Missing is not damaged: the deps step tells a wheel that is not in the volume from one
whose bytes are wrong, and a volume that did not keep what the builder wrote (a tmpfs
volume) is named as such instead of sending the user round a `--verify` loop."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from fake_engine import FakeEngine

from nox_warpdrive.build.deps import DamagedWheels, run_deps
from nox_warpdrive.errors import WarpdriveError
from nox_warpdrive.plan import Step
from nox_warpdrive.platform import PlatformKey
from nox_warpdrive.runtime import assemble
from nox_warpdrive.runtime.protocol import DAMAGED_LINE, MISSING_LINE
from nox_warpdrive.wheelhouse.build import VolumeLostFiles, check_kept, manifest_path

KEY = PlatformKey("cp311", "cp311", "linux_x86_64", "glibc", "2.36", "debian", "12", "3.11.2")


def test_the_deps_step_says_which_wheels_are_missing_and_which_damaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good-1-py3-none-any.whl").write_bytes(b"good")
    (tmp_path / "bad-1-py3-none-any.whl").write_bytes(b"changed")
    names = ["good-1-py3-none-any.whl", "bad-1-py3-none-any.whl", "gone-1-py3-none-any.whl"]
    plan = {"sha256": {n: hashlib.sha256(b"good").hexdigest() for n in names}}
    plan["sha256"]["bad-1-py3-none-any.whl"] = hashlib.sha256(b"bad").hexdigest()
    with pytest.raises(SystemExit) as exit_:
        assemble.check_wheels(plan, [str(tmp_path / n) for n in names])
    assert exit_.value.code == assemble.DAMAGED_EXIT
    lines = capsys.readouterr().out.splitlines()
    assert DAMAGED_LINE + json.dumps(["bad-1-py3-none-any.whl"]) in lines
    assert MISSING_LINE + json.dumps(["gone-1-py3-none-any.whl"]) in lines


def test_run_deps_hands_both_lists_to_the_error() -> None:
    engine = FakeEngine(
        output=[DAMAGED_LINE + '["a.whl"]', MISSING_LINE + '["b.whl", "c.whl"]'], exit_code=65
    )
    step = Step(name="deps", image="sha256:base", command=("true",))
    with pytest.raises(DamagedWheels) as found:
        run_deps(engine, step, lambda _: None)
    assert found.value.files == ("a.whl", "b.whl", "c.whl")
    assert found.value.missing == ("b.whl", "c.whl")
    assert "1 wheels in the wheelhouse do not match their sha256: a.whl" in found.value.message
    assert "2 wheels the wheelhouse lists are missing from it: b.whl, c.whl" in (
        found.value.message
    )


def test_only_missing_wheels_do_not_speak_of_sha256() -> None:
    error = DamagedWheels([], ["b.whl"])
    assert "sha256" not in error.message and "missing" in error.message


def test_a_volume_that_kept_its_manifest_passes() -> None:
    engine = FakeEngine(volume_files={("shop", manifest_path(KEY)): b"{}"})
    check_kept(engine, "shop", KEY, "sha256:builder")  # type: ignore[arg-type]


def test_a_volume_that_lost_its_manifest_is_named() -> None:
    with pytest.raises(VolumeLostFiles) as found:
        check_kept(FakeEngine(), "shop", KEY, "sha256:builder")  # type: ignore[arg-type]
    assert isinstance(found.value, WarpdriveError)
    assert "the volume 'shop' did not keep its files: a tmpfs volume?" in found.value.message
    assert found.value.fix is not None and "docker volume rm shop" in found.value.fix
    assert "--verify" not in str(found.value)
