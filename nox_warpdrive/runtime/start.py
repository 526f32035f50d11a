#!/usr/bin/env python3
"""warpdrive-start: the start launcher shipped into every image (stdlib only).

It finds how to run the app in the current directory and execs the web server, so the
server is PID 1's direct replacement: `docker stop` sends SIGTERM straight to it and it
shuts down gracefully. The same `detect` function is imported by nox-warpdrive on the host
at build time, so an app the image could not start fails the build, not the deploy.

Detection order (first match wins):
  1. APP_MODULE environment variable ("package.module:callable")
  2. manage.py: a Django project; its settings' WSGI_APPLICATION
  3. wsgi.py or wsgi/__init__.py with `application`
"""

import ast
import os
import re
import sys
from typing import List, Mapping, Optional

DEFAULT_PORT = "8080"


class NotDetected(Exception):
    pass


class App:
    def __init__(self, kind: str, module: str, how: str, settings: Optional[str] = None) -> None:
        self.kind = kind  # "django" | "wsgi"
        self.module = module  # "pkg.mod:callable"
        self.how = how  # human text: why we chose this
        self.settings = settings  # Django settings module

    def __repr__(self) -> str:
        return "App(%r, %r, %r, %r)" % (self.kind, self.module, self.how, self.settings)


def _django_settings(app_dir: str, env: Mapping[str, str]) -> Optional[str]:
    if env.get("DJANGO_SETTINGS_MODULE"):
        return env["DJANGO_SETTINGS_MODULE"]
    try:
        with open(os.path.join(app_dir, "manage.py"), encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return None
    m = re.search(r"""DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([A-Za-z_][\w.]*)['"]""", text)
    return m.group(1) if m else None


def _module_file(app_dir: str, module: str) -> Optional[str]:
    base = os.path.join(app_dir, *module.split("."))
    for candidate in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


def _setting(app_dir: str, module: str, name: str, depth: int = 0) -> Optional[str]:
    """A string constant assigned at the top level of a settings module, read with ast so
    that nothing of the app is imported. Star imports (`from .base import *`, the split
    settings layout) are followed, later assignments win as they would at import."""
    path = _module_file(app_dir, module)
    if path is None or depth > 8:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
    except (OSError, SyntaxError, ValueError):
        return None
    is_package = path.endswith("__init__.py")
    value = None  # type: Optional[str]
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                if keep < 0:
                    continue
                target = ".".join(parts[:keep] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
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


def _dotted_to_module(dotted: str) -> str:
    mod, _, attr = dotted.rpartition(".")
    return "%s:%s" % (mod, attr) if mod else dotted


def detect(app_dir: str, env: Optional[Mapping[str, str]] = None) -> App:
    """How to start the app in app_dir. Raises NotDetected listing what was tried."""
    env = os.environ if env is None else env
    if env.get("APP_MODULE"):
        return App("wsgi", env["APP_MODULE"], "APP_MODULE environment variable")
    if os.path.isfile(os.path.join(app_dir, "manage.py")):
        settings = _django_settings(app_dir, env)
        if settings:
            wsgi = _setting(app_dir, settings, "WSGI_APPLICATION")
            if wsgi:
                return App(
                    "django",
                    _dotted_to_module(wsgi),
                    "Django project, WSGI_APPLICATION in %s" % settings,
                    settings,
                )
            # no setting: the nearest package above the settings with a wsgi module
            parts = settings.split(".")[:-1]
            while parts:
                if _module_file(app_dir, ".".join(parts + ["wsgi"])):
                    break
                parts.pop()
            package = ".".join(parts) or settings.split(".")[0]
            return App(
                "django",
                package + ".wsgi:application",
                "Django project %s (default wsgi module)" % settings,
                settings,
            )
    if os.path.isfile(os.path.join(app_dir, "wsgi.py")) or os.path.isfile(
        os.path.join(app_dir, "wsgi", "__init__.py")
    ):
        return App("wsgi", "wsgi:application", "wsgi.py")
    raise NotDetected(
        "no way to start the app was found in %s; looked for, in order: the APP_MODULE "
        "environment variable, manage.py (Django, with DJANGO_SETTINGS_MODULE), "
        "wsgi.py or wsgi/__init__.py defining `application`" % app_dir
    )


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


def server_command(app: App, env: Mapping[str, str]) -> List[str]:
    port = env.get("PORT") or DEFAULT_PORT
    workers = env.get("WEB_CONCURRENCY") or str(default_workers())
    return [
        "gunicorn",
        "--bind",
        "0.0.0.0:%s" % port,
        "--workers",
        workers,
        "--access-logfile",
        "-",
        "--error-logfile",
        "-",
        "--graceful-timeout",
        env.get("WARPDRIVE_GRACEFUL_TIMEOUT", "10"),
        app.module,
    ]


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    app_dir = os.getcwd()
    try:
        app = detect(app_dir)
    except NotDetected as exc:
        sys.stderr.write("warpdrive-start: %s\n" % exc)
        return 2
    env = dict(os.environ)
    if app.settings:
        env.setdefault("DJANGO_SETTINGS_MODULE", app.settings)
    cmd = server_command(app, env)
    if argv[:1] == ["--print"]:
        print(" ".join(cmd))
        return 0
    sys.stderr.write("warpdrive-start: %s -> %s\n" % (app.how, " ".join(cmd)))
    sys.stderr.flush()
    os.execvpe(cmd[0], cmd, env)
    return 1  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
