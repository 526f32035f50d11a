"""Runs INSIDE image build containers as root (stdlib only).

    assemble.py deps   in the base image: app user, app root, virtualenv, packages from
                       the wheelhouse volume (mounted read-only). Becomes the deps layer.
    assemble.py app    in the deps image, after the source was put at APP_ROOT/src:
                       Django collectstatic as the app user. Becomes the app layer.
    assemble.py install  the plan's wheels into its virtualenv, nothing else (the deps
                       step's container made ready for collectstatic).
    assemble.py check  in an image with a deps layer made in another CPU's container:
                       the shared-library and server check of its virtualenv, when the
                       check run there from data (native_check) could not tell.

The plan comes from /tmp/warpdrive-build/plan.json; this directory is removed before the
container is committed, so nothing of the build machinery stays in the image.
"""

import base64
import csv
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

if __package__:
    from . import elfcheck, layerdiff, protocol
else:  # run as a script in the container: its modules are shipped beside it
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import elfcheck
    import layerdiff
    import protocol

HELPERS = "/tmp/warpdrive-build"
#: a deps step started before its wheels were known (build/prestart.py) waits for
#: this file; the host puts the step's real plan.json before it
GO = HELPERS + "/go"


def log(msg):
    print("warpdrive: " + msg, flush=True)


def run(cmd, **kw):
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, **kw)
    if proc.returncode != 0:
        log("command failed with exit code %d" % proc.returncode)
        raise SystemExit(proc.returncode)


def ensure_user(uid, home):
    """S2I's convention: uid 1001 in group 0, so an arbitrary uid in group 0 (OpenShift)
    can write wherever the app user can."""
    with open("/etc/passwd") as fh:
        lines = fh.read().splitlines()
    if any(line.split(":")[2:3] == [str(uid)] for line in lines if line.count(":") >= 6):
        return
    shell = "/usr/sbin/nologin" if os.path.exists("/usr/sbin/nologin") else "/bin/false"
    with open("/etc/passwd", "a") as fh:
        fh.write("default:x:%d:0:Default Application User:%s:%s\n" % (uid, home, shell))


def passwd_group_writable():
    """As S2I images do: the start launcher, run under an arbitrary uid in group 0, adds
    that uid to /etc/passwd so getpwuid() works."""
    mode = os.stat("/etc/passwd").st_mode & 0o7777
    os.chmod("/etc/passwd", mode | 0o020)


def install_wheels(plan, files, env):
    if not files:
        return log("no packages to install")
    venv_python = os.path.join(plan["venv"], "bin", "python")
    if plan.get("installer") == "uv":
        run(
            [
                plan["uv"],
                "pip",
                "install",
                "--python",
                venv_python,
                "--no-index",
                "--no-deps",
                "--offline",
                "--no-cache",
                "--link-mode",
                "copy",
            ]
            + (
                ["--python-platform", plan["python_platform"]]
                if plan.get("python_platform")
                else []
            )
            + files,
            env=dict(env, UV_NO_PROGRESS="1"),
        )
    else:
        run(
            [venv_python]
            + pip_for(plan.get("platforms"))
            + [
                "install",
                "--no-cache-dir",
                "--progress-bar",
                "off",
                "--no-index",
                "--no-deps",
                "--no-compile",
            ]
            + ["--platform=" + p for p in plan.get("platforms") or []]
            + files,
            env=env,
        )


#: pip run for another CPU's wheels (the deps layer of a foreign platform made natively):
#: ``--platform`` alone chooses which wheel tags are taken (the target's); pip asks for
#: ``--target`` with it only because the environment it installs into is usually its
#: own, and here it is a virtualenv of the target's interpreter, path and version
PIP_FOR_PLATFORMS = (
    "import sys; from pip._internal.cli import cmdoptions as c; f = c.check_dist_restriction; "
    "c.check_dist_restriction = lambda o, check_target=False: f(o, False); "
    "from pip._internal.cli.main import main; sys.exit(main())"
)


def pip_for(platforms):
    """How pip is started: as a module, or (for ``platforms``) as PIP_FOR_PLATFORMS."""
    return ["-c", PIP_FOR_PLATFORMS] if platforms else ["-m", "pip"]


#: the deps step's exit code when a wheel does not match the manifest's sha256
DAMAGED_EXIT = 65


#: the file uv writes into each distribution it installs: its cache info, with the time
#: of the install (rewritten by stable_cache_info)
UV_CACHE_INFO = "uv_cache.json"


def stable_cache_info(site, epoch, only=None):
    """uv's cache info holds the install's time, and the RECORD its hash: both rewritten
    with ``epoch``, so that two installs of one wheel write the same bytes. ``only``:
    the paths an install on an earlier layer added (the others are that layer's)."""
    for path in sorted(glob.glob(os.path.join(site, "*.dist-info", UV_CACHE_INFO))):
        if only is not None and path not in only:
            continue
        with open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("timestamp"), dict):
            continue
        data["timestamp"] = {"secs_since_epoch": epoch, "nanos_since_epoch": 0}
        body = json.dumps(data, separators=(",", ":")).encode("utf-8")
        with open(path, "wb") as fh:
            fh.write(body)
        fix_record(os.path.dirname(path), UV_CACHE_INFO, body)


def fix_record(dist_info, name, body):
    """The RECORD line of ``dist_info/name`` (its sha256 and size) for new bytes ``body``."""
    record = os.path.join(dist_info, "RECORD")
    if not os.path.exists(record):
        return
    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
    entry = os.path.basename(dist_info) + "/" + name + ","
    with open(record, encoding="utf-8", newline="") as fh:
        lines = fh.read().split("\n")
    lines = [
        "%ssha256=%s,%d" % (entry, digest, len(body)) if line.startswith(entry) else line
        for line in lines
    ]
    with open(record, "w", encoding="utf-8", newline="") as fh:
        fh.write("\n".join(lines))


def set_mtimes(top, epoch):
    """Every path below ``top`` (and ``top``) gets the mtime ``epoch``, links themselves."""
    for root, dirs, names in os.walk(top):
        for name in [""] + dirs + names:
            path = os.path.join(root, name) if name else root
            os.utime(path, (epoch, epoch), follow_symlinks=False)


def compile_bytecode(plan, only=None):
    """Bytecode for the virtualenv's packages, written after every source got the fixed
    mtime the layer gives it: a timestamp .pyc then holds exactly what the image's file
    says, so it stays valid there (no hashing at import, unlike hash-based .pyc files; an
    edited file is still recompiled, unlike unchecked ones) and its bytes do not depend
    on when the install ran. A file that does not compile (Python 2 test data in some
    sdists) is left without, as installers do. ``only``: just these paths' sources."""
    venv_python = os.path.join(plan["venv"], "bin", "python")
    if only is None:
        sites = glob.glob(os.path.join(plan["venv"], "lib", "python*", "site-packages"))
        found = (os.path.join(r, n) for s in sites for r, _, ns in os.walk(s) for n in ns)
        files = sorted(p for p in found if p.endswith(".py"))
    else:
        files = [p for p in sorted(only) if p.endswith(".py") and os.path.isfile(p)]
    if not files:
        return
    started = time.time()
    cmd = [venv_python, "-m", "compileall", "-q", "--invalidation-mode", "timestamp", "-i", "-"]
    # one compileall per CPU, each given its share of the list: its own -j leaves a list
    # (-i) to one process, and on a directory gains little (Wagtail's 3,320 files: 2.9 s
    # in one process or with -j 0, 1.5 s in two)
    count = max(1, min(os.cpu_count() or 1, len(files) // 100))
    procs = []
    for part in range(count):
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        proc.stdin.write("\n".join(files[part::count]).encode("utf-8", "surrogateescape"))
        proc.stdin.close()  # it reads the whole list before it compiles
        procs.append(proc)
    if [proc.wait() for proc in procs] != [0] * count:
        log("some files did not compile to bytecode (installers skip those too)")
    log("bytecode compiled in %.1f s" % (time.time() - started))


def stamp(top, epoch, only=None):
    """Set the mtime ``epoch``: on everything below ``top``, or on the paths ``only``."""
    if only is None:
        set_mtimes(top, epoch)
        return
    for path in only:
        os.utime(path, (epoch, epoch), follow_symlinks=False)


def stabilize(plan, before=None):
    """What the install wrote made independent of when and where it ran: uv's cache
    info, every mtime (the layer's tar gives them ``epoch`` too), the bytecode.

    ``before``: a snapshot of the virtualenv the install went into (an earlier deps
    layer's, or the skeleton of a grown one): then only what the install added or
    changed is touched (a file of the layer below has the epoch already, and touching it
    would copy it up into this layer), and those paths are returned (relative to /),
    the layer's list."""
    epoch = int(plan.get("epoch", 1))
    app_root = plan["app_root"]
    touched = None if before is None else set(layerdiff.changed_by_install(app_root, before))
    for site in glob.glob(os.path.join(plan["venv"], "lib", "python*", "site-packages")):
        stable_cache_info(site, epoch, touched)
    stamp(app_root, epoch, touched)
    compile_bytecode(plan, touched)
    if touched is not None:
        touched = layerdiff.with_bytecode(app_root, before, sorted(touched))
    stamp(app_root, epoch, touched)
    return None if touched is None else [p.lstrip("/") for p in touched]


def check_wheels(plan, files):
    """Every wheel is hashed against the sha256 the wheelhouse recorded before it goes
    into a layer: a damaged or replaced file in the volume must never be installed. The
    host hears which (one machine-read line) and fetches or builds them again."""
    import hashlib

    expected = plan.get("sha256") or {}
    bad, missing = [], []
    for path in files:
        want = expected.get(os.path.basename(path))
        if not want:
            continue
        h = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except FileNotFoundError:
            missing.append(os.path.basename(path))
            continue
        except OSError:
            bad.append(os.path.basename(path))
            continue
        if h.hexdigest() != want:
            bad.append(os.path.basename(path))
    if bad or missing:
        protocol.emit(protocol.DAMAGED_LINE, bad, compact=False)
        protocol.emit(protocol.MISSING_LINE, missing, compact=False)
        raise SystemExit(DAMAGED_EXIT)


#: the deps step's exit code when a file in the virtualenv needs a library the image lacks
LIBRARIES_EXIT = 66
#: libraries a container gets from its host at run time (the GPU driver's, injected by
#: the NVIDIA container runtime): never in an image, so never missing from one
PROVIDED_AT_RUN = re.compile(r"lib(?:cuda|nvidia-[\w-]+|nvcuvid|nvidia-ml)\.so(\.\d+)*$")
#: what `ldd` says of one needed library it cannot find (glibc, then musl)
_NOT_FOUND = re.compile(r"^\s+(\S+) => not found\s*$")
_MUSL_NOT_FOUND = re.compile(r"Error loading shared library (\S+?):.*\(needed by (\S+)\)")


#: the ELF files below a directory that the loader opens (elfcheck: it reads them too)
elf_files = elfcheck.elf_files


def parse_ldd(output, files):
    """{library: [files that need it]} of what ``ldd files...`` reported "not found"
    (glibc prints each file's name as a header when given several; musl says
    "Error loading shared library")."""
    missing = {}
    current = files[0] if len(files) == 1 else None
    headers = set(files)
    for line in output.splitlines():
        if not line.startswith(("\t", " ")) and line.endswith(":") and line[:-1] in headers:
            current = line[:-1]
            continue
        m = _NOT_FOUND.match(line)
        if m and current is not None:
            needed = missing.setdefault(m.group(1), [])
            if current not in needed:
                needed.append(current)
            continue
        m = _MUSL_NOT_FOUND.search(line)
        if m:
            needed = missing.setdefault(m.group(1), [])
            if m.group(2) not in needed:
                needed.append(m.group(2))
    return {lib: paths for lib, paths in missing.items() if not PROVIDED_AT_RUN.match(lib)}


def missing_libraries(files, batch=64):
    """What `ldd` of this image says is missing, for ``files`` (a few dozen per `ldd`);
    None when the image has no `ldd` (nothing can be told)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    missing = {}
    for i in range(0, len(files), batch):
        part = files[i : i + batch]
        proc = subprocess.run([ldd] + part, capture_output=True, text=True, errors="replace")
        for lib, paths in parse_ldd(proc.stdout + proc.stderr, part).items():
            paths = [p for p in paths if not bundled(lib, p)]
            if paths:
                missing.setdefault(lib, []).extend(p for p in paths if p not in missing[lib])
    return missing


def bundled(lib, path):
    """Whether ``lib``, which ``ldd path`` alone could not find, is one of the libraries
    a repaired wheel bundles beside ``path`` (auditwheel's ``<package>.libs/``, names
    with a hash: psycopg-binary's libsasl2 needs its sibling libcrypt-13f4f5d0.so.1).
    The loader finds those through the extension module that loads the bundle (its
    RPATH), and `ldd` of that module, which is checked too, would say so if not."""
    here = os.path.dirname(path)
    return here.endswith(".libs") and os.path.isfile(os.path.join(here, lib))


def dist_name(info):
    """A .dist-info directory's project name as its METADATA spells it."""
    try:
        with open(os.path.join(info, "METADATA"), encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("name:"):
                    return line.split(":", 1)[1].strip()
                if not line.strip():
                    break
    except OSError:
        pass
    return os.path.basename(info)[: -len(".dist-info")].rsplit("-", 1)[0]


def owners(venv):
    """{absolute path: distribution name} of every file an installed distribution's
    RECORD lists (scripts in bin/ included)."""
    found = {}
    for record in glob.glob(os.path.join(venv, "lib", "python*", "site-packages", "*", "RECORD")):
        info = os.path.dirname(record)
        if not info.endswith(".dist-info"):
            continue
        name = dist_name(info)
        site = os.path.dirname(info)
        with open(record, newline="", encoding="utf-8", errors="replace") as fh:
            for row in csv.reader(fh):
                if row:
                    found[os.path.normpath(os.path.join(site, row[0]))] = name
    return found


def check_libraries(plan, added=None):
    """Every extension module and executable of the virtualenv, checked against this
    image's shared libraries (the base image's: the one the app runs on): a file
    compiled in the builder may link a library only the builder has (uwsgi links
    libpython3.X.so, which Debian's runtime python3 lacks), and would fail only when the
    container starts. The host hears what is missing, and by which packages' files.
    ``added``: the paths (relative to /) an install on top of a deps layer added; only
    those are checked (the layer below was checked on this same base when it was made,
    and an install that only adds takes no library away from it)."""
    venv = plan["venv"]
    started = time.time()
    only = None if added is None else ["/" + p for p in added]
    files = elf_files(venv, only)
    missing = missing_libraries(files) if files else {}
    if missing is None:
        log("this image has no ldd: the compiled files were not checked")
        return
    if not missing:
        log("%d compiled files checked in %.1f s" % (len(files), time.time() - started))
        return
    protocol.emit(
        protocol.LIBRARIES_LINE, library_report(venv, missing), compact=False, sort_keys=True
    )
    raise SystemExit(LIBRARIES_EXIT)


def library_report(venv, missing):
    """{library: [{file, package}]} of what is missing, as the host reads it."""
    by_file = owners(venv)
    return {
        lib: [{"file": path, "package": by_file.get(path, "")} for path in sorted(paths)]
        for lib, paths in sorted(missing.items())
    }


#: each web server's shortest command that loads all of it (the binary, its libraries,
#: its Python package): run at build time, so one that cannot start fails the build
SERVER_LOADS = {
    "uwsgi": ["uwsgi", "--version"],
    "gunicorn": ["gunicorn", "--version"],
    "uvicorn": ["uvicorn", "--version"],
    "waitress-serve": ["python", "-c", "import waitress.runner"],
    "mod_wsgi-express": ["python", "-c", "import mod_wsgi.server"],
}
#: servers that are compiled programs (not Python run by the target's interpreter):
#: native_check cannot start them, only read their files' library needs
COMPILED_SERVERS = ("uwsgi",)


def load_server(bindir, cmd):
    """(exit code, output) of one server's load command, run from the virtualenv."""
    argv = [os.path.join(bindir, cmd[0])] + cmd[1:]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=60)
        return proc.returncode, proc.stdout + proc.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)


def native_check(plan):
    """The check of a layer made in the engine's own image for another CPU (the twin),
    from data instead of by loading the files: each ELF file's needed libraries against
    the target's loader cache (``loader_cache``, read out of the target image by the
    host; elfcheck.unresolved), and each pure-Python server's load command run here
    (its Python files are the target's; a compiled module it imports is not loadable
    here, and says so). Never fails the step: the host reads the CHECKED line and runs
    `check` in the target image (emulated) for what this could not tell."""
    venv, started = plan["venv"], time.time()
    sonames = set(plan["loader_cache"])
    missing, unread = {}, []
    files = elf_files(venv)
    for path in files:
        try:
            info = elfcheck.read_elf(path)
        except (OSError, elfcheck.ElfError) as exc:
            unread.append("%s (%s)" % (path, exc))
            continue
        for lib in elfcheck.unresolved(path, info, sonames):
            if not PROVIDED_AT_RUN.match(lib):
                missing.setdefault(lib, []).append(path)
    bindir = os.path.join(venv, "bin")
    servers, failed = [], ""
    for script, cmd in sorted(SERVER_LOADS.items()):
        if not os.path.exists(os.path.join(bindir, script)):
            continue
        if script in COMPILED_SERVERS:  # its libraries are checked above as its files'
            servers.append(script + " (libraries only)")
            continue
        code, output = load_server(bindir, cmd)
        if code != 0 and not failed:
            last = (output.strip().splitlines() or ["exit code %d" % code])[-1]
            failed = "`%s %s` failed here: %s" % (script, " ".join(cmd[1:]), last[-300:])
        servers.append(script)
    found = {
        "files": len(files),
        "unread": unread[:5],
        "libraries": library_report(venv, missing) if missing else {},
        "servers": servers,
        "failed": failed,
        "seconds": round(time.time() - started, 2),
    }
    protocol.emit(protocol.CHECKED_LINE, found, sort_keys=True)


def check_servers(plan, added=None):
    """Load every web server the virtualenv has, as the launcher would start it; of a
    grow's ``added`` paths, only the servers it added (the layer below loaded its own)."""
    bindir = os.path.join(plan["venv"], "bin")
    for script, cmd in sorted(SERVER_LOADS.items()):
        path = os.path.join(bindir, script)
        if not os.path.exists(path) or (added is not None and path.lstrip("/") not in added):
            continue
        code, output = load_server(bindir, cmd)
        if code != 0:
            log("the web server %s cannot start here (exit code %d):" % (script, code))
            sys.stdout.write(output)
            log("command failed with exit code %d" % code)
            raise SystemExit(code or 1)


def deps(plan):
    app_root = plan["app_root"]
    src = os.path.join(app_root, "src")
    venv = plan["venv"]
    started = time.time()
    env = dict(os.environ, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    if plan.get("tmpdir"):
        env["TMPDIR"] = plan["tmpdir"]  # unpacked wheels stay in memory
    files = [os.path.join(plan["wheels_dir"], f) for f in plan.get("files", [])]
    check_wheels(plan, files)
    if plan.get("incremental"):
        # On top of an earlier deps image of this app: only the added wheels, and (an
        # export) exactly what installing them added or changed as the layer.
        before = plan.get("before") or layerdiff.snapshot(app_root)  # main: while it waited
        install_wheels(plan, files, env)
        added = stabilize(plan, before)
        if plan.get("grow"):
            layerdiff.write_list(plan["grow"], added)
        check_libraries(plan, added)
        check_servers(plan, added)
        log("%d wheels added to the virtualenv in %.1f s" % (len(files), time.time() - started))
        return
    if plan.get("passwd") is not None:  # the target image's, for a layer made elsewhere
        with open("/etc/passwd", "wb") as fh:
            fh.write(base64.b64decode(plan["passwd"]))
    ensure_user(plan["uid"], src)
    passwd_group_writable()
    for d in (app_root, src, os.path.join(app_root, "bin")):
        os.makedirs(d, exist_ok=True)
    os.chown(src, plan["uid"], 0)
    os.chmod(src, 0o2775)
    # The exact set `wheelhouse` resolved: no resolver, no index, no surprises.
    if plan.get("installer") in ("uv", "none"):
        run([plan["python"], "-m", "venv", "--without-pip", venv])
    else:
        run([plan["python"], "-m", "venv", venv])
    if plan.get("grow"):
        # the added wheels' layer, made away from the deps layer it goes on: the same
        # virtualenv made afresh, then only what installing them adds or changes
        if plan.get("installer") == "uv":  # its lock file, as the layer below has it
            os.close(os.open(os.path.join(venv, ".lock"), os.O_CREAT | os.O_WRONLY, 0o666))
            os.chmod(os.path.join(venv, ".lock"), 0o666)
        set_mtimes(app_root, int(plan.get("epoch", 1)))  # as on the deps layer it goes on
        before = layerdiff.snapshot(app_root)
        install_wheels(plan, files, env)
        added = stabilize(plan, before)
        check_libraries(plan)  # the servers are loaded where the whole virtualenv is
        layerdiff.write_list(plan["grow"], added)
        log(
            "%d wheels installed for a layer of their own in %.1f s"
            % (len(files), time.time() - started)
        )
        return
    install_wheels(plan, files, env)
    stabilize(plan)
    os.utime("/etc/passwd", (int(plan.get("epoch", 1)),) * 2)
    if plan.get("check", True):  # else `check` runs in the image the layer goes on
        check(plan)
    elif plan.get("loader_cache") is not None:  # ... where this could not tell
        native_check(plan)
    log("virtualenv ready in %.1f s" % (time.time() - started))


def install(plan):
    """A deps step's container made ready for the app step's collectstatic (early_static):
    the plan's wheels added as they are (no bytecode, no layer), the ``unpack`` tars
    extracted at / as the engine would put them (it cannot reach a tmpfs)."""
    files = [os.path.join(plan["wheels_dir"], f) for f in plan.get("files", [])]
    if files:
        check_wheels(plan, files)
        install_wheels(plan, files, dict(os.environ, PIP_NO_INPUT="1"))
    import tarfile

    trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    for path in plan.get("unpack", []):
        with tarfile.open(path) as tar:
            tar.extractall("/", numeric_owner=True, **trusted)


def check(plan):
    """The shared-library and server check of a whole virtualenv."""
    check_libraries(plan)
    check_servers(plan)


STATIC_ROOT_RECORD = ".warpdrive/static-root"


def group_writable(top):
    """S2I's fix-permissions: group bits = owner bits, so any uid in group 0 (OpenShift's
    arbitrary uid) can do what the app user can (Django writes its files 0644)."""
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            if os.path.islink(name):
                continue
            mode = os.stat(name).st_mode & 0o7777
            os.chmod(name, mode | ((mode & 0o700) >> 3))


def read_environment(src):
    """`.warpdrive/environment`, read by the launcher's own code (shipped beside this
    file) so build and run apply the same rules."""
    sys.path.insert(0, HELPERS)
    from start import read_environment as read

    return read(src)


def run_as_app(plan, cmd, env, capture=False):
    """Run as the app user (group 0, umask 002: what it writes stays group-writable)."""
    log("$ " + " ".join(cmd))
    proc = subprocess.Popen(
        cmd,
        cwd=os.path.join(plan["app_root"], "src"),
        env=env,
        user=plan["uid"],
        group=0,
        umask=0o002,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line)
    return proc.wait(), "".join(lines)


FALLBACK_SETTINGS = """\
# written by nox-warpdrive for collectstatic: the app's settings have no STATIC_ROOT
from %(settings)s import *  # noqa

STATIC_ROOT = %(root)r
try:
    STATIC_URL
except NameError:
    STATIC_URL = "/static/"
"""


def collectstatic(plan, env):
    python = os.path.join(plan["venv"], "bin", "python")
    cmd = [python, "manage.py", "collectstatic", "--noinput"]
    code, output = run_as_app(plan, cmd, env)
    if code != 0 and "STATIC_ROOT" in output and plan.get("settings"):
        # warpdrive's fallback: settings without STATIC_ROOT still get their files served
        log("the settings have no STATIC_ROOT; collecting into %s" % plan["fallback_static_root"])
        with open(os.path.join(HELPERS, "warpdrive_fallback_settings.py"), "w") as fh:
            fh.write(
                FALLBACK_SETTINGS
                % {"settings": plan["settings"], "root": plan["fallback_static_root"]}
            )
        os.chmod(HELPERS, 0o755)
        env = dict(
            env,
            DJANGO_SETTINGS_MODULE="warpdrive_fallback_settings",
            PYTHONPATH=os.pathsep.join(p for p in (HELPERS, env.get("PYTHONPATH")) if p),
        )
        code, output = run_as_app(plan, cmd, env)
    if code != 0:
        log("collectstatic failed with exit code %d" % code)
        raise SystemExit(code)
    m = re.findall(r"(?:copied|symlinked|unmodified)[^']* to '([^']+)'", output)
    if m:
        root = os.path.normpath(m[-1])
        group_writable(root)
        record = os.path.join(plan["app_root"], STATIC_ROOT_RECORD)
        os.makedirs(os.path.dirname(record), exist_ok=True)
        with open(record, "w") as fh:
            fh.write(root + "\n")


def app(plan):
    """The app layer's build steps, as the app user: warpdrive's build hook, then Django's
    collectstatic. Where the static files went is recorded in the image, so a later build
    whose static inputs are unchanged can reuse them without running it."""
    src = os.path.join(plan["app_root"], "src")
    env = dict(os.environ, HOME=src, PYTHONDONTWRITEBYTECODE="1")
    for key, value in read_environment(src).items():
        env.setdefault(key, value)
    if plan.get("settings"):
        env.setdefault("DJANGO_SETTINGS_MODULE", plan["settings"])
    if plan.get("build_hook"):
        code, _ = run_as_app(plan, [os.path.join(src, ".warpdrive", "action_hooks", "build")], env)
        if code != 0:
            log("the build hook failed with exit code %d" % code)
            raise SystemExit(code)
    if plan.get("collectstatic"):
        collectstatic(plan, env)


def export(paths):
    """A tar of ``paths`` (relative to /) on standard output, owners numeric, members in
    name order, every mtime the plan's ``epoch`` (the sources' mtime the bytecode holds):
    the same files give the same bytes. GNU tar when the image has it (ten times faster),
    else Python's tarfile. ``@LIST`` alone: exactly the paths that file lists
    (NUL-separated, sorted, as write_list writes them), a directory without what it
    holds."""
    listed = paths[0][1:] if len(paths) == 1 and paths[0].startswith("@") else None
    epoch = plan_epoch()
    tar = shutil.which("tar")
    if tar:
        version = subprocess.run([tar, "--version"], capture_output=True, text=True)
        if "GNU tar" in version.stdout:
            args = [tar, "-C", "/", "--numeric-owner", "--sort=name", "--mtime=@%d" % epoch]
            args += ["-cf", "-"]
            if listed is not None:
                args += ["--no-recursion", "--verbatim-files-from", "--null", "-T", listed]
            else:
                args += ["--"] + paths
            os.execv(tar, args)
    import tarfile

    if listed is not None:
        with open(listed, "rb") as fh:
            names = [n.decode("utf-8", "surrogateescape") for n in fh.read().split(b"\0") if n]
    else:
        names = tree(paths)
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.GNU_FORMAT) as out:
        for path in names:
            info = out.gettarinfo("/" + path, arcname=path)
            info.mtime = epoch
            info = numeric(info)
            if info.isreg():
                with open("/" + path, "rb") as fh:
                    out.addfile(info, fh)
            else:
                out.addfile(info)
    return 0


def tree(paths):
    """``paths`` (in the order given, as GNU tar takes them) and everything below each,
    in name order (a directory first)."""
    names = []
    for top in paths:
        names.append(top)
        for root, dirs, files in os.walk("/" + top):
            dirs.sort()
            for name in sorted(dirs + files):
                names.append(os.path.join(root, name).lstrip("/"))
    return names


def plan_epoch():
    """The mtime the plan of this build gives every file (1 without a plan)."""
    try:
        with open(os.path.join(HELPERS, "plan.json")) as fh:
            return int(json.load(fh).get("epoch", 1))
    except (OSError, ValueError):
        return 1


def numeric(info):
    info.uname = info.gname = ""
    return info


def wait_for_go(seconds):
    """The step's real plan, once the host has put it and then GO; None when nobody came
    within ``seconds`` (the host removes the container when it does not use it)."""
    deadline = time.time() + seconds
    while not os.path.exists(GO):
        if time.time() > deadline:
            return None
        time.sleep(0.005)
    with open(os.path.join(HELPERS, "plan.json")) as fh:
        return json.load(fh)


def main():
    if sys.argv[1] == "export":
        return export(sys.argv[2:])
    with open(os.path.join(HELPERS, "plan.json")) as fh:
        plan = json.load(fh)
    if plan.get("wait"):  # started early: what the wheels do not change is done now
        before = layerdiff.snapshot(plan["app_root"]) if plan.get("incremental") else None
        log("waiting for the plan")  # build/prestart.py: WAITING
        plan = wait_for_go(plan["wait"])
        if plan is None:
            return 3
        plan["before"] = before  # the virtualenv's snapshot, for deps()
    try:
        {"deps": deps, "app": app, "check": check, "install": install}[sys.argv[1]](plan)
    finally:
        if not plan.get("export"):  # an export leaves it out; it runs this file again
            shutil.rmtree(HELPERS, ignore_errors=True)
    if plan.get("export"):
        # the host now reads the result out of this container, then removes it
        print(protocol.EXPORT_READY, flush=True)
        time.sleep(plan.get("export_wait", 900))
        return 1  # nobody came for it
    return 0


if __name__ == "__main__":
    sys.exit(main())
