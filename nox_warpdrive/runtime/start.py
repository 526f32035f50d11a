#!/usr/bin/env python3
"""warpdrive-start: the start launcher shipped into every image (stdlib only).

It finds how to run the app in the current directory and starts the web server. As PID 1
it stays as a small init (tini's job; the kernel gives PID 1 no default signal action, so
an app without a SIGTERM handler would ignore `docker stop`, and orphans would stay
zombies): the app runs in its own process group, signals are passed on, every child is
reaped, and the app's status is the exit status (143 when SIGTERM ended it). Not PID 1
(`docker run --init`), it execs the server. The host imports the same `detect` at build
time, so an app the image could not start fails the build, not the deploy.

Detection order (first match wins), modelled on warpdrive and s2i-python-container:
  1. `start` in [tool.warpdrive] (a shell command)
  2. `app-module` in [tool.warpdrive], or the APP_MODULE environment variable
  3. a Procfile's `web:` line (Heroku, buildpacks, Railpack), run as a shell command
  4. `entrypoint` in [tool.fastapi] (what `fastapi run` reads): an ASGI app
  5. an executable app.sh (APP_SCRIPT names another)
  6. app.py (APP_FILE names another): run with Python when it runs itself (a `__main__`
     block, a top-level app.run() or serve_forever()), else its `application` or `app`;
     one with neither (a factory layout's app.py) gives way to the rules below
  7. manage.py: a Django project; ASGI_APPLICATION if its settings have one, else
     WSGI_APPLICATION
  8. wsgi.py or wsgi/__init__.py defining `application` (or `app`)
  9. asgi.py or asgi/__init__.py defining `application` (or `app`)

Servers: gunicorn (default for WSGI), uvicorn (default for ASGI), waitress,
mod_wsgi-express, uwsgi; `server` in [tool.warpdrive] or WARPDRIVE_SERVER_TYPE chooses.
All listen on 0.0.0.0:$PORT (8080). A Django app's collected static files are served in
front of it (WhiteNoise, the ASGI handler in lib/, uwsgi's and mod_wsgi's mappings) unless
its settings name WhiteNoise's middleware: then the app serves them, with its own headers.

At each start, before the server: `.warpdrive/environment` (KEY=VALUE lines) fills in
variables not already set, an arbitrary uid gets a passwd entry (OpenShift), and an
executable `.warpdrive/action_hooks/deploy` runs.
"""

import ast
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from typing import Callable, Dict, List, Mapping, Optional, Tuple

DEFAULT_PORT = "8080"
APP_ROOT = os.environ.get("APP_ROOT", "/opt/app-root")
#: written by the image build: the detection and server settings from [tool.warpdrive]
CONFIG_FILE = os.path.join(APP_ROOT, ".warpdrive", "start.json")
#: written by the image build: where Django's collectstatic put the files
STATIC_ROOT_RECORD = os.path.join(APP_ROOT, ".warpdrive", "static-root")
#: the WSGI/ASGI wrappers that serve static files live next to this file in the image
LIB_DIR = os.path.join(APP_ROOT, "lib")

SERVERS = ("gunicorn", "uvicorn", "waitress", "mod_wsgi", "uwsgi")
#: what each server speaks
INTERFACES = {
    "gunicorn": ("wsgi",),
    "uvicorn": ("asgi",),
    "waitress": ("wsgi",),
    "mod_wsgi": ("wsgi",),
    "uwsgi": ("wsgi",),
}
#: the requirement that provides each server
SERVER_PACKAGES = {
    "gunicorn": "gunicorn",
    "uvicorn": "uvicorn",
    "waitress": "waitress",
    "mod_wsgi": "mod_wsgi",
    "uwsgi": "uwsgi",
}
#: servers without a static file mapping of their own: WhiteNoise serves Django's files
NEEDS_WHITENOISE = ("gunicorn", "waitress")
#: an app whose settings name this middleware serves its static files itself
WHITENOISE_MIDDLEWARE = "whitenoise.middleware.WhiteNoiseMiddleware"
#: what an app.py calls at its top level to serve: app.run(), uvicorn.run(), serve(),
#: httpd.serve_forever(), web.run_app(), main(), loop.run_forever(), ...
SERVING_CALLS = frozenset(
    ("run", "serve", "serve_forever", "run_app", "main", "run_forever")
    + ("run_until_complete", "run_simple", "run_server", "quickstart")
)
ASGI_HINTS = re.compile(
    r"\b(?:fastapi|starlette|quart|litestar|sanic|django\.core\.asgi|get_asgi_application)\b"
)


class NotDetected(Exception):
    """No way to start the app; ``fix``, when known, says what to change."""

    def __init__(self, message: str, fix: Optional[str] = None) -> None:
        super().__init__(message)
        self.fix = fix


class UnusableAppPy(NotDetected):
    """app.py neither runs itself nor defines its app: a later rule may still match."""


class App:
    """How to start an app. ``kind``: command | python | django | wsgi | asgi."""

    def __init__(
        self,
        kind: str,
        module: str,
        how: str,
        settings: Optional[str] = None,
        interface: Optional[str] = None,
        command: Optional[List[str]] = None,
    ) -> None:
        self.kind = kind
        self.module = module  # "pkg.mod:callable" for wsgi/asgi/django
        self.how = how  # human text: why this was chosen
        self.settings = settings  # Django settings module
        self.interface = interface  # "wsgi" | "asgi" | None (a command)
        self.command = command  # for kind command/python

    def __repr__(self) -> str:
        return "App(%r, %r, %r, %r, %r)" % (
            self.kind,
            self.module,
            self.how,
            self.settings,
            self.interface,
        )


# -- detection ------------------------------------------------------------------------


def _django_settings(app_dir: str, env: Mapping[str, str]) -> Optional[str]:
    return django_settings_source(app_dir, env)[0]


def django_settings_source(app_dir: str, env: Mapping[str, str]) -> Tuple[Optional[str], str]:
    """The Django settings module and where it comes from: DJANGO_SETTINGS_MODULE in
    the environment, else the default manage.py sets."""
    if env.get("DJANGO_SETTINGS_MODULE"):
        return env["DJANGO_SETTINGS_MODULE"], "the environment"
    try:
        with open(os.path.join(app_dir, "manage.py"), encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return None, "nowhere"
    m = re.search(r"""DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([A-Za-z_][\w.]*)['"]""", text)
    return (m.group(1), "manage.py's default") if m else (None, "nowhere")


def _module_file(app_dir: str, module: str) -> Optional[str]:
    base = os.path.join(app_dir, *module.split("."))
    for candidate in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


def _parse(path: str) -> Optional[ast.Module]:
    try:
        with open(path, encoding="utf-8") as fh:
            return ast.parse(fh.read(), path)
    except (OSError, SyntaxError, ValueError):
        return None


def _star_target(module: str, node: ast.ImportFrom, is_package: bool) -> Optional[str]:
    """The module a `from ... import *` in ``module`` names, or None."""
    if not node.level:
        return node.module or None
    parts = module.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    if keep < 0:
        return None
    return ".".join(parts[:keep] + ([node.module] if node.module else [])) or None


def _setting(app_dir: str, module: str, name: str, depth: int = 0) -> Optional[str]:
    """A string constant assigned at the top level of a settings module, read with ast so
    that nothing of the app is imported. Star imports (`from .base import *`, the split
    settings layout) are followed, later assignments win as they would at import."""
    path = _module_file(app_dir, module)
    if path is None or depth > 8:
        return None
    tree = _parse(path)
    if tree is None:
        return None
    is_package = path.endswith("__init__.py")
    value = None  # type: Optional[str]
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            target = _star_target(module, node, is_package)
            found = _setting(app_dir, target, name, depth + 1) if target else None
            if found is not None:
                value = found
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target_node in node.targets:
                if (
                    isinstance(target_node, ast.Name)
                    and target_node.id == name
                    and isinstance(node.value.value, str)
                ):
                    value = node.value.value
    return value


def _mentions(app_dir: str, module: str, text: str, depth: int = 0) -> bool:
    """Whether a settings module, or one it star-imports, has the string ``text``
    anywhere (``MIDDLEWARE.append("...")`` in production.py counts)."""
    path = _module_file(app_dir, module)
    tree = _parse(path) if path is not None and depth <= 8 else None
    if tree is None or path is None:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value == text:
            return True
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            target = _star_target(module, node, path.endswith("__init__.py"))
            if target and _mentions(app_dir, target, text, depth + 1):
                return True
    return False


def serves_own_static(app_dir: str, settings: Optional[str]) -> bool:
    """Whether the Django app serves its static files itself (WhiteNoise's middleware
    in its settings): then the launcher puts nothing in front of it, and the app's own
    cache headers reach the client."""
    return bool(settings) and _mentions(app_dir, str(settings), WHITENOISE_MIDDLEWARE)


def _defines(path: str, names: List[str]) -> Optional[str]:
    """The first of ``names`` bound at the top level of a module (assignment, def, class
    or import), without importing it."""
    tree = _parse(path)
    if tree is None:
        return None
    bound = set()
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    bound.add(t.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                bound.add((a.asname or a.name).split(".")[0])
    for name in names:
        if name in bound:
            return name
    return None


def _guess_interface(app_dir: str, module: str) -> str:
    """ASGI when the module's source names an ASGI framework; WSGI otherwise."""
    path = _module_file(app_dir, module.split(":", 1)[0])
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                if ASGI_HINTS.search(fh.read()):
                    return "asgi"
        except OSError:
            pass
    return "wsgi"


def _interface(app_dir: str, module: str, server: str) -> str:
    """What an app module speaks: the chosen server's interface, else a guess."""
    return INTERFACES[server][0] if server in INTERFACES else _guess_interface(app_dir, module)


def _runs_itself(nodes: List[ast.stmt]) -> bool:
    """Whether a script starts something when run: an `if __name__ == "__main__":`
    block, or a statement calling a serving name (SERVING_CALLS), at the top level or in
    its if/with/try/for blocks (not in a def or class, nor subprocess.run())."""
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        test = ast.dump(node.test) if isinstance(node, ast.If) else ""
        if "'__name__'" in test and "'__main__'" in test:
            return True
        for call in ast.walk(node) if isinstance(node, (ast.Expr, ast.Raise)) else ():
            if not isinstance(call, ast.Call):
                continue
            name = getattr(call.func, "attr", None) or getattr(call.func, "id", None)
            if name in SERVING_CALLS and "'subprocess'" not in ast.dump(call.func):
                return True
        inner = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)]
        inner += [s for h in getattr(node, "handlers", []) for s in h.body]
        if inner and _runs_itself(inner):
            return True
    return False


def _dotted_to_module(dotted: str) -> str:
    mod, _, attr = dotted.rpartition(".")
    return "%s:%s" % (mod, attr) if mod else dotted


def detect(
    app_dir: str,
    env: Optional[Mapping[str, str]] = None,
    config: Optional[Mapping[str, object]] = None,
) -> App:
    """How to start the app in app_dir: the first rule that matches, in warpdrive's and
    S2I's order. Raises NotDetected listing what was tried."""
    env = os.environ if env is None else env
    config = config or {}
    server = str(config.get("server") or env.get("WARPDRIVE_SERVER_TYPE") or "")
    unusable = None  # app.py of a factory layout (app.py + wsgi.py): wsgi.py serves it
    for rule in (_by_config, _by_declaration, _by_script, _by_django, _by_module_file):
        try:
            found = rule(app_dir, env, config, server)
        except UnusableAppPy as exc:
            found, unusable = None, exc
        if found is not None:
            return found
    raise unusable or NotDetected(
        "no way to start the app was found in %s; looked for, in order: `start` or "
        "`app-module` in [tool.warpdrive] (or APP_MODULE), a Procfile's web: line, "
        "`entrypoint` in [tool.fastapi], an executable app.sh, app.py, "
        "manage.py (Django, with DJANGO_SETTINGS_MODULE), wsgi.py or asgi.py defining "
        "`application`" % app_dir
    )


def _by_config(
    app_dir: str, env: Mapping[str, str], config: Mapping[str, object], server: str
) -> Optional[App]:
    """`start`, then `app-module` (or APP_MODULE)."""
    start = config.get("start")
    if isinstance(start, str) and start.strip():
        return App("command", start, "`start` in [tool.warpdrive]", command=["sh", "-c", start])
    module = config.get("app_module") or env.get("APP_MODULE")
    if isinstance(module, str) and module:
        if ":" not in module:
            module += ":application"
        interface = _interface(app_dir, module, server)
        how = "`app-module` in [tool.warpdrive]" if config.get("app_module") else "APP_MODULE"
        return App(interface, module, how, interface=interface)
    return None


def procfile_web(app_dir: str) -> Optional[str]:
    """The command of a Procfile's `web:` process (Heroku's format: `name: command` per
    line, comments with #), or None."""
    try:
        with open(os.path.join(app_dir, "Procfile"), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        m = re.match(r"^\s*web\s*:\s*(.*\S)\s*$", line)
        if m and not line.lstrip().startswith("#"):
            return m.group(1)
    return None


def _by_declaration(
    app_dir: str, env: Mapping[str, str], config: Mapping[str, object], server: str
) -> Optional[App]:
    """What the app declares for other tools: a Procfile's `web:` line (a shell command,
    like `start`), then `entrypoint` in [tool.fastapi] (an ASGI app; the host reads
    pyproject.toml and passes it in the config; the Procfile's line too, so that one
    .dockerignore leaves out of the image still counts)."""
    web = config.get("procfile_web") or procfile_web(app_dir)
    if isinstance(web, str) and web:
        # a Django project keeps its settings: collectstatic still runs at build, as
        # Heroku's buildpack runs it
        settings = None
        if os.path.isfile(os.path.join(app_dir, "manage.py")):
            settings = _django_settings(app_dir, env)
        how = "Procfile's web: line"
        return App("command", web, how, settings=settings, command=["sh", "-c", web])
    entry = config.get("fastapi_entrypoint")
    if isinstance(entry, str) and entry:
        module = entry if ":" in entry else entry + ":app"
        return App("asgi", module, "`entrypoint` in [tool.fastapi]", interface="asgi")
    return None


def _by_script(
    app_dir: str, env: Mapping[str, str], config: Mapping[str, object], server: str
) -> Optional[App]:
    """An executable app.sh (APP_SCRIPT), then app.py (APP_FILE): run with Python when it
    runs itself, else its `application` or `app` served as `app-module` would be, else
    UnusableAppPy (raised by detect only when no later rule matches either)."""
    script = env.get("APP_SCRIPT") or "app.sh"
    path = os.path.join(app_dir, script)
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return App("command", script, "executable %s" % script, command=[os.path.abspath(path)])
    appfile = env.get("APP_FILE") or "app.py"
    path = os.path.join(app_dir, appfile)
    if not os.path.isfile(path):
        return None
    tree = _parse(path)  # None: Python says what is wrong with it when it runs
    if tree is None or _runs_itself(tree.body):
        python = sys.executable if env is os.environ else "python"
        return App("python", appfile, "%s, run with Python" % appfile, command=[python, appfile])
    # a module that only defines its app (Flask's quickstart) exits at once when run:
    # serve its app as `app-module` would
    stem, ext = os.path.splitext(os.path.normpath(appfile))
    module = ".".join(stem.split(os.sep))
    importable = ext == ".py" and all(p.isidentifier() for p in module.split("."))
    name = _defines(path, ["application", "app"])
    if name and importable:
        target = "%s:%s" % (module, name)
        how = "%s defines `%s` and does not run itself" % (appfile, name)
        interface = _interface(app_dir, target, server)
        return App(interface, target, how, interface=interface)
    raise UnusableAppPy(
        '%s does not run itself (no `if __name__ == "__main__":` block, no top-level '
        "app.run() or serve_forever()) and %s, so run with Python it would exit at once"
        % (appfile, "is no module name" if name else "defines no `app` or `application`"),
        fix='add an `if __name__ == "__main__":` block that starts a server listening on '
        '$PORT, or set `app-module = "%s:<the app\'s name>"` or `start = "..."` in '
        "[tool.warpdrive]" % (module if importable else "module"),
    )


def _by_django(
    app_dir: str, env: Mapping[str, str], config: Mapping[str, object], server: str
) -> Optional[App]:
    """manage.py with settings: ASGI_APPLICATION (unless a WSGI server is asked for),
    else WSGI_APPLICATION, else the project's default wsgi module."""
    if not os.path.isfile(os.path.join(app_dir, "manage.py")):
        return None
    settings = _django_settings(app_dir, env)
    if not settings:
        return None
    asgi = _setting(app_dir, settings, "ASGI_APPLICATION")
    wsgi_servers = ("gunicorn", "waitress", "mod_wsgi", "uwsgi")
    if (asgi and server not in wsgi_servers) or server == "uvicorn":
        target = _dotted_to_module(asgi) if asgi else None
        if target is None:
            target = _default_django_module(app_dir, settings, "asgi")
        how = "Django project %s (ASGI)" % settings
        return App("django", target, how, settings, interface="asgi")
    wsgi = _setting(app_dir, settings, "WSGI_APPLICATION")
    if wsgi:
        how = "Django project, WSGI_APPLICATION in %s" % settings
        return App("django", _dotted_to_module(wsgi), how, settings, interface="wsgi")
    target = _default_django_module(app_dir, settings, "wsgi")
    how = "Django project %s (default wsgi module)" % settings
    return App("django", target, how, settings, interface="wsgi")


def _by_module_file(
    app_dir: str, env: Mapping[str, str], config: Mapping[str, object], server: str
) -> Optional[App]:
    """wsgi.py, then asgi.py (or packages), defining `application` or `app`."""
    for interface in ("wsgi", "asgi"):
        found = _module_file(app_dir, interface)
        name = _defines(found, ["application", "app"]) if found else None
        if name:
            how = "%s.py" % interface
            return App(interface, "%s:%s" % (interface, name), how, interface=interface)
    return None


def _default_django_module(app_dir: str, settings: str, kind: str) -> str:
    """The nearest package above the settings that has a wsgi/asgi module."""
    parts = settings.split(".")[:-1]
    while parts:
        if _module_file(app_dir, ".".join(parts + [kind])):
            break
        parts.pop()
    package = ".".join(parts) or settings.split(".")[0]
    return "%s.%s:application" % (package, kind)


def choose_server(app: App, config: Mapping[str, object], env: Mapping[str, str]) -> str:
    """The server for a WSGI/ASGI app; raises NotDetected for a mismatch."""
    server = str(config.get("server") or env.get("WARPDRIVE_SERVER_TYPE") or "")
    if not server:
        return "uvicorn" if app.interface == "asgi" else "gunicorn"
    if server not in SERVERS:
        raise NotDetected("unknown server %r; use one of %s" % (server, ", ".join(SERVERS)))
    if app.interface and app.interface not in INTERFACES[server]:
        raise NotDetected(
            "%s serves %s apps, but %s is an %s app; choose another `server`"
            % (server, "/".join(INTERFACES[server]).upper(), app.module, app.interface.upper())
        )
    return server


def required_packages(app: App, server: Optional[str]) -> List[str]:
    """What the image must have installed to start this app this way."""
    if app.kind in ("command", "python") or server is None:
        return []
    out = [SERVER_PACKAGES[server]]
    if app.kind == "django" and server in NEEDS_WHITENOISE:
        out.append("whitenoise")
    return out


# -- running --------------------------------------------------------------------------


def _cgroup_memory_limit() -> Optional[int]:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                raw = fh.read().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < (1 << 50):
            return int(raw)
    return None


def default_workers(cpus: Optional[int] = None, memory: Optional[int] = None) -> int:
    """s2i-python-container's rule: min(2 x cores, (memory MB - 43) / 40), 1..12."""
    if cpus is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover
            cpus = os.cpu_count() or 1
    workers = 2 * cpus
    memory = _cgroup_memory_limit() if memory is None else memory
    if memory:
        workers = min(workers, (memory // (1024 * 1024) - 43) // 40)
    return max(1, min(12, workers))


def static_files(app: App) -> Optional[str]:
    """Django's collected static files in this image, when the launcher is to serve
    them (not when the app serves them itself)."""
    if app.kind != "django" or serves_own_static(os.getcwd(), app.settings):
        return None
    try:
        with open(STATIC_ROOT_RECORD) as fh:
            root = fh.read().strip()
    except OSError:
        return None
    return root if os.path.isdir(root) else None


class _Serve:
    """What every server's command line is made from."""

    def __init__(self, app, env, port, workers, module, static, reload):
        # type: (App, Mapping[str, str], str, str, str, Optional[str], bool) -> None
        self.app, self.env, self.port, self.workers = app, env, port, workers
        self.module, self.static, self.reload = module, static, reload
        self.grace = env.get("WARPDRIVE_GRACEFUL_TIMEOUT", "10")


def server_command(
    app: App, env: Mapping[str, str], server: Optional[str] = None, reload: bool = False
) -> List[str]:
    """The command line that serves the app; env gets WARPDRIVE_* for the wrappers."""
    if app.command is not None:
        return list(app.command)
    server = server or ("uvicorn" if app.interface == "asgi" else "gunicorn")
    static = static_files(app) if not reload else None
    module = app.module
    if static and server in NEEDS_WHITENOISE:
        module = "warpdrive_static:application"  # WhiteNoise around the app (lib/)
    port = env.get("PORT") or DEFAULT_PORT
    workers = env.get("WEB_CONCURRENCY") or str(default_workers())
    make = _COMMANDS.get(server)
    if make is None:
        raise NotDetected("unknown server %r" % server)
    return make(_Serve(app, env, port, workers, module, static, reload))


def _gunicorn(s: _Serve) -> List[str]:
    cmd = ["gunicorn", "--bind", "0.0.0.0:%s" % s.port, "--workers", s.workers]
    cmd += ["--access-logfile", "-", "--error-logfile", "-", "--graceful-timeout", s.grace]
    return cmd + (["--reload"] if s.reload else []) + [s.module]


def _uvicorn(s: _Serve) -> List[str]:
    cmd = ["uvicorn", "--host", "0.0.0.0", "--port", s.port, "--proxy-headers"]
    cmd += ["--timeout-graceful-shutdown", s.grace]
    cmd += ["--reload"] if s.reload else ["--workers", s.workers]
    if s.static:
        return cmd + ["--app-dir", LIB_DIR, "warpdrive_static:asgi_application"]
    return cmd + [s.module]


def _waitress(s: _Serve) -> List[str]:
    threads = "--threads=%s" % max(4, int(s.workers))
    return ["waitress-serve", "--listen=0.0.0.0:%s" % s.port, threads, s.module]


def _uwsgi(s: _Serve) -> List[str]:
    mod, _, attr = s.app.module.partition(":")
    cmd = ["uwsgi", "--http-socket", "0.0.0.0:%s" % s.port, "--master", "--die-on-term"]
    cmd += ["--need-app", "--processes", s.workers]
    cmd += ["--module", "%s:%s" % (mod, attr or "application")]
    cmd += ["--log-x-forwarded-for", "--enable-threads"]
    if s.static:
        cmd += ["--static-map", "%s=%s" % (_static_url(s.app, s.env), s.static)]
    return cmd


def _mod_wsgi(s: _Serve) -> List[str]:
    mod, _, attr = s.app.module.partition(":")
    cmd = ["mod_wsgi-express", "start-server", "--port", s.port, "--processes", s.workers]
    cmd += ["--log-to-terminal", "--access-log", "--startup-log"]
    cmd += ["--server-root", os.path.join(s.env.get("TMPDIR", "/tmp"), "mod_wsgi")]
    cmd += ["--application-type", "module", "--callable-object", attr or "application"]
    if s.static:
        cmd += ["--url-alias", _static_url(s.app, s.env).rstrip("/"), s.static]
    return cmd + [mod]


_COMMANDS = {
    "gunicorn": _gunicorn,
    "uvicorn": _uvicorn,
    "waitress": _waitress,
    "uwsgi": _uwsgi,
    "mod_wsgi": _mod_wsgi,
}


def _static_url(app: App, env: Mapping[str, str]) -> str:
    url = (
        env.get("WARPDRIVE_STATIC_URL")
        or (_setting(os.getcwd(), app.settings, "STATIC_URL") if app.settings else None)
        or "/static/"
    )
    return url if url.startswith("/") else "/" + url


def read_environment(app_dir: str) -> Dict[str, str]:
    """`.warpdrive/environment`: KEY=VALUE lines, # comments, optional quotes."""
    out = {}  # type: Dict[str, str]
    try:
        with open(os.path.join(app_dir, ".warpdrive", "environment"), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export ") :].strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            out[key] = value
    return out


def ensure_passwd_entry() -> None:
    """An arbitrary uid (OpenShift runs images as one, in group 0) has no passwd entry;
    getpwuid() then fails in many libraries. The image makes /etc/passwd group-writable,
    as S2I images do, so the entry can be added here."""
    uid = os.getuid()
    if uid == 0:
        return
    try:
        import pwd

        pwd.getpwuid(uid)
        return
    except (KeyError, ImportError):
        pass
    try:
        with open("/etc/passwd", "a") as fh:
            fh.write(
                "default:x:%d:%d:Default Application User:%s:/usr/sbin/nologin\n"
                % (uid, os.getgid(), os.environ.get("HOME", "/opt/app-root/src"))
            )
    except OSError:
        pass


def load_config() -> Dict[str, object]:
    """The image's start.json; `nox -s serve` passes the same in WARPDRIVE_START_CONFIG."""
    try:
        if os.environ.get("WARPDRIVE_START_CONFIG"):
            data = json.loads(os.environ["WARPDRIVE_START_CONFIG"])
        else:
            with open(CONFIG_FILE, encoding="utf-8") as fh:
                data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_hook(app_dir: str, name: str, env: Mapping[str, str]) -> None:
    hook = os.path.join(app_dir, ".warpdrive", "action_hooks", name)
    if os.path.isfile(hook) and os.access(hook, os.X_OK):
        sys.stderr.write("warpdrive-start: running %s hook\n" % name)
        sys.stderr.flush()
        code = subprocess.call([hook], cwd=app_dir, env=dict(env))
        if code != 0:
            sys.stderr.write("warpdrive-start: %s hook failed with exit code %d\n" % (name, code))
            raise SystemExit(code)


def _serve_waitress(cmd: List[str]) -> int:
    """waitress in this process: it has no SIGTERM handling of its own, and a server
    killed by the signal exits 143; `docker stop` should end with 0."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    from waitress.runner import run  # type: ignore[import-not-found,import-untyped,unused-ignore]

    run(argv=cmd)
    return 0


# -- PID 1 ----------------------------------------------------------------------------


def to_group(app: App) -> bool:
    """Whether signals go to the app's whole process group (dumb-init's way) or to its
    first process only (tini's). A shell command or script is a group, as in a terminal:
    a `start` line that is not one `exec` leaves the shell between the init and the app.
    A server manages its own workers, and some take signals meant for the master as an
    order to die at once (gunicorn's workers on SIGHUP and SIGUSR2)."""
    return app.kind in ("command", "python")


def run_as_init(launch: Callable[[], int], group: bool) -> int:
    """Be the container's init around ``launch`` (warpdrive_init.run_as_init). Its module
    is beside this file in the package (the host: `serve`, the tests), or in the image's
    lib/ directory, where this file is bin/warpdrive-start."""
    if __package__:
        from . import warpdrive_init
    else:
        if LIB_DIR not in sys.path:
            sys.path.insert(0, LIB_DIR)
        import warpdrive_init  # type: ignore[import-not-found,no-redef,unused-ignore]
    return warpdrive_init.run_as_init(launch, group)


def _exec(cmd: List[str], env: Mapping[str, str]) -> None:
    """Become ``cmd``, with the signal dispositions a program expects: Python ignores
    SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec (subprocess
    restores them the same way)."""
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    os.execvpe(cmd[0], cmd, env)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    app_dir = os.getcwd()
    reload = "--reload" in argv
    for key, value in read_environment(app_dir).items():
        os.environ.setdefault(key, value)
    config = load_config()
    try:
        app = detect(app_dir, config=config)
        server = choose_server(app, config, os.environ) if app.interface else None
    except NotDetected as exc:
        fix = "\n  fix: %s" % exc.fix if exc.fix else ""
        sys.stderr.write("warpdrive-start: %s%s\n" % (exc, fix))
        return 2
    env = dict(os.environ)
    if app.settings:
        env.setdefault("DJANGO_SETTINGS_MODULE", app.settings)
    cmd = server_command(app, env, server, reload=reload)
    if cmd and cmd[-1].startswith("warpdrive_static:"):
        env["WARPDRIVE_APPLICATION"] = app.module
        env["WARPDRIVE_STATIC_ROOT"] = static_files(app) or ""
        env["WARPDRIVE_STATIC_URL"] = _static_url(app, env)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (LIB_DIR, app_dir, env.get("PYTHONPATH")) if p
        )
    if argv[:1] == ["--print"]:
        print(" ".join(shlex.quote(c) for c in cmd))
        return 0

    def launch() -> int:
        ensure_passwd_entry()
        run_hook(app_dir, "deploy", env)
        if app.kind == "django" and serves_own_static(app_dir, app.settings):
            sys.stderr.write("warpdrive-start: the app serves its static files (WhiteNoise)\n")
        sys.stderr.write("warpdrive-start: %s -> %s\n" % (app.how, " ".join(cmd)))
        sys.stderr.flush()
        if server == "waitress" and not reload:
            os.environ.clear()
            os.environ.update(env)
            path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
            sys.path[:0] = path + [app_dir]
            return _serve_waitress(cmd)
        _exec(cmd, env)
        return 1  # pragma: no cover

    if os.getpid() == 1:
        return run_as_init(launch, to_group(app))
    return launch()


if __name__ == "__main__":
    sys.exit(main())
