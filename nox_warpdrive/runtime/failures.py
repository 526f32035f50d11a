"""Runs INSIDE the builder container (stdlib only), shipped with build_wheels.py: what
went wrong, said once in one machine-read line (protocol.FAILURE_PREFIX) the host
turns into the error and its fix."""

import re
import sys

if __package__:
    from . import disk, protocol
else:  # run as a script in the builder container: its modules are shipped beside it
    import disk
    import protocol


_NETWORK = re.compile(
    r"Max retries exceeded|Temporary failure in name resolution|Name or service not known"
    r"|Connection (?:refused|reset|timed out)|Read timed out|CERTIFICATE_VERIFY_FAILED"
    r"|SSLError|ProxyError|Failed to fetch|error sending request|dns error",
    re.I,
)


def classify(code, lines, package=None, compiling=False):
    """(stage, package) of a failed pip or uv run, from its exit code and last lines:
    killed, disk, resolve, download, compile (``compiling``: the run built one sdist)."""
    text = "\n".join(lines)
    if code < 0 or code in (137, 143):
        return "killed", package
    if "No space left on device" in text or "Disk quota exceeded" in text:
        return "disk", package
    for pattern in (
        r"No matching distribution found for (\S+)",
        r"Could not find a version that satisfies the requirement (\S+)",
        r"Because (\S+) was not found in the package registry",
        r"(\S+) was not found in the package registry",
    ):
        m = re.search(pattern, text)
        if m:
            return "resolve", m.group(1)
    if "ResolutionImpossible" in text or "No solution found" in text:
        return "resolve", package
    m = re.search(r"Failed building wheel for (\S+)|Failed to build (\S+)", text)
    if m:
        return "compile", m.group(1) or m.group(2)
    if _NETWORK.search(text):
        return "download", package
    if compiling or "subprocess-exited-with-error" in text:
        m = re.search(r"Building wheel for (\S+)", text)
        return "compile", m.group(1) if m else package
    return "unknown", package


#: pip: the releases a Requires-Python excluded, said before "Could not find a version"
_PIP_IGNORED = re.compile(
    r"Ignored the following versions that require a different python version: (.*)$"
)
_PIP_NONE_LEFT = re.compile(r"Could not find a version that satisfies .*\(from versions: none\)")
#: uv: "Because the current Python version (3.11.2) does not satisfy Python>=3.12 and
#: all versions of django>=6 depend on Python>=3.12, ..." (or "pkg==1.0 depends on")
_UV_PYTHON = re.compile(
    r"current Python version \(([\d.]+)\) does not satisfy Python([^\s,]+) and "
    r"(all versions of )?(\S+?) depends? on Python"
)


def python_mismatch(lines):
    """What a resolution failure says of Requires-Python: {"python": this Python,
    "needs": the specifiers, "versions": the releases left out for it, "all": whether
    no other release was there}; {} when it says nothing of it (pip and uv)."""
    text = "\n".join(lines)
    m = _UV_PYTHON.search(text)
    if m:
        return {"python": m.group(1), "needs": [m.group(2)], "versions": [], "all": True}
    for line in lines:
        m = _PIP_IGNORED.search(line)
        if not m:
            continue
        versions, needs = [], []
        for item in m.group(1).split("; "):
            version, _, spec = item.partition(" Requires-Python ")
            if spec and needs_newer(spec):
                versions.append(version.strip())
                if spec.strip() not in needs:
                    needs.append(spec.strip())
        if not needs:
            return {}  # only releases for an older Python were left out: not the cause
        python = "%d.%d.%d" % sys.version_info[:3]
        every = bool(_PIP_NONE_LEFT.search(text))
        return {"python": python, "needs": needs, "versions": versions, "all": every}
    return {}


def needs_newer(spec, python=None):
    """Whether a Requires-Python asks for a newer Python than this one (its lower bound:
    >=3.12, >3.11, ~=3.12), not an older one (<3, ==2.7)."""
    here = tuple(python or sys.version_info[:2])
    for op, major, minor in re.findall(r"(>=|>|~=)\s*(\d+)\.(\d+)", spec):
        bound = (int(major), int(minor))
        if bound > here or (op == ">" and bound == here):
            return True
    return False


def report_failure(stage, code, lines=(), package=None, **more):
    """One machine-read line for the host, which turns it into the error and its fix."""
    # a build whose output went to a log: all the user will see of it, so more
    detail = [line for line in lines if line.strip()][-60 if more.get("log") else -15 :]
    data = {"stage": stage, "code": code, "package": package, "detail": detail}
    if stage == "disk":
        data.update(disk.full_filesystem(lines))
    if stage == "resolve":
        data.update(python_mismatch(list(lines)))
    data.update(more)
    protocol.emit(protocol.FAILURE_PREFIX, data)
    return code if code > 0 else 1
