"""The host's index of the app source, like git's: per directory, its signature at the
last build (its names and their lstat but the access time: context.directory_key) and
what was made of its entries (the members of the app layers, with each file's sha256).
A build still stats every file (a file's edit changes nothing but its own stat), but a
directory whose signature is unchanged is not looked at again, file by file: the walk
makes nothing of its files (no rule tried, no check, no entry), and its members come
from the index as they are; in a directory that changed, only the files whose stat
changed are read, to hash them. Reading tens of thousands of files costs seconds, and a
code change changes one.

What the index never does is decide what goes into a layer: layers are made from the
files' bytes (checked against these digests as they are written), and the digests only
say which files are the same as before. So a stale, damaged or foreign index can cost
time, never a wrong image:

* A file changed within the timestamp granularity of when it was hashed can keep its
  size, mtime and ctime ("racily clean", as git calls it): a digest is trusted only
  when the file's mtime and ctime were at least :data:`RACY_SECONDS` older than the
  moment it was hashed, and older than the newest ctime the walk saw (the filesystem's
  own clock, should it differ from this host's; the walk sees the files of the
  directories it looks into, and a lower clock only makes more files racily clean); a
  younger one is recorded as unknown, and hashed again at the next build.
* The index is a cache, in the user's cache directory (``XDG_CACHE_HOME``), keyed by the
  project's real path, never in the project (where it would end up in a layer or a
  commit). A file that does not parse, does not match its own checksum, has another
  format or names another project (or another ``SOURCE_DATE_EPOCH``, or other ignore
  rules: the walk trusts it to say what the rules made of a directory) is ignored, and
  everything is hashed.
* Inode and device are in the signature: a file replaced by another (a checkout, an
  editor that writes a new file and renames it) is hashed again even if size and times
  match.

The listings of the layers a build made (layers.py) are kept here too, by key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..layout import APP_UID
from .context import LARGE_FILE_BYTES, Entry, IgnoreRules, Walked, file_signatures
from .layers import Rec, is_asset
from .steady import Hashed

#: the index file's format; an index of another format is ignored
FORMAT = "nox-warpdrive source index 4"

#: how much older than the moment it was hashed a file's mtime and ctime must be for its
#: digest to be trusted later. Signatures keep whole seconds; any change made after the
#: hash then has a later second in its ctime (which no user can set back). Coarse
#: timestamps (2 s on FAT) and a kernel clock a tick behind the wall clock stay inside.
RACY_SECONDS = 3

#: what the signature of a directory with racily clean files starts with in the index:
#: it never equals a walk's, so the directory is looked at again (the rest of its files
#: from the index, those files hashed again)
RACY = b"racy\n"

#: what the tree's digest starts with (a new way of hashing makes every key new)
_DIGEST_FORMAT = b"nox-warpdrive source tree 1\0"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nox-warpdrive" / "source-index"


def index_path(root: Path) -> Path:
    """Where the index of the project at ``root`` lives (one file per project and index
    format: two versions of this tool used on one project do not undo each other's)."""
    real = os.path.realpath(root).encode("utf-8", "surrogateescape")
    return cache_dir() / (hashlib.sha256(FORMAT.encode() + b"\0" + real).hexdigest()[:32] + ".idx")


def rules_key(rules: IgnoreRules) -> str:
    """What the index says of the ignore rules it was made with: a walk takes a
    directory's files from it only when the rules are those (context.walk_tree)."""
    return hashlib.sha256(json.dumps(rules.patterns).encode()).hexdigest()


@dataclass(frozen=True)
class Dir:
    """What the index keeps of one directory: its signature (context.directory_key;
    :data:`RACY` first when it has racily clean files), its entries' names in the app
    layers' tree and their members' lines (layers.Rec.line(), in the same order), the
    names of the assets among them and the assets' bytes."""

    signature: bytes
    names: str
    lines: str
    assets: str
    asset_bytes: int
    #: sha256 of its names and lines: the tree's digest is made of these
    digest: str = ""


@dataclass(frozen=True)
class SourceTree:
    """The source's part of the app layers: name (relative to /) -> member line, the
    names of its assets and their bytes, and a digest of all of it (the build key's)."""

    tree: dict[str, str]
    assets: list[str]
    asset_bytes: int
    digest: str
    #: the members by directory (layers.AppTree.dirs); None when a name has a newline
    dirs: dict[str, tuple[str, str]] | None = None
    #: the files bigger than context.LARGE_FILE_BYTES (all assets), in tree order
    large: list[str] = dataclasses.field(default_factory=list)


# --------------------------------------------------------------------------- the file


def _header(
    root: Path,
    where: tuple[str, int],
    rules: str,
    body: bytes | memoryview,
    dirs: list[list[object]],
) -> bytes:
    data = {
        "format": FORMAT,
        "root": os.path.realpath(root),
        "where": list(where),
        "rules": rules,
        "sha256": hashlib.sha256(body).hexdigest(),
        "dirs": dirs,
    }
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


#: indexes being written by this process (source_tree), waited for before one is read
_WRITING: list[threading.Thread] = []


def flush() -> None:
    """Wait until the indexes this process is writing are written."""
    while _WRITING:
        _WRITING.pop().join()


def load(root: Path, where: tuple[str, int], rules: IgnoreRules) -> dict[str, Dir]:
    """The index of ``root`` for the members ``where`` says (the prefix of their names,
    their mtime) and the ignore ``rules``; {} when there is none usable (see the module
    doc). A header with the length of every field, then the fields, concatenated: slices
    of one buffer, the signatures as bytes, the rest as text."""
    flush()
    try:
        data = index_path(root).read_bytes()
        cut = data.index(b"\n") + 1
        body = memoryview(data)[cut:]
        header = json.loads(data[:cut])
        dirs = header["dirs"]
        if data[:cut] != _header(root, where, rules_key(rules), body, dirs):
            return {}
        out: dict[str, Dir] = {}
        at = 0
        for name, n_sig, *lengths, asset_bytes in dirs:
            signature = bytes(body[at : at + n_sig])
            at += n_sig
            fields = []
            for n in lengths:
                fields.append(str(body[at : at + n], "utf-8", "surrogateescape"))
                at += n
            names, lines, assets = fields
            out[name] = Dir(signature, names, lines, assets, int(asset_bytes[0]), asset_bytes[1])
    except (OSError, ValueError, TypeError, KeyError):
        return {}
    return out if at == len(body) else {}


def save(root: Path, where: tuple[str, int], rules: IgnoreRules, dirs: Mapping[str, Dir]) -> None:
    """Write the index atomically (a reader sees the old one or the new one); a cache
    that cannot be written only costs time."""
    fields: list[bytes] = []
    rows: list[list[object]] = []
    for name, d in dirs.items():
        parts = [d.signature] + [
            p.encode("utf-8", "surrogateescape") for p in (d.names, d.lines, d.assets)
        ]
        fields += parts
        rows.append([name, *(len(p) for p in parts), [d.asset_bytes, d.digest]])
    body = b"".join(fields)
    path = index_path(root)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(_header(root, where, rules_key(rules), body, rows) + body)
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the tree


def source_tree(
    root: Path,
    walked: Walked,
    where: tuple[str, int],
    hash_file: Callable[[Entry], Hashed | None],
    rules: IgnoreRules,
    old: Mapping[str, Dir] | None = None,
    save_index: bool = True,
) -> SourceTree:
    """The members of the app layers that the walked source makes (``where``: the
    prefix of their names, the mtime they get; ``rules``: the ignore rules it was walked
    with): a directory whose signature is the one the index (``old``, else loaded) has
    is taken from it; in another, each file whose signature changed is hashed
    (``hash_file``: steady.Reads; a file it finds gone is left out). The index is then
    written back when something changed (unless ``save_index`` is false: ``image --
    --plan`` changes nothing)."""
    # now, by the wall clock and by the filesystem's (its newest ctime): a file changed
    # within RACY_SECONDS of the first, or as late as the second, is racily clean
    clocks = (int(time.time()), walked.newest[0])
    old = load(root, where, rules) if old is None else old
    new: dict[str, Dir] = {}
    tree: dict[str, str] = {}
    assets: list[str] = []
    asset_bytes = 0
    parts: list[str] = []
    dirs: dict[str, tuple[str, str]] | None = {}
    large: list[str] = []
    for directory, signature in walked.signatures.items():
        found = old.get(directory)
        if found is not None and found.signature == signature:
            new[directory] = found
            if found.names:
                tree.update(zip(found.names.split("\n"), found.lines.split("\n"), strict=True))
        else:
            names, lines, found, keep = _remake(
                signature, walked.children[directory], found, where, hash_file, clocks
            )
            tree.update(zip(names, lines, strict=True))
            if keep is not None:
                new[directory] = keep
            else:  # a name or link with a newline: its entry in the index could not be read
                dirs = None
        if dirs is not None:
            dirs[f"{where[0]}/{directory}" if directory else where[0]] = (found.names, found.lines)
        parts.append(f"{directory}\0{found.digest}")
        if found.assets:
            assets += found.assets.split("\n")
            asset_bytes += found.asset_bytes
            if found.asset_bytes > LARGE_FILE_BYTES:  # else none of its files is large
                large += _large(found, LARGE_FILE_BYTES)
    if save_index and new != old:
        # written while the build goes on (most of it waits on the engine); the process
        # waits for it before it exits, and a reader sees the old index or the new one
        writer = threading.Thread(
            target=save, args=(root, where, rules, new), name="warpdrive-index"
        )
        writer.start()
        _WRITING.append(writer)
    digest = hashlib.sha256(_DIGEST_FORMAT)  # of the directories' digests, in tree order
    digest.update("\n".join(parts).encode("utf-8", "surrogateescape"))
    large.sort(key=lambda name: name.split("/"))  # tree order
    return SourceTree(tree, assets, asset_bytes, digest.hexdigest(), dirs, large)


def _large(d: Dir, limit: int) -> list[str]:
    """The names of a directory's files bigger than ``limit`` bytes."""
    assets = set(d.assets.split("\n"))
    lines = dict(zip(d.names.split("\n"), d.lines.split("\n"), strict=True))
    return [n for n in lines if n in assets and int(lines[n].rpartition("\0")[2]) > limit]


def _remake(
    signature: bytes,
    entries: list[Entry],
    before: Dir | None,
    where: tuple[str, int],
    hash_file: Callable[[Entry], Hashed | None],
    clocks: tuple[int, int],
) -> tuple[list[str], list[str], Dir, Dir | None]:
    """A directory's members made again from its entries, each file's digest from the
    index when its signature is unchanged and it was not racily clean, else hashed:
    (names, member lines, the directory as this build uses it, as the index keeps it:
    the digests of racily clean files and of files that were not what the walk saw
    (steady.py) unknown; None when it cannot be kept)."""
    src, epoch = where
    sigs = file_signatures(signature)
    known_sigs: dict[str, tuple[int, ...]] = {}
    known_lines: dict[str, str] = {}
    if before is not None:
        known_sigs = file_signatures(before.signature.removeprefix(RACY))
        if before.names:
            known_lines = dict(zip(before.names.split("\n"), before.lines.split("\n"), strict=True))
    names: list[str] = []
    lines: list[str] = []
    kept: list[str] = []
    assets: list[str] = []
    asset_bytes = 0
    gone = False
    for entry in entries:
        name = f"{src}/{entry.relpath}"
        line = kept_line = member_line(entry, epoch)
        if entry.kind == "file":
            base = entry.relpath.rpartition("/")[2]
            sig = sigs[base]
            old = known_lines.get(name) if known_sigs.get(base) == sig else None
            found = _file_digest(entry, sig, old, hash_file, clocks)
            if found is None:  # deleted since the walk: left out
                gone = True
                continue
            digest, kept_digest, size = found
            line = f"{line}{digest}\0{size}"
            kept_line = f"{kept_line}{kept_digest}\0{size}"
            if is_asset(entry.relpath, size):
                assets.append(name)
                asset_bytes += size
        names.append(name)
        lines.append(line)
        kept.append(kept_line)
    text = json.dumps([names, lines]) if any("\n" in p for p in (*names, *lines)) else ""
    joined = ("\n".join(names), "\n".join(lines))
    data = (text or "\0".join(joined)).encode("utf-8", "surrogateescape")
    made = Dir(signature, *joined, "\n".join(assets), asset_bytes, hashlib.sha256(data).hexdigest())
    if text:  # a name or link with a newline: the joined lines could not be split again
        return names, lines, made, None
    if kept == lines and not gone:
        return names, lines, made, made
    keep = dataclasses.replace(made, signature=RACY + signature, lines="\n".join(kept))
    return names, lines, made, keep


def _file_digest(
    entry: Entry,
    sig: tuple[int, ...],
    old: str | None,
    hash_file: Callable[[Entry], Hashed | None],
    clocks: tuple[int, int],
) -> tuple[str, str, int] | None:
    """A file's digest from its member line in the index (``old``, when its signature
    is unchanged), else read: (digest, the digest the index keeps, "" when it cannot be
    trusted later, size); None when the file is gone."""
    digest = old.split("\0")[5] if old is not None else ""
    if digest:
        return digest, digest, entry.size
    hashed = hash_file(entry)
    if hashed is None:
        return None
    began, newest = clocks
    changed = max(sig[-2], sig[-1])  # mtime, ctime
    # too recent to tell from a later change, or not the bytes the walk saw: read again
    trusted = hashed.steady and changed + RACY_SECONDS <= began and changed < newest
    return hashed.digest, hashed.digest if trusted else "", hashed.size


def member_line(entry: Entry, epoch: int) -> str:
    """An entry's member line; a file's without its digest and size (they end it)."""
    if entry.kind == "file":
        mode = 0o775 if entry.mode & 0o100 else 0o664
        return f"file\0{mode:o}\0{APP_UID}\x000\0{epoch}\0"
    if entry.kind == "dir":
        return Rec("dir", 0o775, APP_UID, 0, epoch, "", 0).line()
    return Rec("symlink", 0o777, APP_UID, 0, epoch, entry.target or "", 0).line()


# --------------------------------------------------------------------------- listings


def store_lower(key: str, dirs: Mapping[str, tuple[str, str]]) -> None:
    """Keep the members of a pair of assets and code layers by directory (layers.group)
    under ``key``: the next build compares the tree with them directory by directory."""
    fields: list[str] = []
    rows: list[list[object]] = []
    for name, (names, lines) in dirs.items():
        fields += (names, lines)
        rows.append([name, len(names), len(lines)])
    body = "".join(fields).encode("utf-8", "surrogateescape")
    head = json.dumps({"key": key, "sha256": hashlib.sha256(body).hexdigest(), "dirs": rows})
    store_listing(f"lower-{key}", head.encode() + b"\n" + body)


def load_lower(key: str) -> dict[str, tuple[str, str]] | None:
    """What :func:`store_lower` kept under ``key``; None when it is not kept or does not
    check out."""
    path = listings_dir() / f"lower-{key}.lst"
    try:
        head, _, body = path.read_bytes().partition(b"\n")
        header = json.loads(head)
        if header["key"] != key or header["sha256"] != hashlib.sha256(body).hexdigest():
            return None
        text = body.decode("utf-8", "surrogateescape")
        out: dict[str, tuple[str, str]] = {}
        at = 0
        for name, n_names, n_lines in header["dirs"]:
            out[name] = (text[at : at + n_names], text[at + n_names : at + n_names + n_lines])
            at += n_names + n_lines
    except (OSError, ValueError, TypeError, KeyError):
        return None
    with contextlib.suppress(OSError):
        os.utime(path)
    return out if at == len(text) else None


#: how many layer listings are kept (the assets and code layers of a few projects, and
#: their members by directory)
KEEP_LISTINGS = 12


def listings_dir() -> Path:
    return cache_dir().parent / "layer-listings"


def load_listing(key: str) -> bytes | None:
    """The listing of the layer whose key is ``key`` (layers.listing), as kept by
    :func:`store_listing`; None when it is not kept, or the file is not what its name
    says (a listing's key is the sha256 of its bytes: a damaged one cannot pass)."""
    path = listings_dir() / f"{key}.lst"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != key:
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # just used: the newest, for the pruning
    return data


def store_listing(key: str, data: bytes) -> None:
    """Keep a layer's listing under its key (best effort), and only the newest
    :data:`KEEP_LISTINGS`."""
    directory = listings_dir()
    path = directory / f"{key}.lst"
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        tmp.replace(path)
        kept = sorted(directory.glob("*.lst"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in kept[KEEP_LISTINGS:]:
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        tmp.unlink(missing_ok=True)
