"""What build containers get from the host: CA bundle, pip/proxy settings, redaction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nox_warpdrive.wheelhouse import buildenv
from nox_warpdrive.wheelhouse.buildenv import build_secrets, find_ca_bundle, pip_env, redact


@pytest.fixture
def cas(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("ssl", "requests", "pip", "system1", "system2"):
        path = tmp_path / f"{name}.pem"
        path.write_text(f"-----BEGIN CERTIFICATE-----\n{name}\n-----END CERTIFICATE-----\n")
        out[name] = path
    return out


@pytest.fixture
def system_bundles(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cas: dict[str, Path]) -> None:
    """Replace the host's system bundle locations with ours: missing first, then two."""
    monkeypatch.setattr(
        buildenv,
        "SYSTEM_CA_BUNDLES",
        (str(tmp_path / "missing.crt"), str(cas["system1"]), str(cas["system2"])),
    )


# ----------------------------------------------------------------------------- CA bundle


@pytest.mark.usefixtures("system_bundles")
def test_ca_bundle_order(cas: dict[str, Path]) -> None:
    env = {
        "SSL_CERT_FILE": str(cas["ssl"]),
        "REQUESTS_CA_BUNDLE": str(cas["requests"]),
        "PIP_CERT": str(cas["pip"]),
    }
    assert find_ca_bundle(env) == cas["ssl"]
    del env["SSL_CERT_FILE"]
    assert find_ca_bundle(env) == cas["requests"]
    del env["REQUESTS_CA_BUNDLE"]
    assert find_ca_bundle(env) == cas["pip"]
    del env["PIP_CERT"]
    assert find_ca_bundle(env) == cas["system1"]  # the first system bundle that exists


@pytest.mark.usefixtures("system_bundles")
def test_missing_ca_files_are_skipped(tmp_path: Path, cas: dict[str, Path]) -> None:
    env = {
        "SSL_CERT_FILE": str(tmp_path / "nope.pem"),
        "REQUESTS_CA_BUNDLE": "",
        "PIP_CERT": str(cas["pip"]),
    }
    assert find_ca_bundle(env) == cas["pip"]
    env["PIP_CERT"] = str(tmp_path)  # a directory is not a bundle
    assert find_ca_bundle(env) == cas["system1"]


@pytest.mark.usefixtures("system_bundles")
def test_no_host_ca_disables_the_system_fallback_only(cas: dict[str, Path]) -> None:
    assert find_ca_bundle({"WARPDRIVE_NO_HOST_CA": "1"}) is None
    env = {"WARPDRIVE_NO_HOST_CA": "1", "PIP_CERT": str(cas["pip"])}
    assert find_ca_bundle(env) == cas["pip"]


def test_no_bundle_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(buildenv, "SYSTEM_CA_BUNDLES", (str(tmp_path / "none.crt"),))
    assert find_ca_bundle({}) is None
    assert build_secrets({}) == {}


# ----------------------------------------------------------------------------- secrets


@pytest.mark.usefixtures("system_bundles")
def test_build_secrets_contents(cas: dict[str, Path]) -> None:
    env = {
        "SSL_CERT_FILE": str(cas["ssl"]),
        "PIP_INDEX_URL": "https://u:p@index.example.com/simple",
        "PIP_EXTRA_INDEX_URL": "",  # empty: not forwarded
        "PIP_TRUSTED_HOST": "index.example.com",
        "HTTPS_PROXY": "http://pu:pp@proxy:3128",
        "no_proxy": "localhost",
        "PIP_REQUIRE_VIRTUALENV": "1",  # not one of ours: not forwarded
        "AWS_SECRET_ACCESS_KEY": "never",
        "HOME": "/root",
    }
    files = build_secrets(env)
    assert set(files) == {"ca.pem", "pip-env.json"}
    assert files["ca.pem"] == cas["ssl"].read_bytes()
    assert json.loads(files["pip-env.json"]) == {
        "PIP_INDEX_URL": "https://u:p@index.example.com/simple",
        "PIP_TRUSTED_HOST": "index.example.com",
        "HTTPS_PROXY": "http://pu:pp@proxy:3128",
        "no_proxy": "localhost",
    }


@pytest.mark.usefixtures("system_bundles")
def test_build_secrets_without_pip_settings_has_only_the_ca(cas: dict[str, Path]) -> None:
    files = build_secrets({"HOME": "/root"})
    assert files == {"ca.pem": cas["system1"].read_bytes()}


def test_build_secrets_reads_os_environ_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(buildenv, "SYSTEM_CA_BUNDLES", ())
    for key in (*buildenv.PIP_ENV_KEYS, *buildenv.PROXY_ENV_KEYS, *buildenv.CA_ENV_KEYS):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "60")
    assert json.loads(build_secrets()["pip-env.json"]) == {"PIP_DEFAULT_TIMEOUT": "60"}


def test_pip_env_forwards_every_proxy_spelling() -> None:
    env = {k: f"http://{k.lower()}:3128" for k in buildenv.PROXY_ENV_KEYS}
    assert pip_env(env) == env


# ----------------------------------------------------------------------------- redact


def secrets_for(**env: str) -> dict[str, bytes]:
    return {"pip-env.json": json.dumps(env).encode()}


def test_redact_hides_credentialed_urls() -> None:
    url = "https://deploy:t0ps3cret@index.example.com/simple"
    proxy = "http://pu:pp-secret@proxy.example.com:3128"
    secrets = secrets_for(
        PIP_INDEX_URL=url, HTTPS_PROXY=proxy, PIP_TRUSTED_HOST="index.example.com"
    )
    line = f"Looking in indexes: {url}\nERROR: 401 for {url}/django/ via {proxy}"
    out = redact(line, secrets)
    assert "t0ps3cret" not in out
    assert "pp-secret" not in out
    assert out.count("<redacted>") == 3
    # values without credentials are left alone: they help debugging
    assert redact("trusted index.example.com", secrets) == "trusted index.example.com"


def test_redact_without_secrets_is_identity() -> None:
    assert redact("https://a:b@c/d", {}) == "https://<redacted>@c/d"
    assert redact("text", {"pip-env.json": b"not json"}) == "text"


def test_redact_hides_each_url_of_a_multi_url_value() -> None:
    value = "https://a:first-secret@h1/simple https://c:second-secret@h2/simple"
    out = redact(
        "ERROR: 401 for url: https://c:second-secret@h2/simple/x/",
        secrets_for(PIP_EXTRA_INDEX_URL=value),
    )
    assert "second-secret" not in out
