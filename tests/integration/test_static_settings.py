"""collectstatic's inputs read from a real split-settings Django project (base.py star-
imported by production.py, as Wagtail's demo is laid out), on a real engine: a template
edit reuses the collected files, enabling an app or adding a STATICFILES_DIRS entry in
the base settings collects them again; and who serves the files, with which headers."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

from conftest import App, output, serve_image
from pkgindex import Index
from test_build import http_get, image, wheelhouse

from nox_warpdrive.engine import Engine

BASE = """\
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent
SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "shop",
]
MIDDLEWARE = []
ROOT_URLCONF = "site1.urls"
WSGI_APPLICATION = "site1.wsgi.application"
DATABASES = {}
TEMPLATES = [
    {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}
]
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "collected"
STATICFILES_DIRS = []
"""
PRODUCTION = """\
from .base import *

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}
"""
FILES = {
    "manage.py": """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site1.settings.dev")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
""",
    "site1/__init__.py": "",
    "site1/settings/__init__.py": "",
    "site1/settings/base.py": BASE,
    "site1/settings/dev.py": "from .base import *\n\nDEBUG = True\n",
    "site1/settings/production.py": PRODUCTION,
    "site1/urls.py": """\
from django.urls import path

from shop.views import index

urlpatterns = [path("", index)]
""",
    "site1/wsgi.py": """\
from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
""",
    "shop/__init__.py": "",
    "shop/views.py": """\
from django.shortcuts import render


def index(request):
    return render(request, "shop/index.html")
""",
    "shop/templates/shop/index.html": "<p>v1</p>\n",
    "shop/static/shop/site.css": "body { color: red }\n",
    "blog/__init__.py": "",
    "blog/static/blog/blog.css": "p { color: blue }\n",
    "assets/extra.js": "var extra = 1;\n",
    ".warpdrive/environment": "DJANGO_SETTINGS_MODULE=site1.settings.production\n",
}
COLLECTED = "/opt/app-root/src/collected"


def write(root: Path, relpath: str, text: str) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def run(engine: Engine, ref: str, *cmd: str) -> str:
    return str(output(engine.client, ref, list(cmd)).decode())


def build(app: App, engine: Engine) -> tuple[Any, str]:
    lines: list[str] = []
    result = image(app, engine, lines, no_index=True)
    return result, "\n".join(lines)


def headers(url: str) -> dict[str, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return {k.lower(): v for k, v in resp.headers.items()}


def hashed_css(engine: Engine, ref: str) -> str:
    """The hashed name of site.css in the image's manifest."""
    text = run(engine, ref, "cat", f"{COLLECTED}/staticfiles.json")
    assert text, "staticfiles.json is empty"
    manifest = json.loads(text)
    return str(manifest["paths"]["shop/site.css"])


def split_settings_app(make_app: Any, engine: Engine) -> App:
    """The split-settings Django site (FILES) with its wheelhouse built."""
    app: App = make_app(["Django==5.2.19", "whitenoise==6.12.0"])
    os.unlink(app.root / "wsgi.py")
    for relpath, text in FILES.items():
        write(app.root, relpath, text)
    wheelhouse(app, engine)
    return app


def test_static_inputs_follow_the_split_settings(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app = split_settings_app(make_app, engine)
    first, text = build(app, engine)
    assert "manage.py collectstatic" in text, text
    assert (
        "collectstatic uses DJANGO_SETTINGS_MODULE=site1.settings.production "
        "(from .warpdrive/environment)"
    ) in text, text
    listing = run(engine, first.image_id, "find", COLLECTED, "-type", "f")
    assert f"{COLLECTED}/shop/site.css" in listing
    assert "blog.css" not in listing and "extra.js" not in listing  # not named yet

    # a template edit: the collected files are reused, collectstatic does not run
    write(app.root, "shop/templates/shop/index.html", "<p>v2</p>\n")
    started = time.monotonic()
    _, text = build(app, engine)
    seconds = time.monotonic() - started
    assert "reusing the collected static files" in text, text
    assert "manage.py collectstatic" not in text, text
    print(f"template edit: {seconds:.2f} s")

    # an app enabled in base.py, which production.py star-imports: its files are collected
    write(app.root, "site1/settings/base.py", BASE.replace('"shop",', '"shop",\n    "blog",'))
    third, text = build(app, engine)
    assert "manage.py collectstatic" in text, text
    listing = run(engine, third.image_id, "find", COLLECTED, "-type", "f")
    assert f"{COLLECTED}/blog/blog.css" in listing, listing
    assert "blog/blog.css" in run(engine, third.image_id, "cat", f"{COLLECTED}/staticfiles.json")

    # a STATICFILES_DIRS entry added in base.py: its files are collected
    base = BASE.replace('"shop",', '"shop",\n    "blog",')
    base = base.replace("STATICFILES_DIRS = []", 'STATICFILES_DIRS = [BASE_DIR / "assets"]')
    write(app.root, "site1/settings/base.py", base)
    fourth, text = build(app, engine)
    assert "manage.py collectstatic" in text, text
    assert run(engine, fourth.image_id, "cat", f"{COLLECTED}/extra.js") == "var extra = 1;\n"


def test_who_serves_the_static_files_and_for_how_long(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app = split_settings_app(make_app, engine)
    first, _ = build(app, engine)
    hashed = hashed_css(engine, first.image_id)
    assert hashed.startswith("shop/site.") and hashed != "shop/site.css"
    # the launcher's wrapper serves: a hashed file for a year, immutable
    with serve_image(engine, app.image) as (_, url):
        assert http_get(f"{url}/")[0] == 200
        got = headers(f"{url}/static/{hashed}")
        assert got["cache-control"] == "max-age=31536000, public, immutable", got
        assert headers(f"{url}/static/shop/site.css")["cache-control"] == "max-age=60, public"

    # the app's own WhiteNoise middleware: nothing in front of it, its headers are sent
    write(
        app.root,
        "site1/settings/production.py",
        PRODUCTION + 'MIDDLEWARE.append("whitenoise.middleware.WhiteNoiseMiddleware")\n',
    )
    second, _ = build(app, engine)
    with serve_image(engine, app.image) as (container, url):
        assert http_get(f"{url}/")[0] == 200
        got = headers(f"{url}/static/{hashed_css(engine, second.image_id)}")
        # WhiteNoise's middleware: ten years for the manifest's files
        assert got["cache-control"] == "max-age=315360000, public, immutable", got
        logs = container.logs().decode()
        assert "the app serves its static files (WhiteNoise)" in logs, logs
        assert "warpdrive_static" not in logs, logs
