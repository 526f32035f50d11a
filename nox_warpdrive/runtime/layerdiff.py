"""Runs INSIDE the deps and app steps (stdlib only), shipped beside assemble.py: what an
install changed in a tree, as the list of paths of the layer it makes (a grow's
``export @LIST``)."""

import os
import stat


def snapshot(top):
    """Every path below ``top`` (and ``top``): what its lstat says of its content."""
    try:
        st = os.lstat(top)
    except OSError:  # as os.walk: nothing
        return {}
    found = {top: (st.st_mode, st.st_size, st.st_mtime_ns, st.st_uid, st.st_gid)}
    below = [top] if stat.S_ISDIR(st.st_mode) else []
    while below:  # os.scandir, not os.walk + lstat: a third of the time on a virtualenv
        try:
            entries = list(os.scandir(below.pop()))
        except OSError:  # as os.walk: a directory that cannot be listed is left out
            continue
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            found[entry.path] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_uid, st.st_gid)
            if stat.S_ISDIR(st.st_mode):
                below.append(entry.path)
    return found


def changed(top, before):
    """The paths below ``top`` that are new or whose lstat changed since ``before``, and
    the directories holding them, relative to / and sorted (a directory before what it
    holds). A directory's own size and mtime are not compared: they differ between
    filesystems (tmpfs, overlay) for the same entries, and the layer must not."""
    return [p.lstrip("/") for p in changed_paths(top, before)]


def changed_paths(top, before):
    """``changed``, as absolute paths."""
    after = snapshot(top)
    found = set()
    for path, st in after.items():
        old = before.get(path)
        if stat.S_ISDIR(st[0]) and old is not None:
            old, st = _owner_mode(old), _owner_mode(st)
        if old != st:
            found.add(path)
    for path in list(found):
        parent = os.path.dirname(path)
        while len(parent) >= len(top) and parent not in found:
            found.add(parent)
            parent = os.path.dirname(parent)
    return sorted(found)


def _owner_mode(st):
    return st[0], st[3], st[4]


def write_list(path, paths):
    """A NUL-separated list of paths, for `export @LIST` (GNU tar's --null -T)."""
    with open(path, "wb") as fh:
        fh.write(b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths))
