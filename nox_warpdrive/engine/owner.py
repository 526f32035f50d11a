"""Who owns a temporary container or volume: this process, on this host.

Every temporary container this tool makes is named ``warpdrive-tmp.<what>.<owner>.<rand>``
and every temporary volume carries the owner in a label, so that a run can find and
remove what an earlier run left when it was killed (SIGKILL, a power cut, a CI runner
torn down): the first line of defence is ``finally`` and the signal handlers, this is
the second. A name, not a label, marks containers: ``commit`` copies a container's labels
into the image it makes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from ..labels import OWNER_PROCESS_LABEL

#: prefix of every temporary container's name
TEMP_PREFIX = "warpdrive-tmp."
#: label naming the owner of a temporary volume
PROCESS_LABEL = OWNER_PROCESS_LABEL
#: a temporary thing of another host is removed once it is this old and stopped (or
#: unused, for a volume): the longest a create -> start gap can be
STOPPED_GRACE = 600.0
#: ... and whatever its state, once it is this old: no build runs for six hours
ANY_GRACE = 6 * 3600.0


def _start_ticks(pid: int, live: bool = False) -> str:
    """The process's start time in clock ticks since boot (Linux), telling a live owner
    from a later process that reuses its pid; "0" where /proc is not there. ``live``:
    also "0" for a zombie (killed, not yet reaped by its parent: its things are
    leftovers already)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    fields = stat.rsplit(")", 1)[-1].split()
    if live and fields and fields[0] in ("Z", "X"):
        return "0"
    return fields[19] if len(fields) > 19 else "0"


def _host_token() -> str:
    """A short stable id of this machine (its boot id when there is one: a reboot ends
    every owner)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{boot}".encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    start: str

    @property
    def token(self) -> str:
        return f"{self.host}.{self.pid}.{self.start}"

    @classmethod
    def parse(cls, token: str) -> Owner | None:
        parts = token.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2])

    def alive(self) -> bool:
        """Whether the owning process still runs (only knowable on its own host)."""
        return _start_ticks(self.pid, live=True) == self.start and self.start != "0"


def me() -> Owner:
    pid = os.getpid()
    return Owner(_host_token(), pid, _start_ticks(pid))


def temp_name(what: str) -> str:
    """A unique name for a temporary container of this process."""
    safe = "".join(c if c.isalnum() else "-" for c in what)[:20] or "step"
    return f"{TEMP_PREFIX}{safe}.{me().token}.{secrets.token_hex(4)}"


def owner_of_name(name: str) -> Owner | None:
    name = name.lstrip("/")
    if not name.startswith(TEMP_PREFIX):
        return None
    parts = name[len(TEMP_PREFIX) :].split(".")
    return Owner.parse(".".join(parts[1:4])) if len(parts) == 5 else None


def abandoned(owner: Owner | None, age: float, running: bool) -> bool:
    """Whether a temporary thing is a leftover: its owner on this host is gone, or (for
    another host, whose processes cannot be seen) it is stopped and old, or very old."""
    if owner is None:
        return False
    here = me()
    if owner.host == here.host:
        return owner != here and not owner.alive()
    return (not running and age > STOPPED_GRACE) or age > ANY_GRACE


def age_of(created: str | int | float, now: float) -> float:
    """Seconds since an engine timestamp (Unix seconds, or RFC 3339 as volumes give it)."""
    if isinstance(created, (int, float)):
        return now - float(created)
    text = created.strip()
    if not text:
        return 0.0
    text = text.replace("Z", "+00:00")
    if "." in text:  # nanoseconds: Python reads at most microseconds
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return now - moment.timestamp()
