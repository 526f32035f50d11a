"""What Django's collectstatic output can depend on, read from the app's own settings.

collectstatic copies what its finders find (the STATICFILES_DIRS, each installed app's
``static/`` directory) through the staticfiles storage. So its inputs are: the settings
module and every project module it imports (``from .base import *``, ``from x.y import
z``, ``import a.b``: found with ast, nothing of the app is imported), those directories,
the storage's own module when it is the project's, manage.py and the environment files.
A template, a view or a migration is none of these: editing one reuses the collected
files. Installed packages' static files are compared by their wheels (static.py).

Where the settings cannot be read that way (they run code that reads files or imports
by name, or compute a setting this reader cannot follow), every file of the source
counts: collectstatic reruns on any change, and the build says why.
"""

from __future__ import annotations

import ast
import contextlib
import posixpath
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..layout import APP_SRC
from ..source.context import Entry

#: calls after which a settings module's outcome depends on files or code that cannot
#: be followed: reading files, importing or running by name, listing directories
DYNAMIC_CALLS = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "__import__",
        "import_module",
        "include",  # django-split-settings
        "optional",
        "run_path",
        "execfile",
        "open",
        "read_text",
        "read_bytes",
        "glob",
        "iglob",
        "rglob",
        "listdir",
        "scandir",
        "iterdir",
        "walk",
        "globals",  # globals().update(...), globals()["X"] = ...
        "setattr",
        "vars",
    }
)
#: calls that read an environment file (python-dotenv, django-environ): the file counts
#: as an input when its path can be told (ENV_PATH_KEYWORDS: the keyword naming it)
ENV_CALLS = frozenset({"load_dotenv", "dotenv_values", "read_env"})
ENV_PATH_KEYWORDS = frozenset({"dotenv_path", "env_file"})
#: their keywords that do not change which file is read
ENV_OTHER_KEYWORDS = frozenset(
    {"override", "verbose", "interpolate", "encoding", "overwrite", "parse_comments"}
)
#: calls whose answer depends on which packages are installed (an added one counts)
PACKAGE_CALLS = frozenset(
    {"find_spec", "find_loader", "version", "distribution", "entry_points", "iter_modules"}
)
#: calls that only build a path or a list from what they are given
PURE_CALLS = frozenset(
    {
        "join",
        "dirname",
        "abspath",
        "realpath",
        "normpath",
        "Path",
        "PurePath",
        "PosixPath",
        "str",
        "resolve",
        "absolute",
        "joinpath",
        "fspath",
        "list",
        "tuple",
    }
)
#: the settings whose values decide what is collected
APPS, DIRS, FINDERS, STORAGE = (
    "INSTALLED_APPS",
    "STATICFILES_DIRS",
    "STATICFILES_FINDERS",
    "STORAGE",
)
WATCHED = {
    "INSTALLED_APPS": APPS,
    "STATICFILES_DIRS": DIRS,
    "STATICFILES_FINDERS": FINDERS,
    "STORAGES": STORAGE,
    "STATICFILES_STORAGE": STORAGE,
}
#: files read at every collectstatic whatever the settings say
ALWAYS = ("manage.py", ".warpdrive/environment", ".env")
#: what the storage settings may name for collectstatic to be a plain copy of each file
#: (no post-processing: a file's output is its source's bytes, at its path), the only
#: case a build re-collects incrementally (static.py): a hashing storage (Django's
#: ManifestStaticFilesStorage, WhiteNoise's CompressedManifestStaticFilesStorage)
#: rewrites other files' references and its manifest from every file
PLAIN_STORAGE = frozenset(
    {
        "default",
        "staticfiles",
        "BACKEND",
        "django.core.files.storage.FileSystemStorage",
        "django.contrib.staticfiles.storage.StaticFilesStorage",
    }
)
#: Django's default STATICFILES_FINDERS
PLAIN_FINDERS = frozenset(
    {
        "django.contrib.staticfiles.finders.FileSystemFinder",
        "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    }
)


class Dynamic(Exception):
    """The settings do something this reader cannot follow (the message says what)."""


@dataclass(frozen=True)
class StaticInputs:
    """The source paths collectstatic's output depends on: ``files`` (exact paths,
    present or not: a module added later must change the key) and ``dirs`` (everything
    below them). ``everything``: the settings could not be followed (``why``), every
    file counts. ``packages_exact``: the settings import packages that may be absent
    (``try: import x``), so an added package can change the output too."""

    files: frozenset[str] = frozenset()
    dirs: tuple[str, ...] = ()
    everything: bool = False
    why: str = ""
    packages_exact: bool = False
    #: the settings modules read (the settings module and those it imports)
    modules: tuple[str, ...] = ()
    #: collectstatic is a plain copy (PLAIN_STORAGE, PLAIN_FINDERS, no prefixed
    #: STATICFILES_DIRS entry): a changed file changes only its own output
    plain_copy: bool = False

    def matters(self, relpath: str) -> bool:
        return self.everything or relpath in self.files or relpath.startswith(self.dirs)


def module_files(module: str) -> tuple[str, str]:
    """The two paths a dotted module can have in the tree."""
    base = module.replace(".", "/")
    return base + ".py", base + "/__init__.py"


class _Tree:
    """The source as the image has it: which paths exist, and the text of .py files."""

    def __init__(self, root: Path, paths: Collection[str]) -> None:
        self.root, self.paths = root, paths

    def module_file(self, module: str) -> str | None:
        return next((p for p in module_files(module) if p in self.paths), None)

    def parse(self, relpath: str) -> ast.Module:
        try:
            return ast.parse((self.root / relpath).read_text(encoding="utf-8"), relpath)
        except (OSError, SyntaxError, ValueError) as exc:
            raise Dynamic(f"{relpath} cannot be read ({exc.__class__.__name__})") from exc

    def is_project(self, module: str) -> bool:
        """Whether a dotted name is (or would be) a module of the app's own tree: its
        top-level package or module is in the tree."""
        top = module.split(".", 1)[0]
        return bool(top) and any(p in self.paths for p in module_files(top))


def _imported(module: str, relpath: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The dotted names an import statement can load (``from a import b``: a, and a.b
    which may be a submodule)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    base = node.module or ""
    if node.level:
        package = module if relpath.endswith("__init__.py") else module.rpartition(".")[0]
        parts = package.split(".") if package else []
        if node.level - 1 > len(parts):
            return
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([base] if base else []))
    if base:
        yield base
    for alias in node.names:
        if alias.name != "*":
            yield f"{base}.{alias.name}" if base else alias.name


def _parents(module: str) -> Iterator[str]:
    parts = module.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


def _calls(relpath: str, node: ast.Call) -> str:
    """What a call that stops the reader is, for its Dynamic's message."""
    return f"{relpath} line {node.lineno} calls {_call_name(node)}()"


def _call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def _catches_import_error(node: ast.Try) -> bool:
    caught = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
    for handler in node.handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(k is None or (isinstance(k, ast.Name) and k.id in caught) for k in kinds):
            return True
    return False


@dataclass
class _Closure:
    """The settings module and the project modules it imports, parsed."""

    trees: dict[str, ast.Module] = field(default_factory=dict)
    files: set[str] = field(default_factory=set)
    packages_exact: bool = False
    #: (module's path, call) of each environment file read (ENV_CALLS), also when not
    #: ``strict``
    env_reads: list[tuple[str, ast.Call]] = field(default_factory=list)


def settings_closure(tree: _Tree, settings: str, strict: bool = True) -> _Closure:
    """Every project module the settings module imports, transitively (and their
    packages' __init__.py, which importing them runs). Raises Dynamic (``strict``: also
    for code that cannot be followed; manage.py's is not, its `load_dotenv()` reads a
    .env the image leaves out unless asked, and then counts)."""
    found = _Closure()
    todo, seen = [settings], set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        found.files.update(module_files(module))  # present or not: adding one counts
        for parent in _parents(module):
            found.files.add(module_files(parent)[1])
        relpath = tree.module_file(module)
        if relpath is None:
            continue
        parsed = tree.parse(relpath)
        found.trees[relpath] = parsed
        for node in ast.walk(parsed):
            if isinstance(node, ast.Call) and _call_name(node) in ENV_CALLS:
                found.env_reads.append((relpath, node))
            if strict and isinstance(node, ast.Call) and _call_name(node) in DYNAMIC_CALLS:
                raise Dynamic(_calls(relpath, node))
            if isinstance(node, ast.Call) and _call_name(node) in PACKAGE_CALLS:
                found.packages_exact = True
            if isinstance(node, ast.Try) and _catches_import_error(node):
                found.packages_exact = found.packages_exact or _imports_package(tree, node)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                todo += [m for m in _imported(module, relpath, node) if tree.is_project(m)]
    return found


def _imports_package(tree: _Tree, node: ast.Try) -> bool:
    """Whether a try block imports something not of the project (a package that may be
    installed or not)."""
    for child in ast.walk(ast.Module(body=node.body, type_ignores=[])):
        if isinstance(child, ast.Import):
            if any(not tree.is_project(a.name) for a in child.names):
                return True
        elif (
            isinstance(child, ast.ImportFrom)
            and not child.level
            and not tree.is_project(child.module or "")
        ):
            return True
    return False


def _setting_of(target: ast.expr) -> str | None:
    """The watched setting an assignment target writes (``STORAGES["x"]["y"] = ...``
    writes STORAGES)."""
    while isinstance(target, ast.Subscript):
        target = target.value
    return WATCHED.get(target.id) if isinstance(target, ast.Name) else None


def setting_values(trees: Collection[ast.Module]) -> dict[str, list[ast.expr]]:
    """Every expression a watched setting is given anywhere in the settings modules
    (assigned, added to, appended, inserted, updated: all branches count)."""
    values: dict[str, list[ast.expr]] = {}
    for parsed in trees:
        for node in ast.walk(parsed):
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, (ast.Tuple, ast.List)) and any(
                        _setting_of(t) for t in target.elts
                    ):
                        raise Dynamic(f"a setting is unpacked at line {node.lineno}")
                    name = _setting_of(target)
                    if name and node.value is not None:
                        values.setdefault(name, []).append(node.value)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = _setting_of(node.func.value)
                if name:
                    values.setdefault(name, []).extend(node.args)
    return values


def assignments(trees: Collection[ast.Module]) -> dict[str, list[ast.expr]]:
    """Every value each plain name is assigned in the settings modules."""
    found: dict[str, list[ast.expr]] = {}
    for parsed in trees:
        for node in ast.walk(parsed):
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name) and node.value is not None:
                        found.setdefault(t.id, []).append(node.value)
    return found


@dataclass
class _Strings:
    """The string constants an expression can evaluate from (names followed through
    their assignments); raises Dynamic on anything else."""

    names: dict[str, list[ast.expr]]
    modules: set[str]
    seen: set[str] = field(default_factory=set)

    def of(self, node: ast.expr) -> list[str]:
        if isinstance(node, ast.Constant):
            return [node.value] if isinstance(node.value, str) else []
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            return [s for e in node.elts for s in self.of(e)]
        if isinstance(node, ast.Dict):
            return [s for e in [*node.keys, *node.values] if e is not None for s in self.of(e)]
        if isinstance(node, ast.Starred):
            return self.of(node.value)
        if isinstance(node, ast.JoinedStr):
            return [s for v in node.values for s in self.of(v)]
        if isinstance(node, ast.FormattedValue):
            return self.of(node.value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Div)):
            return self.of(node.left) + self.of(node.right)
        if isinstance(node, ast.IfExp):
            return self.of(node.body) + self.of(node.orelse)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            return self.of(node.value)  # a part of a setting: all of it counts
        if isinstance(node, ast.Attribute):  # Path(...).parent, os.sep
            return [] if isinstance(node.value, ast.Name) else self.of(node.value)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Call) and _call_name(node) in PURE_CALLS:
            inner = node.func.value if isinstance(node.func, ast.Attribute) else None
            head = [] if inner is None or isinstance(inner, ast.Name) else self.of(inner)
            return head + [s for a in node.args for s in self.of(a)]
        raise Dynamic(f"line {getattr(node, 'lineno', '?')}: {ast.unparse(node)[:60]}")

    def name(self, node: ast.Name) -> list[str]:
        if node.id == "__file__" or node.id in self.seen:
            return []
        if node.id not in self.names:
            if node.id in self.modules:
                return []
            raise Dynamic(f"line {node.lineno}: {node.id} is not set in the settings")
        self.seen.add(node.id)
        try:
            return [s for v in self.names[node.id] for s in self.of(v)]
        finally:
            self.seen.discard(node.id)


def imported_names(trees: Collection[ast.Module]) -> set[str]:
    """Names bound by `import x` / `import x.y` (modules, not values)."""
    return {
        (a.asname or a.name).split(".")[0]
        for parsed in trees
        for node in ast.walk(parsed)
        if isinstance(node, ast.Import)
        for a in node.names
    }


def _elements(values: list[ast.expr], strings: _Strings) -> Iterator[ast.expr]:
    """The entries a list setting is made of (lists, concatenations and the names
    they are made from flattened); a number (``insert``'s index) is no entry."""
    todo, seen = list(values), set()
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            todo += node.elts
        elif isinstance(node, ast.Starred):
            todo.append(node.value)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            todo += [node.left, node.right]
        elif isinstance(node, ast.IfExp):
            todo += [node.body, node.orelse]
        elif isinstance(node, ast.Name) and node.id in strings.names and node.id not in seen:
            seen.add(node.id)
            todo += strings.names[node.id]
        elif not (isinstance(node, ast.Constant) and not isinstance(node.value, str)):
            yield node


def _path_suffix(text: str) -> str:
    """A path's parts below the app's directory ("" for the app's directory itself):
    what a STATICFILES_DIRS entry's literal parts name in the tree."""
    if text.startswith(APP_SRC + "/") or text == APP_SRC:
        text = text[len(APP_SRC) :]
    parts = [p for p in posixpath.normpath("/" + text).split("/") if p not in ("", ".", "..")]
    return "/".join(parts)


@dataclass
class _Paths:
    """A path expression evaluated as the settings would, where it is made only of
    literals, ``__file__``, names set to such and path functions (os.path, pathlib):
    the absolute path in the image, else None. ``origin``: each node's module."""

    names: dict[str, list[ast.expr]]
    origin: dict[int, str]

    def of(self, node: ast.expr, depth: int = 0) -> str | None:
        if depth > 30:
            return None
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, ast.Name):
            if node.id == "__file__" and id(node) in self.origin:
                return f"{APP_SRC}/{self.origin[id(node)]}"
            found = {self.of(v, depth + 1) for v in self.names.get(node.id, [])}
            return found.pop() if len(found) == 1 else None
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            base = self.of(node.value, depth + 1)
            return posixpath.dirname(base) if base is not None else None
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Div, ast.Add)):
            left, right = self.of(node.left, depth + 1), self.of(node.right, depth + 1)
            if left is None or right is None:
                return None
            return posixpath.join(left, right) if isinstance(node.op, ast.Div) else left + right
        if isinstance(node, ast.JoinedStr):
            parts = [
                self.of(v.value if isinstance(v, ast.FormattedValue) else v, depth + 1)
                for v in node.values
            ]
            return None if None in parts else "".join(p for p in parts if p is not None)
        return self._call(node, depth) if isinstance(node, ast.Call) else None

    def _call(self, node: ast.Call, depth: int) -> str | None:
        name = _call_name(node)
        args = [self.of(a, depth + 1) for a in node.args]
        if None in args or node.keywords:
            return None
        values = [a for a in args if a is not None]
        if name in ("resolve", "absolute", "joinpath") and isinstance(node.func, ast.Attribute):
            base = self.of(node.func.value, depth + 1)
            return None if base is None else posixpath.normpath(posixpath.join(base, *values))
        if name in ("join", "Path", "PurePath", "PosixPath") and values:
            return posixpath.join(*values)
        if len(values) != 1:
            return None
        if name == "dirname":
            return posixpath.dirname(values[0])
        if name in ("abspath", "realpath", "normpath"):
            return posixpath.normpath(posixpath.join(APP_SRC, values[0]))
        return values[0] if name in ("str", "fspath") else None


def env_files(reads: Sequence[tuple[str, ast.Call]], paths: _Paths) -> set[str]:
    """The environment files the settings read (``load_dotenv(BASE_DIR / ".env")``,
    ``environ.Env.read_env(path)``): each one's path in the tree, an input like the
    settings themselves, since what it sets can change them. Without a path (or with
    ``find_dotenv()``), python-dotenv looks for ``.env`` from the calling module's
    directory up and django-environ beside it or one up: every such ``.env`` of the tree
    counts. Raises Dynamic for a file this cannot tell, or one outside the tree."""
    found: set[str] = set()
    for relpath, node in reads:
        why = _calls(relpath, node)
        named = [k for k in node.keywords if k.arg in ENV_PATH_KEYWORDS]
        if any(k.arg not in ENV_PATH_KEYWORDS | ENV_OTHER_KEYWORDS for k in node.keywords):
            raise Dynamic(f"{why} with arguments this reader cannot follow")
        arg = node.args[0] if node.args else (named[0].value if named else None)
        if arg is None or _is_find_dotenv(arg):
            here = posixpath.dirname(relpath)
            found.add(posixpath.join(here, ".env"))
            found.update(posixpath.join(parent, ".env") for parent in _dir_parents(here))
            continue
        path = paths.of(arg)
        path = posixpath.normpath(posixpath.join(APP_SRC, path)) if path is not None else None
        if path is None or not path.startswith(APP_SRC + "/"):
            raise Dynamic(f"{why} on a file this reader cannot tell: {ast.unparse(arg)[:60]}")
        found.add(path[len(APP_SRC) + 1 :])
    return found


def _manage_inputs(manage: _Closure) -> set[str]:
    """manage.py's own inputs: its project modules, and each environment file it reads
    whose path can be told (one that cannot is left out, as manage.py's other code is:
    its usual `load_dotenv()` reads the .env the image leaves out unless asked)."""
    files = set(manage.files)
    paths = _Paths(assignments(list(manage.trees.values())), _origin(manage))
    for read in manage.env_reads:
        with contextlib.suppress(Dynamic):
            files |= env_files([read], paths)
    return files


def _origin(closure: _Closure) -> dict[int, str]:
    """Each AST node of the closure's modules -> its module's path (``__file__`` there)."""
    return {id(n): rel for rel, parsed in closure.trees.items() for n in ast.walk(parsed)}


def _is_find_dotenv(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and _call_name(node) == "find_dotenv"
        and not node.args
        and not node.keywords
    )


def _dir_parents(relpath: str) -> Iterator[str]:
    """The directories above a directory of the tree, up to the tree's root ("")."""
    while relpath:
        relpath = posixpath.dirname(relpath)
        yield relpath


def finder_dirs(
    values: list[ast.expr], strings: _Strings, paths: _Paths, kinds: Mapping[str, str]
) -> set[str]:
    """The tree's directories a STATICFILES_DIRS names: each entry evaluated where it
    can be (``os.path.join(PROJECT_DIR, "static")``), else its literal parts ("static")
    matched as the end of a directory's path, every match counted. An entry that is
    the project directory itself, or has no literal part, makes the whole tree count."""
    found: set[str] = set()
    for entry in _elements(values, strings):
        path = paths.of(entry)
        if path is not None:
            path = posixpath.normpath(posixpath.join(APP_SRC, path))
            if path == APP_SRC:
                raise Dynamic(f"STATICFILES_DIRS names the project directory: {ast.unparse(entry)}")
            if path.startswith(APP_SRC + "/"):
                found.add(path[len(APP_SRC) + 1 :])
            continue
        suffixes = {s for s in map(_path_suffix, strings.of(entry)) if s}
        if not suffixes:
            raise Dynamic(f"STATICFILES_DIRS has an entry without a name: {ast.unparse(entry)}")
        dirs = [p for p, kind in kinds.items() if kind == "dir"]  # rare: read only then
        for suffix in suffixes:
            found.update(d for d in dirs if d == suffix or d.endswith("/" + suffix))
    return found


def app_packages(tree: _Tree, name: str) -> tuple[set[str], set[str]]:
    """(the project packages an INSTALLED_APPS entry makes apps of, the paths that
    decide it): a module ("blog"), or an AppConfig ("blog.apps.BlogConfig": its module's
    package and the `name` it sets)."""
    module, _, _ = name.rpartition(".")
    decides = set(module_files(name)) | (set(module_files(module)) if module else set())
    if tree.module_file(name):
        return {name}, decides
    relpath = tree.module_file(module) if module else None
    if relpath is None:
        return set(), decides
    packages = {module.rpartition(".")[0]} if "." in module else set()
    for node in ast.walk(tree.parse(relpath)):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and any(isinstance(t, ast.Name) and t.id == "name" for t in node.targets)
        ):
            value = node.value.value
            if isinstance(value, str) and tree.module_file(value):
                packages.add(value)
    return packages, decides


def _app_inputs(tree: _Tree, apps: list[str]) -> tuple[set[str], set[str]]:
    """(files, directories) of the project's own installed apps: the app's module,
    package and apps.py (its AppConfig), its static/ directory."""
    files: set[str] = set()
    dirs: set[str] = set()
    for name in apps:
        if not tree.is_project(name):
            continue
        packages, decides = app_packages(tree, name)
        files |= decides
        for package in packages:
            relpath = tree.module_file(package) or ""
            here = posixpath.dirname(relpath)
            files.update({relpath, posixpath.join(here, "apps.py")})
            dirs.add(posixpath.join(here, "static"))
    return files, dirs


def _follow(tree: _Tree, settings: str, kinds: Mapping[str, str]) -> StaticInputs:
    """The inputs when the settings can be read (raises Dynamic when they cannot)."""
    closure = settings_closure(tree, settings)
    trees = list(closure.trees.values())
    values = setting_values(trees)
    strings = _Strings(assignments(trees), imported_names(trees))
    for finder in [s for v in values.get(FINDERS, []) for s in strings.of(v)]:
        if tree.is_project(finder) or finder.endswith("DefaultStorageFinder"):
            raise Dynamic(f"STATICFILES_FINDERS names {finder}")
    files = set(closure.files) | set(ALWAYS)
    # the project modules manage.py imports run before the settings, too (one it cannot
    # parse: manage.py itself counts, a fix to it reruns collectstatic)
    with contextlib.suppress(Dynamic):
        files |= _manage_inputs(settings_closure(tree, "manage", strict=False))
    for backend in [s for v in values.get(STORAGE, []) for s in strings.of(v)]:
        if "." in backend and tree.is_project(backend):
            storage = settings_closure(tree, backend.rpartition(".")[0])
            if storage.env_reads:
                relpath, node = storage.env_reads[0]
                raise Dynamic(_calls(relpath, node))
            files |= storage.files
    apps = []
    for entry in _elements(values.get(APPS, []), strings):
        named = strings.of(entry)
        if not named:
            raise Dynamic(f"INSTALLED_APPS has an entry without a name: {ast.unparse(entry)}")
        apps += named
    app_files, app_dirs = _app_inputs(tree, apps)
    paths = _Paths(strings.names, _origin(closure))
    files |= env_files(closure.env_reads, paths)
    dirs = app_dirs | finder_dirs(values.get(DIRS, []), strings, paths, kinds)
    # a static directory's own entry counts too: a symbolic link there is refused (choose)
    files |= {d for d in dirs if d}
    prefixes = tuple(sorted(d.rstrip("/") + "/" for d in dirs if d))
    return StaticInputs(
        files=frozenset(files | app_files),
        dirs=prefixes,
        packages_exact=closure.packages_exact,
        modules=tuple(sorted(closure.trees)),
        plain_copy=plain_copy(values, strings),
    )


def plain_copy(values: Mapping[str, list[ast.expr]], strings: _Strings) -> bool:
    """Whether collectstatic copies each file as it is, with nothing made from the set:
    the storage and finders Django's defaults (or not set), and no STATICFILES_DIRS entry
    a ("prefix", path) pair (it moves the files under the prefix)."""
    try:
        storage = {s for v in values.get(STORAGE, []) for s in strings.of(v)}
        finders = {s for v in values.get(FINDERS, []) for s in strings.of(v)}
        pairs = _pairs(values.get(DIRS, []), strings)
    except Dynamic:
        return False
    return storage <= PLAIN_STORAGE and finders <= PLAIN_FINDERS and not pairs


def _pairs(values: list[ast.expr], strings: _Strings) -> bool:
    """Whether a STATICFILES_DIRS expression (or a name it uses) has a ("prefix", path)
    pair in it: any two-element tuple or list that starts with a string literal (a false
    alarm only costs a full collectstatic)."""
    todo, seen = list(values), set()
    while todo:
        for node in ast.walk(todo.pop()):
            if (
                isinstance(node, (ast.Tuple, ast.List))
                and len(node.elts) == 2
                and isinstance(node.elts[0], ast.Constant)
                and isinstance(node.elts[0].value, str)
            ):
                return True
            if isinstance(node, ast.Name) and node.id in strings.names and node.id not in seen:
                seen.add(node.id)
                todo += strings.names[node.id]
    return False


def static_inputs_of(root: Path, settings: str | None, kinds: Mapping[str, str]) -> StaticInputs:
    """collectstatic's inputs for the settings module ``settings`` of the source at
    ``root`` (``kinds``: every archived path relative to it, and its kind); every file
    when the settings cannot be followed (``why`` says what stopped it)."""
    if not settings:
        return StaticInputs(everything=True, why="the Django settings module is not known")
    tree = _Tree(root, kinds)
    if tree.module_file(settings) is None:
        return StaticInputs(everything=True, why=f"{settings} is not a module of the source")
    try:
        return _follow(tree, settings, kinds)
    except Dynamic as exc:
        return StaticInputs(everything=True, why=str(exc))


def choose(
    root: Path,
    settings: str | None,
    entries: Sequence[Entry],
    kinds: Mapping[str, str],
    skip: Collection[str] = frozenset(),
) -> tuple[StaticInputs, list[Entry]]:
    """(collectstatic's inputs, the archived paths among them): ``entries`` every
    archived path, ``kinds`` the same as relpath -> kind (a view of the source index,
    not a copy: trees have 100k files); ``skip``: files known not to matter
    (requirement files, pyproject.toml: packages are compared by their wheels). A
    symbolic link among the inputs can bring in files from anywhere: then every file
    counts."""
    inputs = static_inputs_of(root, settings, kinds)
    chosen = _chosen(entries, inputs, skip)
    link = next((e.relpath for e in chosen if e.kind == "symlink"), None)
    if link is not None and not inputs.everything:
        why = f"{link}, an input of collectstatic, is a symbolic link"
        inputs = StaticInputs(everything=True, why=why)
        chosen = _chosen(entries, inputs, skip)
    return inputs, chosen


def _chosen(entries: Sequence[Entry], inputs: StaticInputs, skip: Collection[str]) -> list[Entry]:
    if inputs.everything:
        return [e for e in entries if e.relpath not in skip]
    files, dirs = inputs.files, inputs.dirs
    return [
        e
        for e in entries
        if (e.relpath in files or e.relpath.startswith(dirs)) and e.relpath not in skip
    ]
