"""The lines the host reads from the containers' output, defined once for both sides.

Runs INSIDE containers (stdlib only: shipped beside build_wheels.py into the builder and
beside assemble.py into the deps and app steps) and is imported by the host, which reads
every such line with :func:`parse` and nothing else. A machine-read line is a prefix and
one line of JSON; the host hides it from the user and acts on it.
"""

import json
from typing import Any, Dict, Iterable, Optional, Tuple

# -- the builder (build_wheels.py and its modules) ------------------------------------
#: the run's result (new wheels, counts, the manifest just written)
SUMMARY_PREFIX = "warpdrive: SUMMARY "
#: resolved wheels already published while sdists still build (the early deps layer)
READY_PREFIX = "warpdrive: WHEELS-READY "
#: why the run failed (stage, package, last lines)
FAILURE_PREFIX = "warpdrive: FAILURE "
#: what an import published and refused
IMPORTED_PREFIX = "warpdrive: IMPORTED "
#: what the upkeep freed in the volume (wheel_cache.py)
PRUNED_PREFIX = "warpdrive: PRUNED "

# -- the deps and app steps (assemble.py) ---------------------------------------------
#: the wheels whose sha256 is not the one the wheelhouse recorded
DAMAGED_LINE = "warpdrive: DAMAGED-WHEELS "
#: the wheels that are not in the volume at all (the host tells a volume that did not
#: keep its files from one that lost a wheel)
MISSING_LINE = "warpdrive: MISSING-WHEELS "
#: the libraries files of the virtualenv need and the base image lacks
LIBRARIES_LINE = "warpdrive: MISSING-LIBRARIES "
#: what the check of a layer made for another CPU found from data (assemble.native_check)
CHECKED_LINE = "warpdrive: NATIVE-CHECK "
#: a bare marker, no JSON: the export step's layer is ready to be read out of its
#: container (the engine stops following the output there: plan.EXPORT_READY)
EXPORT_READY = "warpdrive: EXPORT-READY"

#: kind -> the prefix of its lines (the kinds :func:`parse` gives)
KINDS = {
    "summary": SUMMARY_PREFIX,
    "ready": READY_PREFIX,
    "failure": FAILURE_PREFIX,
    "imported": IMPORTED_PREFIX,
    "pruned": PRUNED_PREFIX,
    "damaged": DAMAGED_LINE,
    "missing": MISSING_LINE,
    "libraries": LIBRARIES_LINE,
    "checked": CHECKED_LINE,
}


def line(prefix: str, data: Any, compact: bool = True, sort_keys: bool = False) -> str:
    """One machine-read line: ``prefix`` and ``data`` as one line of JSON."""
    separators = (",", ":") if compact else None
    return prefix + json.dumps(data, separators=separators, sort_keys=sort_keys)


def emit(prefix: str, data: Any, compact: bool = True, sort_keys: bool = False) -> None:
    """Print one machine-read line at once (the host may act on it while this runs)."""
    print(line(prefix, data, compact, sort_keys), flush=True)


def parse(text: str) -> Optional[Tuple[str, Any]]:
    """(kind, its data) of a machine-read line, None for any other line. The data is
    None when the JSON cannot be read: the line is still not for the user."""
    for kind, prefix in KINDS.items():
        if text.startswith(prefix):
            try:
                return kind, json.loads(text[len(prefix) :])
            except ValueError:
                return kind, None
    return None


def last(lines: Iterable[str], kind: str) -> Optional[Any]:
    """The data of the last line of ``kind`` among ``lines`` (None when there is none,
    or its JSON cannot be read)."""
    found: Dict[str, Any] = {}
    for text in lines:
        parsed = parse(text)
        if parsed is not None and parsed[0] == kind:
            found["data"] = parsed[1]
    return found.get("data")
