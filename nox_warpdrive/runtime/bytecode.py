"""Runs INSIDE the builder container (stdlib only): the builder's own modules imported
from bytecode kept in the volume, not compiled from source at every start (0.1 s of each
builder run: 0.155-0.167 s from source, 0.044-0.079 s from bytecode, measured in the
builder image).

The modules arrive with fixed mtimes, so timestamp bytecode would be run stale: only
hash-checked bytecode is kept (Python compares it with the source's hash before it runs
it), and the host starts the builder with ``-B`` so that Python writes none itself. A
file a full disk cut short would still carry a right header: every file's own sha256 is
in ``index.json``, written last, and the kept bytecode is used only when all of it
matches. Anything unreadable or unwritable only costs the compile again.

This module imports no sibling (common's JSON helpers included): it runs before they are
imported, so that they come from the kept bytecode.

    <volume>/<platform-key>/helpers-pyc/<module>.<tag>.pyc, index.json
"""

import hashlib
import json
import os

INDEX = "index.json"


def kept_dir(root):
    return os.path.join(root, "helpers-pyc")


def _index(into):
    try:
        with open(os.path.join(into, INDEX)) as fh:
            found = json.load(fh)
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _digest(data):
    return None if data is None else hashlib.sha256(data).hexdigest()


def use_kept(here):
    """Make the volume's kept bytecode the __pycache__ of the modules in ``here`` (the
    run's plan names the volume and key), when every file of it is whole. Only when
    Python writes no bytecode itself: True when it did."""
    import sys

    if not sys.dont_write_bytecode:
        return False
    try:
        with open(os.path.join(here, "plan.json")) as fh:
            plan = json.load(fh)
        into = kept_dir(os.path.join(plan["volume_dir"], plan["key"]))
        index = _index(into)
        if not index or any(_digest(_read(os.path.join(into, n))) != d for n, d in index.items()):
            return False
        os.symlink(into, os.path.join(here, "__pycache__"))
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _write(path, data):
    tmp = "%s.tmp%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


#: room the kept bytecode needs under the volume's bound (it is about 300 KB)
ROOM = 1 << 20


def _over_bound(root):
    """Whether the volume, as the run's manifest last measured it, leaves no ROOM under
    its bound: the bound (wheel_cache.py) empties the kept bytecode as one of the
    caches, and it is not written back past it."""
    try:
        with open(os.path.join(root, "manifest.json")) as fh:
            measured = json.load(fh).get("volume") or {}
        return int(measured["bytes"]) + ROOM > int(measured["limit"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def keep(root, here):
    """Write the hash-checked bytecode of the modules in ``here`` that ``root``'s kept
    bytecode lacks (or holds for another source, or damaged), then the index; nothing
    when the volume is near its bound."""
    import importlib.util
    import marshal

    into = kept_dir(root)
    if _over_bound(root):
        return
    try:
        os.makedirs(into, exist_ok=True)
        before = _index(into)
        index = {}
        for name in sorted(os.listdir(here)):
            if not name.endswith(".py"):
                continue
            source_path = os.path.join(here, name)
            pyc = os.path.basename(importlib.util.cache_from_source(source_path))
            with open(source_path, "rb") as fh:
                source = fh.read()
            # checked hash: flags 0b11 (hash-based, check the source)
            header = importlib.util.MAGIC_NUMBER + b"\x03\x00\x00\x00"
            header += importlib.util.source_hash(source)
            path = os.path.join(into, pyc)
            kept = _read(path) if before.get(pyc) else None
            if kept is not None and kept[:16] == header and _digest(kept) == before[pyc]:
                index[pyc] = before[pyc]
                continue
            data = header + marshal.dumps(compile(source, source_path, "exec", dont_inherit=True))
            _write(path, data)
            index[pyc] = _digest(data)
        if index != before:  # only this release's modules: a gone one is not waited for
            _write(os.path.join(into, INDEX), json.dumps(index, sort_keys=True).encode())
    except (OSError, ValueError, SyntaxError, AttributeError):
        return  # AttributeError: a Python before 3.7 has no hash-checked bytecode
