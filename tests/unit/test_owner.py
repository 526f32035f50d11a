"""Owners of temporary containers and volumes (owner.py): names that carry their owner,
and the rule that tells a leftover from the temporary thing of a live run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from nox_warpdrive.engine import owner


def test_temp_names_are_unique_and_carry_this_process() -> None:
    a, b = owner.temp_name("wheelhouse"), owner.temp_name("wheelhouse")
    assert a != b
    assert a.startswith(owner.TEMP_PREFIX + "wheelhouse.")
    assert owner.owner_of_name(a) == owner.me()
    assert owner.owner_of_name("/" + a) == owner.me()  # the engine lists names with a slash


def test_temp_names_are_valid_docker_names() -> None:
    name = owner.temp_name("a step/with: odd chars and a very long name")
    assert all(c.isalnum() or c in "_.-" for c in name)


@pytest.mark.parametrize("name", ["other", "warpdrive-tmp.x", "warpdrive-tmp.x.h.notapid.1.r"])
def test_foreign_names_have_no_owner(name: str) -> None:
    assert owner.owner_of_name(name) is None


def test_this_process_is_alive_and_a_finished_one_is_not() -> None:
    assert owner.me().alive()
    proc = subprocess.run(
        [sys.executable, "-c", "from nox_warpdrive.engine import owner; print(owner.me().token)"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = owner.Owner.parse(proc.stdout.strip())
    assert dead is not None and dead.host == owner.me().host
    assert not dead.alive()
    # a later process reusing the pid has another start time
    assert not owner.Owner(owner.me().host, os.getpid(), "1").alive()


def test_abandoned_on_this_host_follows_the_owner_process() -> None:
    here = owner.me()
    assert not owner.abandoned(here, age=10**6, running=True)
    gone = owner.Owner(here.host, here.pid, "1")
    assert owner.abandoned(gone, age=0, running=True)
    assert not owner.abandoned(None, age=10**6, running=False)


def test_abandoned_on_another_host_follows_age_and_state() -> None:
    other = owner.Owner("elsewhere", 1, "5")
    assert not owner.abandoned(other, age=5, running=False)  # created, about to start
    assert owner.abandoned(other, age=owner.STOPPED_GRACE + 1, running=False)
    assert not owner.abandoned(other, age=owner.STOPPED_GRACE + 1, running=True)
    assert owner.abandoned(other, age=owner.ANY_GRACE + 1, running=True)


def test_age_of_engine_timestamps() -> None:
    now = time.time()
    assert owner.age_of(int(now) - 30, now) == pytest.approx(30, abs=1)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 90))
    assert owner.age_of(stamp + ".123456789Z", now) == pytest.approx(90, abs=1)
    assert owner.age_of(stamp + "+00:00", now) == pytest.approx(90, abs=1)
    assert owner.age_of("", now) == 0.0
    assert owner.age_of("not a time", now) == 0.0
