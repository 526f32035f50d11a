"""Reading the inputs for a target: a lock file (through the readers in locks/), a
requirement file with hashes, or plain requirement files."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from ..config import Config, normalize
from ..errors import ConfigError
from .model import Locked, Pin, Target, read_text
from .requirements import RequirementSet, read_requirements

# ---------------------------------------------------------------------------------------
# requirement files with --hash (pip's hash-checking mode)

_OPTION = re.compile(r"\s(?=--?[A-Za-z])")
_HASH = re.compile(r"--hash[=\s]+(\w+):([0-9A-Fa-f]+)")
#: options a hashed file may carry that change nothing for pinned, hashed requirements
_HARMLESS = ("--require-hashes", "--prefer-binary", "--only-binary", "--pre", "--trusted-host")


def _logical_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each logical line: continuations joined, comments
    dropped, as pip reads a requirements file."""
    start, parts = 0, list[str]()
    for n, raw in enumerate(read_text(path).splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not parts:
            start = n
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        text = " ".join(p.strip() for p in parts).strip()
        parts = []
        if text:
            yield start, text


@dataclass(frozen=True)
class _Hashed:
    """What hashed requirement files hold: requirement lines and the indexes they name."""

    lines: tuple[tuple[str, str, tuple[str, ...]], ...]  # (where, requirement, sha256s)
    unhashed: tuple[str, ...]  # where each requirement without --hash is
    options: tuple[tuple[str, str], ...]  # (where, line) of other options
    index: str | None
    extra_indexes: tuple[str, ...]


def _scan_hashed(files: Sequence[Path]) -> _Hashed:
    reqs: list[tuple[str, str, tuple[str, ...]]] = []
    unhashed: list[str] = []
    index: str | None = None
    extra: list[str] = []
    options: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def visit(path: Path) -> None:
        nonlocal index
        if path in seen:
            return
        seen.add(path)
        for n, text in _logical_lines(path):
            where = f"{path.name} line {n}"
            m = re.match(r"^(-r|--requirement|-c|--constraint|-i|--index-url|--extra-index-url)"
                         r"(?:\s+|=)(\S+)", text)  # fmt: skip
            if m and m.group(1) in ("-r", "--requirement"):
                visit((path.parent / m.group(2)).resolve())
            elif m and m.group(1) in ("-i", "--index-url"):
                index = m.group(2)
            elif m and m.group(1) == "--extra-index-url":
                extra.append(m.group(2))
            elif m or text.startswith(_HARMLESS):
                continue  # constraints only pin: every hashed requirement is pinned
            elif text.startswith("-"):
                options.append((where, text))  # refused below if hashes are on
            else:
                req = _OPTION.split(text, 1)[0]
                hashes = tuple(h.lower() for a, h in _HASH.findall(text) if a == "sha256")
                if "--hash" in text and not hashes:
                    hashes = ("",)  # only other algorithms: refused below
                if hashes:
                    reqs.append((where, req, hashes))
                else:
                    unhashed.append(where)

    for f in files:
        visit(f)
    return _Hashed(tuple(reqs), tuple(unhashed), tuple(options), index, tuple(extra))


def read_hashed_requirements(cfg: Config, target: Target) -> Locked | None:
    """Requirement files where a requirement has ``--hash``, read as pip's hash-checking
    mode reads them: every requirement pinned with ``==`` and hashed, markers evaluated
    for the target. None when no requirement has a hash (pip resolves them)."""
    scan = _scan_hashed(cfg.requirement_files)
    if not scan.lines:
        return None
    if scan.options:
        where, text = scan.options[0]
        raise ConfigError(
            f"{where}: option {text.split()[0]} is not supported in a file with --hash",
            fix="remove it (nox-warpdrive reads -r, -c, --index-url, --extra-index-url and "
            "harmless options there)",
        )
    if scan.unhashed:
        raise ConfigError(
            f"{scan.unhashed[0]}: a requirement has no --hash, and others do (pip's "
            "hash-checking mode needs one on every requirement)",
            fix="generate the file with hashes for all (`uv pip compile --generate-hashes`, "
            "`pip-compile --generate-hashes`)",
        )
    pins: dict[str, Pin] = {}
    for where, text, hashes in scan.lines:
        pin = _hashed_pin(where, text, hashes, target, scan.index)
        if pin is None:
            continue
        if pin.name in pins and pins[pin.name].version != pin.version:
            raise ConfigError(
                f"{where}: {pin.name} is required twice, at {pin.version} and "
                f"{pins[pin.name].version}",
                fix="keep one pin",
            )
        old = pins.get(pin.name)
        pins[pin.name] = (
            dataclasses.replace(pin, hashes=tuple(dict.fromkeys(old.hashes + pin.hashes)))
            if old
            else pin
        )
    names = ", ".join(p.name for p in cfg.requirement_files)
    return Locked(tuple(pins.values()), None, f"{names} (--hash)", scan.extra_indexes)


def _hashed_pin(
    where: str, text: str, hashes: tuple[str, ...], target: Target, index: str | None
) -> Pin | None:
    if "" in hashes:
        raise ConfigError(
            f"{where}: only sha256 hashes are checked, and this line has none",
            fix="generate the file with sha256 hashes",
        )
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise ConfigError(f"{where}: invalid requirement {text!r}: {exc}", fix="fix it") from exc
    if req.marker is not None and not target.matches(req.marker):
        return None
    specs = list(req.specifier)
    if (
        req.url
        or len(specs) != 1
        or specs[0].operator not in ("==", "===")
        or "*" in specs[0].version
    ):
        raise ConfigError(
            f"{where}: {text!r} is not pinned with == (pip's hash-checking mode needs "
            "every requirement pinned)",
            fix="pin it, e.g. `name==1.2.3 --hash=sha256:...`",
        )
    return Pin(normalize(req.name), specs[0].version, hashes=hashes, index=index, where=where)


# ---------------------------------------------------------------------------------------
# the app's requirement set


def read_lock(cfg: Config, target: Target) -> Locked:
    """The lock file's selection for the target, by its format's reader (locks/)."""
    from .locks import pipenv, poetry, pylock, uv

    readers = {
        "pylock": pylock.read_pylock,
        "uv": uv.read_uv_lock,
        "poetry": poetry.read_poetry_lock,
        "pipenv": pipenv.read_pipfile_lock,
    }
    assert cfg.lock_file is not None and cfg.lock_format is not None
    return readers[cfg.lock_format](cfg, cfg.lock_file, target)


def describe(cfg: Config, locked: Locked, target: Target) -> str:
    """One line for the build's output: what the app is installed from, and what that
    selects for the target."""
    parts = [f"{len(locked.pins)} pinned packages for {target.label}"]
    if cfg.groups:
        parts.append("groups: " + ", ".join(cfg.groups))
    if cfg.extras:
        parts.append("extras: " + ", ".join(cfg.extras))
    if locked.project is not None:
        how = "editable" if locked.project.editable else "a wheel"
        parts.append(f"the project {locked.project.name} ({how}, built from the source)")
    if locked.members:
        names = ", ".join(m.name for m in locked.members)
        parts.append(f"the workspace members {names} (wheels built from their directories)")
    reason = cfg.inputs_reason if cfg.lock_file is not None else locked.source
    return f"{reason}: " + "; ".join(parts)


def inputs_line(cfg: Config, reqs: RequirementSet) -> str:
    """The one line every build says (and ``--plan`` shows): what the installed set
    comes from, locked or not, the server added on top, and each lock file up to the
    repository root that was not used, with why. An unlocked build must never look like
    a locked one."""
    line = f"warpdrive: installing from {reqs.source or cfg.inputs_reason}"
    if not reqs.locked_from:
        line += ", not locked" if cfg.dependencies else ", resolved at build (not locked)"
    if reqs.extra and reqs.locked_from:
        line += (
            f"; plus {', '.join(reqs.extra)} for the image's server, which the lock lacks: "
            "resolved against its pins, not locked (add it to the lock to pin it)"
        )
    elif reqs.extra:
        line += f"; plus {', '.join(reqs.extra)} for the image's server"
    if cfg.unused_locks:
        line += "; not used: " + "; ".join(cfg.unused_locks)
    return line


def read_inputs(cfg: Config, target: Target) -> RequirementSet:
    """The app's requirement set for the target, without the server (wheelhouse adds
    it): the lock's pins, or hashed requirement files' pins, or requirement files and
    [project].dependencies to resolve."""
    locked = None
    if cfg.lock_file is not None:
        locked = read_lock(cfg, target)
    elif cfg.requirement_files:
        locked = read_hashed_requirements(cfg, target)
    if locked is not None:
        return RequirementSet(
            files=(),
            top=(),
            extra=(),
            locked_from=cfg.lock_file.name if cfg.lock_file else locked.source,
            locked=tuple(sorted(locked.pins, key=lambda p: p.name)),
            project=locked.project,
            members=locked.members,
            indexes=locked.indexes,
            source=describe(cfg, locked, target),
        )
    base = read_requirements(cfg)
    return dataclasses.replace(base, source=cfg.inputs_reason)
