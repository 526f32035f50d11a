"""The only module that imports nox: registers the sessions and maps errors to
``session.error`` (a clean one-line failure, never a traceback for a user mistake).

Registering contacts nothing: ``nox -l`` works without a Docker engine and with a broken
``[tool.warpdrive]``; both are reported when a session actually runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nox
import nox.registry

from .config import Config, load_config
from .engine import Engine
from .engine import connect as connect_engine
from .errors import (
    Interrupted,
    WarpdriveError,
    cause_report,
    die_of,
    host_disk_full,
    signals_end_builds,
)
from .refs import check_image_ref, named_registry

if TYPE_CHECKING:
    from .wheelhouse.build import WheelhouseResult

SESSION_NAMES = ("wheelhouse", "image", "serve", "run", "doctor", "sbom")


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise _ArgError(f"{message}\n{self.format_usage().strip()}")


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def wheelhouse_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nox -s wheelhouse --", add_help=False)
    _debug_option(p)
    p.add_argument("--no-index", action="store_true", help="build from the pip cache only")
    _build_options(p)
    _platform_option(p)
    p.add_argument(
        "--verify",
        action="store_true",
        help="hash every wheel in the volume against the manifest; fetch or build again "
        "any that is damaged or missing",
    )
    p.add_argument(
        "--pull",
        metavar="REF",
        nargs="?",
        const="",
        help="seed the volume from the wheelhouse image at REF (default: wheelhouse-image) "
        "before building: only what it lacks is fetched or built",
    )
    p.add_argument(
        "--push",
        metavar="REF",
        nargs="?",
        const="",
        help="push this platform's wheelhouse to REF (default: wheelhouse-image) after "
        "building: a layer with the new wheels on the previous wheelhouse image",
    )
    p.add_argument(
        "--import",
        dest="import_dir",
        metavar="DIR",
        help="seed the volume from the CI cache directory DIR (what --export wrote)",
    )
    p.add_argument(
        "--export",
        dest="export_dir",
        metavar="DIR",
        help="write this platform's wheelhouse to DIR/<platform key>/ (only what is new)",
    )
    p.add_argument(
        "--prune",
        action="store_true",
        help="remove every wheel and requirement set the current requirements do not use "
        "(and pip's cache), saying what it freed",
    )
    p.add_argument(
        "--all-keys",
        action="store_true",
        help="with --prune: remove the wheelhouses of other platform keys in the volume too",
    )
    return p


def image_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nox -s image --", add_help=False)
    _debug_option(p)
    p.add_argument(
        "--no-index",
        action="store_true",
        default=None,
        help="never consult a package index: install only from the wheelhouse",
    )
    p.add_argument("--tag", metavar="REF", help="tag the image as REF instead of `image`")
    _build_options(p)
    _platform_option(p)
    p.add_argument(
        "--cache-from",
        metavar="REF",
        help="pull REF (an earlier image of this app) and reuse its layers",
    )
    p.add_argument("--push", action="store_true", help="push the image after building it")
    p.add_argument(
        "--plan",
        action="store_true",
        help="say what the build would do and why, changing nothing",
    )
    p.add_argument("--json", action="store_true", help="with --plan: one JSON document")
    p.add_argument(
        "--push-only",
        action="store_true",
        help="build the image in the registry (the image ref) on the layers of "
        "--cache-from REF (default: the image ref itself): pull nothing, upload only the "
        "new app layers, leave nothing on the engine; when it cannot (requirements "
        "changed, collectstatic must run, a build hook), build here and push, saying why",
    )
    p.add_argument(
        "--check-reproducible",
        action="store_true",
        help="after the build, build the image again in isolation (a throwaway volume, "
        "no deps image or cache of the first) and say whether the image ID matched, else "
        "the first layer and path that differ; removes what it made",
    )
    return p


def _debug_option(p: argparse.ArgumentParser) -> None:
    """Every session takes --debug; _guard reads it (an error may come before parsing)."""
    p.add_argument(
        "--debug",
        action="store_true",
        help="when it fails, show the chain of causes and the innermost traceback under "
        "the message (as WARPDRIVE_DEBUG=1 does)",
    )


def debug_wanted(posargs: Sequence[str]) -> bool:
    """The chain of causes is shown: WARPDRIVE_DEBUG set (and not 0), or --debug given."""
    return os.environ.get("WARPDRIVE_DEBUG", "").strip() not in ("", "0") or "--debug" in posargs


def _fail(session: Any, message: str, exc: BaseException) -> None:
    """End the session with ``message`` (message and fix); with debug_wanted, the chain
    of causes under it."""
    if debug_wanted(session.posargs):
        message = f"{message}\n{cause_report(exc)}"
    session.error(message)


def _build_options(p: argparse.ArgumentParser) -> None:
    """--verbose, and --upgrade: the options of a build's wheelhouse (_build_config)."""
    p.add_argument(
        "--verbose",
        action="store_true",
        help="show the output of sdist builds (compilers) as it comes; without it, it goes "
        "to a log in the volume, shown when a build fails",
    )
    p.add_argument(
        "--upgrade",
        action="store_true",
        help="resolve the requirements again from the package index, to their newest "
        "versions (without it, a package the wheelhouse has keeps its version)",
    )


def _build_config(project_dir: Path, overrides: dict[str, Any], args: Any) -> Config:
    """The app's settings with this run's --verbose and --upgrade."""
    cfg = load_config(project_dir, overrides)
    if args.upgrade and (args.no_index or (args.no_index is None and cfg.no_index)):
        raise _ArgError(
            "--upgrade resolves from the package index: drop --no-index "
            "(or `no-index` in [tool.warpdrive] for that run)"
        )
    return dataclasses.replace(cfg, verbose=args.verbose, upgrade=args.upgrade)


def _platform_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--platform",
        metavar="OS/ARCH[,...]",
        help="build for these platforms instead of `platforms` (default: the engine's own), "
        "e.g. linux/arm64 or linux/amd64,linux/arm64; other CPUs run under QEMU emulation",
    )


def _platforms(args: argparse.Namespace) -> dict[str, Any]:
    """--platform as a config override (a comma list)."""
    return {"platforms": args.platform.split(",")} if args.platform else {}


def _registry_ref(given: str | None, configured: str | None, option: str) -> str | None:
    """The REF of --pull/--push: the one given, else `wheelhouse-image`; None when the
    option is absent."""
    if given is None:
        return None
    if given:
        return check_image_ref(given, option)
    if configured:
        return configured
    raise _ArgError(f"{option} needs a REF, or `wheelhouse-image` in [tool.warpdrive]")


def run_wheelhouse(project_dir: Path, posargs: Sequence[str], log: Callable[[str], None]) -> None:
    from .wheelhouse.build import Seed, build_wheelhouse, seeds_for

    args = wheelhouse_parser().parse_args(list(posargs))
    if args.all_keys and not args.prune:
        raise _ArgError("--all-keys goes with --prune: `nox -s wheelhouse -- --prune --all-keys`")
    cfg = _build_config(project_dir, _platforms(args), args)
    pull = _registry_ref(args.pull, cfg.wheelhouse_image, "--pull")
    push = _registry_ref(args.push, cfg.wheelhouse_image, "--push")
    imported = str(Path(args.import_dir).resolve()) if args.import_dir else ""
    seeds: tuple[Seed, ...] = (Seed("dir", imported),) if imported else ()
    seeds += (Seed("image", pull),) if pull else seeds_for(cfg)
    engine = connect(_out)

    def build(c: Config, on: Engine) -> WheelhouseResult:
        return build_wheelhouse(
            c,
            on,
            _out,
            no_index=args.no_index,
            check=True,
            verify=args.verify,
            seeds=seeds,
            prune="unused" if args.prune else "",
            all_keys=args.all_keys,
        )

    if cfg.platforms:
        from .multiarch.build import build_wheelhouses

        results = build_wheelhouses(cfg, engine, _out, build)
    else:
        results = [(build(cfg, engine), engine)]
    for result, _ in results:
        log(result.summary())
    _bound_caches(cfg, engine, None)
    for result, on in results:
        _keep_wheelhouse(on, cfg, result, push, args.export_dir)


def _keep_wheelhouse(
    engine: Engine, cfg: Config, result: WheelhouseResult, push: str | None, export: str | None
) -> None:
    """--push and --export of one platform key's wheelhouse."""
    if result.nothing or not (push or export):
        return
    from .wheelhouse.transfer import Wheelhouse

    wh = Wheelhouse(cfg.volume, result.key, result.builder_id, cfg.python)
    if export:
        from .wheelhouse.directory import export_dir

        export_dir(engine, wh, result.manifest, Path(export).resolve(), _out)
    if push:
        from .wheelhouse.image import push_wheelhouse

        push_wheelhouse(engine, wh, push, result.manifest, _out)


def run_image(project_dir: Path, posargs: Sequence[str], log: Callable[[str], None]) -> None:
    from .image import build_image

    args = image_parser().parse_args(list(posargs))
    overrides = {"image": args.tag} if args.tag else {}
    overrides.update(_platforms(args))
    cfg = _build_config(project_dir, overrides, args)
    if args.plan or args.json:
        _plan_image(cfg, args)
        return
    if cfg.platforms:
        _image_platforms(cfg, args, log)
        return
    if args.push_only:
        _registry_image(cfg.image)
    if args.check_reproducible and args.push_only:
        raise _ArgError("--check-reproducible compares two images built here: drop --push-only")
    if args.check_reproducible and (args.no_index or (args.no_index is None and cfg.no_index)):
        raise _ArgError(
            "--check-reproducible builds again from nothing (an empty volume), which needs "
            "the package index: drop --no-index (or `no-index` in [tool.warpdrive])"
        )
    engine = connect(_out)
    result = build_image(
        cfg,
        engine,
        _out,
        no_index=args.no_index,
        cache_from=args.cache_from,
        push_only=args.push_only,
    )
    log(result.summary())
    if result.pushed is not None:
        from .supply.attach import push_beside

        push_beside(engine, cfg, result.ref, result.pushed.digest, _out, cache=result.pushed.cache)
    if result.pushed is None:  # built in the registry: nothing here to show or push
        # deps images only grow when a build makes one: only then are they bounded
        deps_made = not (result.up_to_date or result.deps_reused)
        _bound_caches(cfg, engine, result.image_id if deps_made else None)
        _out(result.table())
        if args.check_reproducible:
            _check_reproducible(cfg, engine, result.image_id, args.no_index, log)
        if args.push or args.push_only:
            from .engine.registry_check import push
            from .supply.attach import push_beside

            digest = push(engine, result.ref, _out)
            push_beside(engine, cfg, result.ref, digest, _out, local=result.image_id)
    if args.push or args.push_only:
        _push_grown_wheelhouse(cfg, engine, result.wheelhouse)


def _check_reproducible(
    cfg: Config, engine: Engine, image_id: str, no_index: bool | None, log: Callable[[str], None]
) -> None:
    """`image -- --check-reproducible`: the image built again in isolation and compared;
    an image that is not reproducible fails the session (CI can gate on it)."""
    from .build.reproduce import check
    from .image import build_image

    def build(again: Config, isolated: Engine, ref: str) -> str:
        return build_image(again, isolated, _out, no_index=no_index, tag=ref).image_id

    checked = check(cfg, engine, _out, image_id, build)
    if checked.difference is not None:
        raise WarpdriveError(
            checked.summary(),
            fix="see docs/guarantees.md, Reproducible images: what is made stable, and what "
            "cannot be (a build hook, layers grown by earlier builds: build from nothing)",
        )
    log(checked.summary())


def _image_platforms(cfg: Config, args: argparse.Namespace, log: Callable[[str], None]) -> None:
    """`image` with `platforms` or --platform: one build per platform (multiarch/)."""
    from .multiarch.build import build_images

    if args.push_only:
        _registry_image(cfg.image)
    if args.check_reproducible:
        raise _ArgError(
            "--check-reproducible checks the engine's own platform only: drop --platform "
            "(and `platforms` in [tool.warpdrive] for that run)"
        )
    engine = connect(_out)
    options = {"push": args.push, "cache_from": args.cache_from, "push_only": args.push_only}
    result = build_images(cfg, engine, _out, no_index=args.no_index, **options)
    log(result.summary())
    _bound_caches(cfg, engine, None)
    _out(result.table())
    if args.push or args.push_only:  # each platform's SBOM, provenance and new wheels
        result.push_supply(engine, _out)
        for image in result.images:  # from the engine whose volume has them
            _push_grown_wheelhouse(cfg, image.engine or engine, image.result.wheelhouse)


def _plan_image(cfg: Config, args: argparse.Namespace) -> None:
    """`image -- --plan`: what the build would do, changing nothing (image_plan.py); no
    leftover sweep either, and no registry: --push, --push-only and --cache-from act."""
    from .multiarch.plan import plan_for

    if not args.plan:
        raise _ArgError("--json goes with --plan")
    acting = [o for o, on in (("--push", args.push), ("--push-only", args.push_only)) if on]
    acting += ["--cache-from"] if args.cache_from else []
    acting += ["--upgrade"] if args.upgrade else []
    if acting:
        raise _ArgError(
            f"--plan changes nothing and asks no index or registry: drop {', '.join(acting)}"
        )
    plan = plan_for(cfg, connect_engine(), no_index=args.no_index)  # one per platform
    _out(plan.to_json() if args.json else "\n".join(plan.lines()))


def sbom_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nox -s sbom --", add_help=False)
    _debug_option(p)
    p.add_argument(
        "--output",
        metavar="FILE",
        help="write the CycloneDX 1.6 JSON SBOM to FILE (default: stdout)",
    )
    p.add_argument(
        "--provenance",
        metavar="FILE",
        help="also write the image's provenance (in-toto statement, SLSA provenance v1) to FILE",
    )
    p.add_argument("--tag", metavar="REF", help="describe the image REF instead of `image`")
    return p


def run_sbom(project_dir: Path, posargs: Sequence[str], log: Callable[[str], None]) -> None:
    """The SBOM (and, with --provenance, the provenance) of the image built last, from
    the records its build left on the host: no container runs when they are there."""
    from .supply import document
    from .supply.sbom import summary

    args = sbom_parser().parse_args(list(posargs))
    cfg = load_config(project_dir, {"image": args.tag} if args.tag else {})
    engine = connect_engine()
    info = engine.image(cfg.image)
    if info is None:
        raise WarpdriveError(
            f"there is no image {cfg.image} on this engine to describe",
            fix="build it first: `nox -s image`",
        )
    target = document.Target(cfg.image, info.id, info.labels, local=info.id)
    text = document.sbom_json(engine, cfg, target)
    _write(args.output, text)
    if args.provenance:
        _write(args.provenance, document.provenance_json(engine, cfg, target))
    if args.output:
        log(f"SBOM of {cfg.image} written to {args.output} ({summary(json.loads(text))})")


def _write(path: str | None, text: str) -> None:
    if not path or path == "-":
        sys.stdout.write(text)
        return
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise WarpdriveError(
            f"cannot write {path}: {exc.strerror or exc}", fix="name a file in a writable directory"
        ) from exc


def doctor_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nox -s doctor --", add_help=False)
    _debug_option(p)
    p.add_argument("--json", action="store_true", help="one JSON document (for CI)")
    p.add_argument("--cache-from", metavar="REF", help="also check the login for REF")
    return p


def run_doctor(project_dir: Path, posargs: Sequence[str], log: Callable[[str], None]) -> None:
    """One line per check (doctor.py); a WarpdriveError (the session fails) when one
    says a build would fail."""
    from .doctor import diagnose

    args = doctor_parser().parse_args(list(posargs))
    if args.cache_from:
        check_image_ref(args.cache_from, "--cache-from")
    report = diagnose(project_dir, connect_engine, args.cache_from)
    _out(report.to_json() if args.json else "\n".join(c.line() for c in report.checks))
    if report.failed:
        names = ", ".join(c.name for c in report.failed)
        raise WarpdriveError(
            f"doctor: a build would fail ({names})", fix=report.failed[0].fix or None
        )


def _bound_caches(cfg: Config, engine: Engine, image_id: str | None) -> None:
    """After a build: the host caches and (``image_id``: the image a build that made a
    deps layer just built) this app's deps images kept under their bounds (the volume's
    is kept by the builder); one line for each that freed something."""
    from .wheelhouse.cache_bounds import bound_host_caches, prune_deps_images

    try:
        lines = [bound_host_caches(cfg.cache_max_size)]
        if image_id is not None:
            lines.append(prune_deps_images(engine, cfg, image_id))
    except WarpdriveError as exc:  # the build succeeded: a bound that failed only warns
        lines = [f"warpdrive: warning: the caches were not pruned: {exc.message}"]
    for line in lines:
        if line:
            _out(line)


def _registry_image(ref: str) -> None:
    """--push-only builds in a registry: the image ref must name one."""
    if named_registry(ref) is None:
        raise _ArgError(
            f"--push-only builds the image in a registry, and the image ref {ref!r} names "
            "none: set `image` in [tool.warpdrive] (or --tag) to REGISTRY/NAME[:TAG], "
            "e.g. ghcr.io/me/app:latest or 127.0.0.1:5000/app"
        )


def _push_grown_wheelhouse(cfg: Config, engine: Engine, built: WheelhouseResult | None) -> None:
    """With `wheelhouse-image` set, `image -- --push` also pushes the wheels this build
    added to the wheelhouse (a layer of them on the wheelhouse image), so the next fresh
    runner finds them: a CI pipeline needs one command. Nothing when no wheel was added;
    a refused push is a warning (the image is pushed; the next run builds them again)."""
    if not cfg.wheelhouse_image or built is None or not built.new:
        return
    from .wheelhouse.build import read_manifest
    from .wheelhouse.image import push_wheelhouse
    from .wheelhouse.transfer import Wheelhouse

    wh = Wheelhouse(cfg.volume, built.key, built.builder_id, cfg.python)
    manifest = built.manifest or read_manifest(engine, cfg.volume, built.key, built.builder_id)
    try:
        push_wheelhouse(engine, wh, cfg.wheelhouse_image, manifest, _out)
    except WarpdriveError as exc:
        _out(f"warpdrive: warning: the wheelhouse image was not updated: {exc.message}")
        if exc.fix:
            _out(f"  fix: {exc.fix}")


def run_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nox -s run --", add_help=False)
    _debug_option(p)
    p.add_argument("--port", type=int, default=8080, help="host port (default 8080)")
    p.add_argument(
        "--host",
        metavar="ADDRESS",
        help="publish the port on ADDRESS (default 127.0.0.1: this machine only; "
        "0.0.0.0: every network it is on)",
    )
    p.add_argument(
        "--env",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a variable for the container (repeatable)",
    )
    p.add_argument(
        "--env-file",
        metavar="FILE",
        action="append",
        default=[],
        help="variables for the container, KEY=VALUE per line (# comments), as "
        "`docker run --env-file` reads them",
    )
    p.add_argument("--detach", action="store_true", help="leave it running")
    p.add_argument(
        "--watch",
        action="store_true",
        help="build, run, and on every saved change the image leaves in: build again, "
        "start the new container, switch the port to it once it answers, stop the old "
        "(the port never refuses a connection; a failed build keeps the old one serving)",
    )
    p.add_argument("--name", help="container name (default <name>-run)")
    p.add_argument("--tag", metavar="REF", help="run REF instead of `image`")
    _platform_option(p)
    return p


def serve_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nox -s serve --", add_help=False)
    _debug_option(p)
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--reload", action="store_true", help="restart on code changes")
    return p


def run_container(project_dir: Path, posargs: Sequence[str], log: Callable[[str], None]) -> None:
    from .run import RunOptions, run, run_env

    args = run_parser().parse_args(list(posargs))
    if args.watch and args.detach:
        raise _ArgError("--watch stays in the foreground: drop --detach")
    if args.watch and args.platform:
        raise _ArgError("--watch builds for the engine's own platform: drop --platform")
    cfg = load_config(project_dir, {"image": args.tag} if args.tag else {})
    # one connection: --watch sweeps what killed runs left first (it starts containers)
    engine, host = connect(_out) if args.watch else connect_engine(), ""
    # --platform, or `platforms`' only one: on the engine that built it (multiarch.run_on)
    one = args.platform or ("" if args.watch or len(cfg.platforms) != 1 else cfg.platforms[0])
    if one:
        from .multiarch.build import run_on
        from .platform import parse_platform

        cfg, engine, host = run_on(cfg, engine, parse_platform(str(one)), _out)
    files = [project_dir / f for f in args.env_file]  # relative to the app, as nox runs
    env = run_env(files, args.env)
    options = RunOptions(args.port, args.host, env, args.name, host or None)
    if args.watch:
        from .watch import watch_run

        watch_run(project_dir, {"image": args.tag} if args.tag else {}, engine, _out, options)
        return
    run(cfg, engine, _out, options, detach=args.detach)


def serve_plan(
    project_dir: Path, posargs: Sequence[str]
) -> tuple[list[list[str]], dict[str, str], list[str]]:
    """What `serve` installs (pip argument lists), its environment and the command: the
    image's own launcher, run from this package, in the session's virtualenv."""
    from .config import start_config
    from .runtime import start as launcher
    from .wheelhouse.build import requirements_for

    args = serve_parser().parse_args(list(posargs))
    cfg = load_config(project_dir)
    reqs = requirements_for(cfg)
    installs: list[list[str]] = []
    if reqs.locked_from:
        # the lock's pins (selected for this host, where serve runs), and the project
        installs.append([f"{p.name}=={p.version}" for p in reqs.locked])
        if reqs.project is not None:
            installs.append(["-e" if reqs.project.editable else "", str(reqs.project.root)])
            installs[-1] = [a for a in installs[-1] if a]
        installs += [[str(m.root)] for m in reqs.members]  # other workspace members
    else:
        installs = [["-r", str(f)] for f in cfg.requirement_files]
        if cfg.dependencies:
            installs.append(list(cfg.dependencies))
    if reqs.extra:
        installs.append(list(reqs.extra))
    installs = [i for i in installs if i]
    env = {"PORT": str(args.port), "WARPDRIVE_START_CONFIG": json.dumps(start_config(cfg))}
    command = ["python", str(Path(launcher.__file__).resolve())]
    if args.reload:
        command.append("--reload")
    return installs, env, command


def _guard(
    session: Any,
    fn: Callable[[Path, Sequence[str], Callable[[str], None]], None],
    project_dir: Path | None,
    keyboard: bool = False,
) -> None:
    try:
        with signals_end_builds(keyboard):
            fn(project_dir or Path.cwd(), session.posargs, session.log)
    except Interrupted as exc:
        name = signal.Signals(exc.signum).name
        _out(
            f"warpdrive: interrupted by {name}: its containers and temporary volumes are "
            "removed, no tag moved, the wheelhouse keeps only complete wheels"
        )
        die_of(exc.signum)
    except _ArgError as exc:
        session.error(f"bad arguments: {exc}")
    except WarpdriveError as exc:
        _fail(session, str(exc), exc)
    except OSError as exc:  # a host write no caller named: the disk, if it is full
        full = host_disk_full(exc)
        if full is None:
            raise
        full.__cause__ = exc
        _fail(session, str(full), full)


def connect(out: Callable[[str], None]) -> Engine:
    """The engine, after removing what killed runs left on it (the second line of
    defence after the signal handlers: a SIGKILL cannot be handled)."""
    engine = connect_engine()
    removed = engine.sweep()
    if removed:
        out(f"warpdrive: removed {removed} leftovers of interrupted runs")
    return engine


def sessions(*, project_dir: str | Path | None = None, prefix: str = "") -> None:
    """Register the nox-warpdrive sessions in the calling noxfile.

    ``project_dir``: the app (default: the directory nox runs in, the noxfile's).
    ``prefix``: prepended to every session name, for noxfiles that already have an
    ``image`` session.
    """
    existing = nox.registry.get()
    for name in SESSION_NAMES:
        if prefix + name in existing:
            raise WarpdriveError(
                f"a nox session named {prefix + name!r} is already registered",
                fix='call nox_warpdrive.sessions(prefix="wd-") to register ours under other '
                "names, or rename yours",
            )
    root = Path(project_dir).resolve() if project_dir is not None else None

    def wheelhouse(session: Any) -> None:
        """Build every wheel the app needs inside the builder image, into the volume."""
        _guard(session, run_wheelhouse, root)

    def image(session: Any) -> None:
        """Build the app image from the wheelhouse (-- --no-index, -- --tag REF)."""
        _guard(session, run_image, root)

    def run(session: Any) -> None:
        """Run the built image, wait until it answers HTTP (-- --port N, -- --detach,
        -- --watch: rebuild and switch on every save)."""
        _guard(session, run_container, root, keyboard=True)

    def doctor(session: Any) -> None:
        """Check the setup: engine, images, volume, caches, logins (-- --json)."""
        _guard(session, run_doctor, root)

    def sbom(session: Any) -> None:
        """Write the image's CycloneDX SBOM (-- --output FILE, -- --provenance FILE)."""
        _guard(session, run_sbom, root)

    def serve(session: Any) -> None:
        """Run the app here as the image would: same launcher and server (-- --reload)."""
        directory = root or Path.cwd()
        try:
            installs, env, command = serve_plan(directory, session.posargs)
        except _ArgError as exc:
            session.error(f"bad arguments: {exc}")
        except WarpdriveError as exc:
            _fail(session, str(exc), exc)
        for args in installs:
            session.install(*args)
        session.chdir(str(directory))
        session.run(*command, env=env)

    nox.session(name=prefix + "wheelhouse", venv_backend="none", default=False)(wheelhouse)
    nox.session(name=prefix + "image", venv_backend="none", default=False)(image)
    nox.session(name=prefix + "run", venv_backend="none", default=False)(run)
    nox.session(name=prefix + "serve", default=False)(serve)
    nox.session(name=prefix + "doctor", venv_backend="none", default=False)(doctor)
    nox.session(name=prefix + "sbom", venv_backend="none", default=False)(sbom)
