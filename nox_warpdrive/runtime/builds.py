"""Runs INSIDE the builder container (stdlib only), shipped with build_wheels.py: the
processes that compile (pip wheel, uv build), their output shown live or kept in a log
per sdist in the volume (credentials redacted), and the environment they run in."""

import collections
import os
import re
import shutil
import subprocess
import sys
import threading
import time

if __package__:
    from . import common, failures, fetch, uv_bootstrap
else:  # run as a script in the builder container: its modules are shipped beside it
    import common
    import failures
    import fetch
    import uv_bootstrap


def start_uv_builds(ctx, uv, pins, env, early=None):
    """Download sdists and start `uv build --wheel` for each (uv's build isolation is much
    faster than pip's). Returns [(spec, Tee or None)]; a spec whose download failed gets
    None (pip builds it). A failed uv build is reported as it is: each sdist is compiled
    once. Their output goes to a log each (build_log). ``early``: the builds started
    before the resolve (early_builds.py); a pin's own is taken, not started again."""
    sdists = os.path.join(ctx.staging, "sdists")
    os.makedirs(sdists, exist_ok=True)
    opener = fetch._opener(env)
    out = []
    for pin in pins:
        started = early.take(pin) if early is not None else None
        if started is not None:
            out.append((common.spec_of(pin), started))
            continue
        path = fetch.fetch(opener, pin.sdist_url, pin.sdist_sha, sdists)
        if path is None:
            out.append((common.spec_of(pin), None))
            continue
        spec = common.spec_of(pin)
        common.log("building " + spec)
        out.append((spec, uv_build(ctx, uv, env, path, ctx.staging, spec)))
    return out


def uv_build(ctx, uv, env, source, out_dir, spec, group=False):
    """A running `uv build --wheel` of ``source`` into ``out_dir`` (an sdist is unpacked at
    its fixed path first: fixed_source_dir), its output in ``spec``'s log (build_log);
    ``group``: in a process group of its own (the compilers it starts can be stopped)."""
    cmd = [
        uv,
        "build",
        "--wheel",
        "--out-dir",
        out_dir,
        "--python",
        ctx.plan["python"],
        "--cache-dir",
        os.path.join(ctx.root, "uv-cache"),
        "--no-config",
        fixed_source_dir(source) if os.path.isfile(source) else source,
    ]
    log_path, echo = build_log(ctx, spec)
    env = dict(env, **uv_bootstrap.uv_env(env))
    return Tee(cmd, env=env, log=log_path, echo=echo, group=group)


def pip_wheel_groups(pip, base_args, specs, env, cwd, groups):
    """`pip wheel --no-deps` for the given specs, in parallel groups (downloads and
    builds are mostly waiting; two or more processes keep both network and CPU busy).
    ``pip`` finds pip: called only when there is something to do (finding it runs a
    ``pip --version``, a second on a small machine). (exit code, the failed group's
    last lines)."""
    if not specs:
        return 0, []
    groups = max(1, min(groups, len(specs)))
    buckets = [specs[i::groups] for i in range(groups)]
    command = pip()
    tees = [
        Tee(command + ["wheel"] + base_args + ["--no-deps"] + b, env=env, cwd=cwd) for b in buckets
    ]
    return worst(tees)


def worst(tees):
    """(the worst exit code, that process's last lines); a signal's death counts as
    its 128 + N, as a shell reports it."""
    results = [(t.wait(), t.tail) for t in tees]
    results.sort(key=lambda r: r[0] if r[0] >= 0 else 128 - r[0])
    return results[-1] if results else (0, [])


class Tee:
    """A child process whose output is shown live and whose last lines are kept, to
    say why it failed. ``log``: a file its output goes to instead, shown only when
    ``echo`` (an sdist's compiler output: hundreds of lines nobody reads unless it
    fails)."""

    _print_lock = threading.Lock()

    def __init__(self, cmd, env=None, cwd=None, keep=60, log=None, echo=True, group=False):
        self.tail = collections.deque(maxlen=keep)
        self.log, self.echo, self.lines = log, echo or not log, 0
        self.started = time.time()
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=group,  # ``group``: a process group of its own, to kill
        )
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        sink = LogSink(self.log) if self.log else None
        try:
            for raw in iter(self.proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.tail.append(line)
                self.lines += 1
                if sink is not None:
                    sink.write(line)
                if self.echo:
                    with Tee._print_lock:
                        sys.stdout.write(line + "\n")
                        sys.stdout.flush()
        finally:
            if sink is not None:
                sink.close()

    def wait(self):
        code = self.proc.wait()
        self.thread.join()
        return code


class LogSink:
    """A build's log in the volume, credentials redacted as the host redacts what it
    shows. A log that cannot be written (a full disk) is given up, never the build: the
    child's output is still read, so it cannot block on a full pipe."""

    def __init__(self, path):
        self.secrets = secret_parts()
        try:
            self.fh = open(path, "w", encoding="utf-8")
        except OSError:
            self.fh = None

    def write(self, line):
        if self.fh is None:
            return
        try:
            self.fh.write(redact_line(line, self.secrets) + "\n")
        except OSError:
            self.close()

    def close(self):
        if self.fh is not None:
            try:
                self.fh.close()
            except OSError:
                pass
            self.fh = None


def secret_parts():
    """The index settings' words that carry credentials (user:token@host URLs)."""
    parts = []
    for value in common.secret_env().values():
        for part in str(value).split():
            if "@" in part and len(part) > 8:
                parts.append(part)
    return parts


_URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@")


def redact_line(line, secrets):
    """``line`` without the index settings' credentials, nor any user:password@ in a URL."""
    for part in secrets:
        line = line.replace(part, "<redacted>")
    return _URL_CREDENTIALS.sub("<redacted>@", line)


def build_log(ctx, spec):
    """(the log the output of building ``spec`` goes to: ``logs/<spec>.log`` in this
    platform's part of the volume, the last build of each kept; whether it is also shown
    as it comes: `--verbose`)."""
    logs = os.path.join(ctx.root, "logs")
    os.makedirs(logs, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9._=-]+", "_", spec)[:100] or "build"
    return os.path.join(logs, name + ".log"), bool(ctx.plan.get("verbose"))


def built_line(spec, tee):
    """The one line a successful sdist build leaves (its output is in the log)."""
    where = " (its output: %s)" % log_name(tee.log) if tee.log and not tee.echo else ""
    common.log("built %s in %.1f s%s" % (spec, time.time() - tee.started, where))


def log_name(path):
    """A log's path as the host names it: relative to the volume's root."""
    return os.path.relpath(path, os.path.dirname(os.path.dirname(os.path.dirname(path))))


def build_failed(tee, spec, code):
    """Report a failed sdist build: its last lines (all the user sees when its output
    went to the log) and the log's place."""
    stage, package = failures.classify(code, tee.tail, spec, compiling=True)
    if stage == "compile":
        package = spec  # uv names the sdist's path in the staging directory
    more = {"log": log_name(tee.log)} if tee.log else {}
    return failures.report_failure(stage, code, tee.tail, package, **more)


def wheel_builder(ctx, uv, pip, env, path, out):
    """A running build of one wheel from an sdist or a source tree into ``out``: `uv
    build` (its build isolation is much faster than pip's), else `pip wheel`. An sdist
    is built unpacked at its fixed path (fixed_source_dir)."""
    if uv:
        return uv_build(ctx, uv, env, path, out, os.path.basename(path))
    source = fixed_source_dir(path) if os.path.isfile(path) else path
    return Tee(pip() + ["wheel", "--no-deps", "--wheel-dir", out, source], env=env)


#: where an sdist is unpacked to be built: a path of its name only, the same in every
#: build, so that compiled objects (debug info holds the build directory) and so the
#: wheel do not depend on where or when it was built
SOURCE_ROOT = "/tmp/warpdrive-src"

#: the wheels' zip times (setuptools and most backends read it; 1980 is zip's first)
WHEEL_EPOCH = "315532800"


def fixed_source_dir(sdist):
    """The sdist unpacked at SOURCE_ROOT/<its file name>: its source directory there
    (the one top directory an sdist has). Building it runs its code anyway, so it is
    unpacked as it comes; an archive it cannot unpack is built as it is."""
    name = os.path.basename(sdist)
    for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip", ".tar"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    dest = os.path.join(SOURCE_ROOT, name)
    shutil.rmtree(dest, ignore_errors=True)
    try:
        shutil.unpack_archive(sdist, dest)
    except (OSError, ValueError, shutil.ReadError):
        return sdist
    entries = os.listdir(dest)
    if len(entries) == 1 and os.path.isdir(os.path.join(dest, entries[0])):
        return os.path.join(dest, entries[0])
    return dest


def build_env(plan, staging):
    env = dict(os.environ)
    env.update(common.secret_env())
    env["PIP_NO_INPUT"] = "1"
    # reproducible wheels: fixed zip times, and the fixed build path (fixed_source_dir)
    # written as /build into compiled objects
    env["SOURCE_DATE_EPOCH"] = WHEEL_EPOCH
    flags = "-ffile-prefix-map=%s=/build" % SOURCE_ROOT
    for var in ("CFLAGS", "CXXFLAGS"):
        env[var] = (env.get(var, "") + " " + flags).strip()
    base_args = [
        "--wheel-dir",
        staging,
        "--find-links",
        os.path.join(plan["volume_dir"], plan["key"], "wheels"),
        "--cache-dir",
        os.path.join(plan["volume_dir"], plan["key"], "cache"),
        "--progress-bar",
        "off",
        "--disable-pip-version-check",
    ]
    if plan.get("no_index"):
        base_args.append("--no-index")
    return env, base_args
