"""Removing the BuildKit cache the peers' builds made, and nothing else.

Never ``docker builder prune -af``: the engine is shared, and a global prune would
destroy other people's build cache. The bench picks records by id instead (see
``our_cache_records``) and removes them one by one, children first."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .dockercli import Docker
    from .peers import Peer


def parse_created(value: str) -> dt.datetime | None:
    """A record's ``CreatedAt`` (``2024-05-01 10:00:00.123456789 +0000 UTC``) as aware UTC
    time; nanoseconds are cut to what datetime holds. None when it is not such a time."""
    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)?", value)
    if not m:
        return None
    fraction = (m.group(2) or ".0")[:7]
    return dt.datetime.strptime(m.group(1) + fraction, "%Y-%m-%d %H:%M:%S.%f").replace(
        tzinfo=dt.timezone.utc
    )


def our_cache_records(
    records: list[dict[str, str]], before: set[str], peers: Sequence[Peer]
) -> list[str]:
    """Build cache records the peers' builds made: new since the bench began, created
    during one of their builds, and for RUN steps with one of their commands."""
    intervals = [i for p in peers for i in p.intervals]
    commands = {c for p in peers for c in p.commands}
    ours = []
    for record in records:
        rid = record.get("ID", "")
        created = parse_created(record.get("CreatedAt", ""))
        if not rid or rid in before or created is None or record.get("InUse") == "true":
            continue
        if not any(a - dt.timedelta(seconds=1) <= created <= b for a, b in intervals):
            continue
        description = record.get("Description", "")
        if " from exec " in description:
            command = description.split(" from exec /bin/sh -c ", 1)[-1]
            if command not in commands:
                continue
        ours.append(rid)
    return ours


def depth(rid: str, parents: Mapping[str, str]) -> int:
    """How many ancestors a build cache record has (at most 100, should the parents ever
    form a loop): the deepest go first, as the engine keeps a record with children."""
    n = 0
    while parents.get(rid) and n < 100:
        rid, n = parents[rid], n + 1
    return n


def prune_cache(docker: Docker, before: set[str], peers: Sequence[Peer]) -> int:
    """Remove the peers' build cache by record id (never a global prune: other builds
    may share the engine). A record goes only after its children, so deepest first.
    Returns how many of the peers' records are left."""
    left: list[str] = []
    for _ in range(4):
        records = docker.build_cache()
        left = our_cache_records(records, before, peers)
        if not left:
            break
        parents = {r.get("ID", ""): r.get("Parent", "") for r in records}
        for rid in sorted(left, key=lambda r: depth(r, parents), reverse=True):
            docker.run("builder", "prune", "--force", "--filter", f"id={rid}", check=False)
    return len(left)
