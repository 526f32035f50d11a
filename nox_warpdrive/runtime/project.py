"""Runs INSIDE the builder container (stdlib only), shipped with build_wheels.py: the
project's own wheel (editable: pointing at the app source in the image), built with
its PEP 517/660 backend in an isolated environment."""

import json
import os
import shutil
import sys
import tempfile

if __package__:
    from . import builds, common, failures, uv_bootstrap
else:  # run as a script in the builder container: its modules are shipped beside it
    import builds
    import common
    import failures
    import uv_bootstrap


#: runs one PEP 517/660 hook of the project's build backend in its build environment
HOOK_RUNNER = r"""
import importlib, json, sys
backend_path, backend, hook, out_dir, result_file = json.loads(sys.argv[1])
sys.path[:0] = backend_path
mod, _, attr = backend.partition(":")
obj = importlib.import_module(mod)
for part in attr.split(".") if attr else []:
    obj = getattr(obj, part)
fn = getattr(obj, hook, None)
if fn is None:
    result = None
elif hook.startswith("get_requires_for_"):
    result = fn({})
else:
    result = fn(out_dir, {})
with open(result_file, "w") as fh:
    json.dump(result, fh)
"""


def load_toml(path):
    """A TOML file, with tomllib (Python >= 3.11) or the tomli pip vendors."""
    try:
        import tomllib as toml
    except ImportError:
        where = uv_bootstrap.pip_module_path()
        if where and where not in sys.path:
            sys.path.insert(0, where)
        from pip._vendor import tomli as toml
    with open(path, "rb") as fh:
        return toml.load(fh)


def build_system(src):
    """(requires, backend, backend-path) of a project, with PEP 517's defaults."""
    path = os.path.join(src, "pyproject.toml")
    table = (load_toml(path) if os.path.exists(path) else {}).get("build-system") or {}
    requires = table.get("requires", ["setuptools>=40.8.0"])
    backend = table.get("build-backend") or "setuptools.build_meta:__legacy__"
    return requires, backend, [os.path.join(src, p) for p in table.get("backend-path", [])]


def extract_project(archive, dest):
    """The app source where the image has it (an editable install points there)."""
    import tarfile

    if os.path.lexists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)


def build_venv(ctx, env):
    """An isolated build environment, a virtualenv as pip, uv and `build` make one (a
    backend may ship a program it looks for in the environment's scripts directory).
    (exit code, its python, last lines)."""
    venv = tempfile.mkdtemp(dir=ctx.staging, prefix="build-env-")
    tee = builds.Tee([ctx.plan["python"], "-m", "venv", "--without-pip", venv], env=env)
    return tee.wait(), os.path.join(venv, "bin", "python"), list(tee.tail)


def install_build_requires(ctx, uv, pip, env, requires, python):
    """The backend's requirements into the build environment of ``python``."""
    plan = ctx.plan
    if not requires:
        return 0, []
    if uv:
        cmd = [uv, "pip", "install", "--quiet", "--python", python, "--no-config"]
        cmd += ["--cache-dir", os.path.join(ctx.root, "uv-cache")]
        run_env = dict(env, **uv_bootstrap.uv_env(env))
    else:
        cmd = pip() + ["--python", python, "install", "--quiet", "--disable-pip-version-check"]
        cmd += ["--progress-bar", "off"]
        run_env = env
    if plan.get("no_index"):
        cmd += ["--no-index", "--find-links", ctx.wheels]
    tee = builds.Tee(cmd + list(requires), env=run_env)
    return tee.wait(), list(tee.tail)


def run_hook(ctx, env, src, backend, hook, python, out_dir):
    """(exit code, the hook's result, the last lines) of one backend hook."""
    _, name, path = backend
    result_file = os.path.join(ctx.staging, "hook-result.json")
    arg = json.dumps([path, name, hook, out_dir, result_file])
    # the environment's programs first on PATH, as pip and uv run hooks (a backend may
    # look its own program up there)
    bin_dir = os.path.dirname(python)
    run_env = dict(env, PATH=bin_dir + os.pathsep + env.get("PATH", os.defpath))
    run_env["VIRTUAL_ENV"] = os.path.dirname(bin_dir)
    tee = builds.Tee([python, "-c", HOOK_RUNNER, arg], env=run_env, cwd=src)
    code = tee.wait()
    result = None
    if code == 0:
        with open(result_file) as fh:
            result = json.load(fh)
    return code, result, list(tee.tail)


def build_editable(ctx, uv, pip, env, src, out):
    """PEP 660: the backend's editable wheel, built in an isolated environment with its
    requirements (the steps pip and uv take). (exit code, file, last lines)."""
    backend = build_system(src)
    code, python, tail = build_venv(ctx, env)
    if code == 0:
        code, tail = install_build_requires(ctx, uv, pip, env, backend[0], python)
    if code == 0:
        hook = "get_requires_for_build_editable"
        code, more, tail = run_hook(ctx, env, src, backend, hook, python, out)
        if code == 0 and more:
            code, tail = install_build_requires(ctx, uv, pip, env, more, python)
    if code != 0:
        return code, None, tail
    code, fn, tail = run_hook(ctx, env, src, backend, "build_editable", python, out)
    if code == 0 and fn is None:
        tail = ["the build backend %s has no build_editable hook (PEP 660)" % backend[1]]
        return 4, None, tail
    return code, fn, tail


def build_project(ctx, uv, pip, env, project):
    """The project's wheel from the shipped source, named with a build tag from the
    host's key so that every distinct build has a distinct file. (exit code, file)."""
    src = project["dest"]
    extract_project(os.path.join(os.path.dirname(common.PLAN), project["archive"]), src)
    out = tempfile.mkdtemp(dir=ctx.staging, prefix="project-")
    common.log(
        "building the project %s (%s)"
        % (project["name"], "editable" if project["editable"] else "wheel")
    )
    more = {}
    if project["editable"]:
        code, fn, tail = build_editable(ctx, uv, pip, env, src, out)
    else:
        tee = builds.wheel_builder(ctx, uv, pip, env, src, out)
        code, tail = tee.wait(), list(tee.tail)
        found = [f for f in os.listdir(out) if f.endswith(".whl")]
        fn = found[0] if found else None
        more = {"log": builds.log_name(tee.log)} if tee.log else {}
    if code != 0 or not fn:
        detail = list(tail) + [
            "(%s: the project %s itself)" % (project.get("where"), project["name"])
        ]
        return failures.report_failure("project", code or 4, detail, project["name"], **more), None
    tagged = with_build_tag(fn, project["key"])
    os.replace(os.path.join(out, fn), os.path.join(ctx.staging, tagged))
    ctx.built_from[tagged] = "project:" + project["key"]
    return 0, tagged


def with_build_tag(filename, key):
    """``name-version-<build>-py-abi-plat.whl`` with a build tag from ``key``: a changed
    project gets a new file name, never another file under an old one's."""
    parts = filename[:-4].split("-")
    if len(parts) == 6:
        del parts[2]
    parts.insert(2, "0" + key[:12])
    return "-".join(parts) + ".whl"
