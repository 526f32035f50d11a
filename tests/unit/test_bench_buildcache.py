"""Which BuildKit cache records the bench removes: only the peers' own, children first.
The engine is faked."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # plain `pytest` puts tests/unit first, not the checkout
    sys.path.insert(0, str(REPO))

from bench.apps import make_app  # noqa: E402
from bench.buildcache import depth, our_cache_records, parse_created, prune_cache  # noqa: E402
from bench.dockercli import Docker  # noqa: E402
from bench.peers import Peer  # noqa: E402

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
OURS = "python3 -m venv /opt/venv && pip install -r requirements.txt"


def test_parse_created_reads_the_engines_time_format() -> None:
    assert parse_created("2024-05-01 10:00:00.123456789 +0000 UTC") == T0.replace(
        microsecond=123456
    )
    assert parse_created("2024-05-01 10:00:00 +0000 UTC") == T0
    assert parse_created("2024-05-01 10:00:00.5") == T0.replace(microsecond=500000)
    assert parse_created("") is None
    assert parse_created("yesterday") is None


def test_depth_counts_ancestors_and_survives_a_loop() -> None:
    parents = {"c": "b", "b": "a", "a": ""}
    assert (depth("a", parents), depth("b", parents), depth("c", parents)) == (0, 1, 2)
    assert depth("unknown", parents) == 0
    assert depth("x", {"x": "y", "y": "x"}) == 100


def peer(tmp_path: Path, docker: Docker | None = None) -> Peer:
    """A peer that built from T0 to T0 + 60 s, with one RUN command."""
    p = Peer(
        "layered", docker or Docker("docker"), tmp_path, make_app(None, None, None), tmp_path, "n"
    )
    p.intervals.append((T0, T0 + dt.timedelta(seconds=60)))
    p.commands = {OURS}
    return p


def record(rid: str, seconds: float, description: str = "", **extra: str) -> dict[str, str]:
    created = (T0 + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S.%f")
    return {"ID": rid, "CreatedAt": f"{created} +0000 UTC", "Description": description, **extra}


def test_only_the_peers_records_are_chosen(tmp_path: Path) -> None:
    records = [
        record("mine", 10, f"mount / from exec /bin/sh -c {OURS}"),
        record("copy", 20, "[2/4] COPY requirements.txt ."),  # no command to check: ours
        record("early", -0.5),  # within the second of slack before a build
        record("old", 10),  # existed before the bench
        record("busy", 10, InUse="true"),
        record("later", 61),  # after the build
        record("other", 10, "mount / from exec /bin/sh -c make"),  # someone else's RUN
        record("", 10),
        {"ID": "no-time", "CreatedAt": "?"},
    ]
    chosen = our_cache_records(records, {"old"}, [peer(tmp_path)])
    assert chosen == ["mine", "copy", "early"]


@dataclass(frozen=True)
class FakeDocker(Docker):
    """A build cache that loses a record on every ``builder prune --filter id=...``."""

    records: list[dict[str, str]] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)

    def build_cache(self) -> list[dict[str, str]]:
        return list(self.records)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert args[:4] == ("builder", "prune", "--force", "--filter")
        rid = args[4].removeprefix("id=")
        self.pruned.append(rid)
        self.records[:] = [r for r in self.records if r["ID"] != rid]
        return subprocess.CompletedProcess([self.cli, *args], 0, "", "")


def test_prune_removes_children_before_parents(tmp_path: Path) -> None:
    docker = FakeDocker(
        "docker",
        records=[
            record("root", 1, Parent=""),
            record("leaf", 3, Parent="mid"),
            record("mid", 2, Parent="root"),
            record("theirs", 2, "mount / from exec /bin/sh -c make", Parent="root"),
        ],
    )
    assert prune_cache(docker, set(), [peer(tmp_path, docker)]) == 0
    assert docker.pruned == ["leaf", "mid", "root"]
    assert [r["ID"] for r in docker.records] == ["theirs"]
