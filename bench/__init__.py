"""Side-by-side build times: nox-warpdrive against five Dockerfile peers.

Every tool builds its own copy of ``examples/wagtail-site`` through four scenarios, in
order: ``cold`` (nothing cached), ``no-change`` (rebuild at once), ``code-change`` (one .py
file edited) and ``add-package`` (one small pure-Python requirement appended). Runs are
interleaved: every tool does a scenario before any tool does the next one, so a slow
minute on a shared machine hits all of them. See bench/README.md for what "cold" means
for each tool and why.

    nox -s bench                  # one run
    nox -s bench -- --runs 3      # medians of three
    nox -s bench -- --app ../myapp --package httpx --peer-cmd "gunicorn app:app"

Writes bench/results/latest.json, one log per build under bench/results/logs/, and
bench/RESULTS.md. Everything the bench creates in Docker (images, the volume, its build
cache) and on disk (app copies) is removed at the end, also when a build fails.

The modules, by concern (each importable without an engine, so the pure parts are
unit-tested in tests/unit/test_bench*.py):

- ``common``: names and paths every module shares, ``BenchError``, console output
- ``dockercli``: the docker CLI the bench drives
- ``buildcache``: which BuildKit cache records the peers made, and removing only those
- ``apps``: the app every tool builds a copy of, and the copy's pyproject.toml
- ``tools``: a timed command, the ``Tool`` base class and nox-warpdrive itself
- ``peers``: the Dockerfile peers and the CA bundle their builds get
- ``report``: medians, ratios, the markdown tables, RESULTS.md
- ``matrix``: the interleaved runs and the clean-up after them
- ``cli``: arguments and ``main``; ``python -m bench`` and ``bench/run.py`` call it
- ``fresh``: ``--fresh-runner``, the CI pipelines on an empty engine with a registry;
  ``runner`` (that engine and the registry's start), ``registry`` (its tags put back
  before every scenario), ``fresh_report`` (its tables and RESULTS.md section)
"""
