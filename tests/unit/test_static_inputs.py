"""Which source files are collectstatic's inputs, read from the app's settings
(static_inputs.py): what can change the collected files counts, nothing else does, and
settings that cannot be followed make every file count."""

from __future__ import annotations

from pathlib import Path

import pytest
from unit_support import write

from nox_warpdrive.build.static_inputs import StaticInputs, choose
from nox_warpdrive.source.context import collect, load_ignore_rules

BASE = """\
import os
from pathlib import Path

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_DIR = Path(__file__).resolve().parent.parent.parent
INSTALLED_APPS = [
    "shop.catalog",
    "django.contrib.staticfiles",
]
MIDDLEWARE = ["django.middleware.security.SecurityMiddleware"]
STATICFILES_DIRS = [os.path.join(PROJECT_DIR, "static")]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
"""
PRODUCTION = """\
import os

from .base import *

DEBUG = False
MIDDLEWARE.append("whitenoise.middleware.WhiteNoiseMiddleware")
STORAGES["staticfiles"]["BACKEND"] = "whitenoise.storage.CompressedManifestStaticFilesStorage"
if "S3" in os.environ:
    INSTALLED_APPS.append("storages")
"""


def split_site(root: Path) -> None:
    """A project laid out as Wagtail's demo is: settings/base.py, dev.py, production.py."""
    write(root, "manage.py", "import os\n")
    write(root, "shop/__init__.py", "")
    write(root, "shop/settings/__init__.py", "")
    write(root, "shop/settings/base.py", BASE)
    write(root, "shop/settings/production.py", PRODUCTION)
    write(root, "shop/settings/dev.py", "from .base import *\nDEBUG = True\n")
    write(root, "shop/static/css/site.css", "body {}\n")
    write(root, "shop/templates/base.html", "<html></html>\n")
    write(root, "shop/urls.py", "urlpatterns = []\n")
    write(root, "shop/catalog/__init__.py", "")
    write(root, "shop/catalog/apps.py", "\n")
    write(root, "shop/catalog/models.py", "\n")
    write(root, "shop/catalog/views.py", "\n")
    write(root, "shop/catalog/migrations/0001_initial.py", "\n")
    write(root, "shop/catalog/static/catalog/app.js", "1;\n")
    write(root, "shop/catalog/templates/catalog/list.html", "<ul></ul>\n")
    write(root, "shop/blog/__init__.py", "")
    write(root, "shop/blog/static/blog/blog.css", "p {}\n")


def inputs(root: Path, settings: str | None = "shop.settings.production") -> StaticInputs:
    entries = collect(root, load_ignore_rules(root))
    return choose(root, settings, entries, {e.relpath: e.kind for e in entries})[0]


def counted(root: Path, settings: str = "shop.settings.production") -> set[str]:
    found = inputs(root, settings)
    entries = collect(root, load_ignore_rules(root))
    return {e.relpath for e in entries if e.kind == "file" and found.matters(e.relpath)}


def test_split_settings_follow_the_star_import(tmp_path: Path) -> None:
    split_site(tmp_path)
    found = inputs(tmp_path)
    assert not found.everything, found.why
    assert counted(tmp_path) == {
        "manage.py",
        "shop/__init__.py",
        "shop/settings/__init__.py",
        "shop/settings/base.py",  # imported with `from .base import *`
        "shop/settings/production.py",
        "shop/static/css/site.css",  # STATICFILES_DIRS
        "shop/catalog/__init__.py",  # an installed app of the project
        "shop/catalog/apps.py",
        "shop/catalog/static/catalog/app.js",
    }
    assert found.modules == ("shop/settings/base.py", "shop/settings/production.py")
    assert not found.packages_exact


@pytest.mark.parametrize(
    "relpath",
    [
        "shop/templates/base.html",
        "shop/catalog/templates/catalog/list.html",
        "shop/catalog/views.py",
        "shop/catalog/models.py",
        "shop/catalog/migrations/0001_initial.py",
        "shop/urls.py",
        "shop/settings/dev.py",  # another settings module, not imported by production
        "shop/blog/static/blog/blog.css",  # an app that is not installed
    ],
)
def test_what_cannot_change_the_collected_files(tmp_path: Path, relpath: str) -> None:
    split_site(tmp_path)
    assert not inputs(tmp_path).matters(relpath)


def test_enabling_an_app_in_the_base_settings(tmp_path: Path) -> None:
    """The blog's files count once base.py (imported by production.py) names it."""
    split_site(tmp_path)
    write(
        tmp_path,
        "shop/settings/base.py",
        BASE.replace('"shop.catalog",', '"shop.catalog",\n    "shop.blog",'),
    )
    assert inputs(tmp_path).matters("shop/blog/static/blog/blog.css")


def test_installed_apps_made_of_names_and_added_to(tmp_path: Path) -> None:
    split_site(tmp_path)
    write(
        tmp_path,
        "shop/settings/base.py",
        BASE
        + 'LOCAL_APPS = ["shop.blog.apps.BlogConfig"]\n'
        + "INSTALLED_APPS = DJANGO_APPS + LOCAL_APPS\n"
        + 'DJANGO_APPS = ("django.contrib.admin",)\n'
        + 'INSTALLED_APPS += ["shop.news"]\n',
    )
    write(tmp_path, "shop/blog/apps.py", "class BlogConfig:\n    name = 'shop.blog'\n")
    write(tmp_path, "shop/news/__init__.py", "")
    write(tmp_path, "shop/news/static/news.css", "\n")
    found = inputs(tmp_path)
    assert not found.everything, found.why
    for relpath in (
        "shop/blog/static/blog/blog.css",
        "shop/blog/apps.py",
        "shop/news/static/news.css",
    ):
        assert found.matters(relpath), relpath


def test_imports_followed_within_the_project(tmp_path: Path) -> None:
    split_site(tmp_path)
    write(
        tmp_path,
        "shop/settings/production.py",
        PRODUCTION + "from shop.conf import paths\nimport shop.extra.more\nimport django\n",
    )
    write(tmp_path, "shop/conf/__init__.py", "")
    write(tmp_path, "shop/conf/paths.py", "from . import deeper\n")
    write(tmp_path, "shop/conf/deeper.py", "X = 1\n")
    write(tmp_path, "shop/extra/__init__.py", "")
    write(tmp_path, "shop/extra/more.py", "\n")
    got = counted(tmp_path)
    for relpath in (
        "shop/conf/__init__.py",
        "shop/conf/paths.py",  # `from x.y import z`, z a submodule
        "shop/conf/deeper.py",  # transitively
        "shop/extra/__init__.py",  # `import a.b` runs a/__init__.py
        "shop/extra/more.py",
    ):
        assert relpath in got, relpath


def test_a_module_added_later_counts(tmp_path: Path) -> None:
    """`try: from .local import *`: local.py absent today, but adding it must rerun."""
    split_site(tmp_path)
    write(
        tmp_path,
        "shop/settings/production.py",
        PRODUCTION + "try:\n    from .local import *\nexcept ImportError:\n    pass\n",
    )
    found = inputs(tmp_path)
    assert found.matters("shop/settings/local.py") and not found.packages_exact


def test_what_manage_py_imports_of_the_project_counts(tmp_path: Path) -> None:
    split_site(tmp_path)
    write(
        tmp_path, "manage.py", "import dotenv\nfrom shop.boot import setup\ndotenv.load_dotenv()\n"
    )
    write(tmp_path, "shop/boot.py", "def setup(): pass\n")
    found = inputs(tmp_path)
    assert not found.everything, found.why  # manage.py's load_dotenv() is not the settings'
    assert found.matters("shop/boot.py")


def test_an_environment_file_manage_py_reads_counts(tmp_path: Path) -> None:
    split_site(tmp_path)
    write(
        tmp_path,
        "manage.py",
        "import os\nfrom dotenv import load_dotenv\n"
        "load_dotenv(os.path.join(os.path.dirname(__file__), 'envs', 'build.env'))\n"
        "load_dotenv(os.environ['MORE'])\n",  # cannot be told: left out, as before
    )
    found = inputs(tmp_path)
    assert not found.everything, found.why
    assert found.matters("envs/build.env") and found.matters("manage.py")
    assert not found.matters("shop/templates/base.html")


def test_find_spec_makes_packages_count(tmp_path: Path) -> None:
    split_site(tmp_path)
    write(
        tmp_path,
        "shop/settings/production.py",
        PRODUCTION + "import importlib.util\n"
        "if importlib.util.find_spec('debug_toolbar'):\n"
        "    INSTALLED_APPS.append('debug_toolbar')\n",
    )
    assert inputs(tmp_path).packages_exact


def test_an_optional_package_makes_packages_count(tmp_path: Path) -> None:
    split_site(tmp_path)
    write(
        tmp_path,
        "shop/settings/production.py",
        PRODUCTION
        + "try:\n    import debug_toolbar\n    INSTALLED_APPS.append('debug_toolbar')\n"
        + "except ImportError:\n    pass\n",
    )
    assert inputs(tmp_path).packages_exact


@pytest.mark.parametrize(
    ("dirs", "counted_path", "not_counted"),
    [
        ('[BASE_DIR / "frontend" / "dist"]', "frontend/dist/app.js", "frontend/src/app.js"),
        ('[("vendor", os.path.join(BASE_DIR, "assets"))]', "assets/v.js", "frontend/src/app.js"),
        ('[f"{BASE_DIR}/assets"]', "assets/v.js", "frontend/dist/app.js"),
        ('["/opt/app-root/src/assets"]', "assets/v.js", "frontend/dist/app.js"),
    ],
)
def test_staticfiles_dirs_forms(
    tmp_path: Path, dirs: str, counted_path: str, not_counted: str
) -> None:
    split_site(tmp_path)
    write(tmp_path, "shop/settings/production.py", PRODUCTION + f"STATICFILES_DIRS = {dirs}\n")
    for relpath in ("frontend/dist/app.js", "frontend/src/app.js", "assets/v.js"):
        write(tmp_path, relpath, "1;\n")
    found = inputs(tmp_path)
    assert not found.everything, found.why
    assert found.matters(counted_path) and not found.matters(not_counted)


def test_a_custom_storage_of_the_project_counts(tmp_path: Path) -> None:
    split_site(tmp_path)
    write(
        tmp_path,
        "shop/settings/production.py",
        PRODUCTION + 'STORAGES["staticfiles"]["BACKEND"] = "shop.storage.MyStorage"\n',
    )
    write(tmp_path, "shop/storage.py", "from .hashing import h\n")
    write(tmp_path, "shop/hashing.py", "\n")
    found = inputs(tmp_path)
    assert found.matters("shop/storage.py") and found.matters("shop/hashing.py")


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ("SECRET = open('/run/secret').read()\n", "calls open()"),
        ("import importlib\nimportlib.import_module('shop.x')\n", "calls import_module()"),
        ("from split_settings.tools import include\ninclude('components/*.py')\n", "include()"),
        ("STATICFILES_DIRS = [BASE_DIR]\n", "STATICFILES_DIRS names the project directory"),
        (
            "STATICFILES_DIRS = [Path(os.environ['X']).parent]\n",
            "line",
        ),
        ("STATICFILES_DIRS = [os.environ.get('ASSETS')]\n", "os.environ.get"),
        ("INSTALLED_APPS += [f'shop.{x}' for x in NAMES]\n", "line"),
        ("STATICFILES_FINDERS = ['shop.finders.Mine']\n", "STATICFILES_FINDERS names"),
        ("globals()['INSTALLED_APPS'] = []\n", "calls globals()"),
        ("INSTALLED_APPS = APPS_FROM_ELSEWHERE\n", "APPS_FROM_ELSEWHERE is not set"),
        ("INSTALLED_APPS.append(os.environ['APP'])\n", "line"),
        ("INSTALLED_APPS.append(conf.APP)\n", "INSTALLED_APPS has an entry without a name"),
        ("STATICFILES_DIRS = [Path(conf.X).parent]\n", "STATICFILES_DIRS has an entry without"),
    ],
)
def test_settings_that_cannot_be_followed_make_everything_count(
    tmp_path: Path, extra: str, why: str
) -> None:
    split_site(tmp_path)
    write(tmp_path, "shop/settings/production.py", PRODUCTION + extra)
    found = inputs(tmp_path)
    assert found.everything and why in found.why, found.why
    assert found.matters("shop/templates/base.html")


@pytest.mark.parametrize(
    ("extra", "env_files"),
    [
        # MDN's LocalLibrary tutorial, as it is
        (
            "from dotenv import load_dotenv\n"
            "env_file = os.path.join(BASE_DIR, '.env')\n"
            "if os.path.exists(env_file):\n"
            "    load_dotenv(env_file)\n",
            {".env"},
        ),
        ("import dotenv\ndotenv.load_dotenv(BASE_DIR / 'conf' / 'site.env')\n", {"conf/site.env"}),
        (
            "import environ\nenviron.Env.read_env(os.path.join(PROJECT_DIR, '.env'))\n",
            {"shop/.env"},
        ),
        ("from dotenv import load_dotenv\nload_dotenv(dotenv_path='.env.build')\n", {".env.build"}),
        # no path: python-dotenv looks from the calling module's directory up
        (
            "from dotenv import load_dotenv, find_dotenv\n"
            "load_dotenv(find_dotenv(), override=True)\n",
            {"shop/settings/.env", "shop/.env", ".env"},
        ),
        ("import environ\nenviron.Env.read_env()\n", {"shop/settings/.env", "shop/.env", ".env"}),
    ],
)
def test_an_environment_file_the_settings_read_counts(
    tmp_path: Path, extra: str, env_files: set[str]
) -> None:
    """Reading a .env (python-dotenv, django-environ) is common in real settings: the
    file read counts, like the settings, and a template edit still reuses the files."""
    split_site(tmp_path)
    write(tmp_path, "shop/settings/production.py", PRODUCTION + extra)
    found = inputs(tmp_path)
    assert not found.everything, found.why
    for relpath in env_files:
        assert found.matters(relpath), relpath
    assert not found.matters("shop/templates/base.html")
    assert not found.matters("other/.env")


@pytest.mark.parametrize(
    "extra",
    [
        "from dotenv import load_dotenv\nload_dotenv(os.environ['ENV_FILE'])\n",
        "from dotenv import load_dotenv\nload_dotenv('/etc/site.env')\n",  # not in the tree
        "import io\nfrom dotenv import load_dotenv\nload_dotenv(stream=io.StringIO('A=1'))\n",
        "from dotenv import dotenv_values, find_dotenv\nX = dotenv_values(find_dotenv('a.env'))\n",
    ],
)
def test_an_environment_file_that_cannot_be_told_makes_everything_count(
    tmp_path: Path, extra: str
) -> None:
    split_site(tmp_path)
    write(tmp_path, "shop/settings/production.py", PRODUCTION + extra)
    found = inputs(tmp_path)
    assert found.everything and "shop/settings/production.py line" in found.why, found.why
    assert "dotenv" in found.why, found.why


def test_a_symbolic_link_in_a_static_directory(tmp_path: Path) -> None:
    split_site(tmp_path)
    write(tmp_path, "frontend/build/app.js", "1;\n")
    (tmp_path / "shop" / "static" / "build").symlink_to("../../frontend/build")
    found = inputs(tmp_path)
    assert found.everything and "shop/static/build, an input" in found.why, found.why
    assert found.matters("shop/templates/base.html")


def test_unknown_settings(tmp_path: Path) -> None:
    split_site(tmp_path)
    assert inputs(tmp_path, None).everything
    missing = inputs(tmp_path, "othersite.settings")
    assert missing.everything and "not a module of the source" in missing.why
