"""uv.lock URLs the builder will not fetch are said, by entry: a `url` source pointing at
a local file or listing no file, and a wheel URL that is refused (the sdist is built
instead, and a line says so)."""

from __future__ import annotations

from pathlib import Path

from test_inputs_locks import edit, error, line_of, project, read

ITS_WHEEL = (
    "https://files.pythonhosted.org/packages/04/96/92447566d16df59b2a776c0fb82dbc4d9e07cd95062"
    "562af01e408583fc4/itsdangerous-2.2.0-py3-none-any.whl"
)


def _where(root: Path) -> str:
    return f"uv.lock line {line_of(root / 'uv.lock', '^name = .itsdangerous.')}"


def test_a_url_source_pointing_at_a_file_says_so(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    edit(
        root / "uv.lock",
        'source = { registry = "https://pypi.org/simple" }\nsdist = { url = "https://files.pythonhosted.org/packages/9c/cb/8ac0172223afbccb63986cc25049b154ecfb5e85932587206f42317be31d/itsdangerous-2.2.0.tar.gz"',
        'source = { url = "file:///home/me/itsdangerous-2.2.0.tar.gz" }\nsdist = { url = "file:///home/me/itsdangerous-2.2.0.tar.gz"',
    )
    message = error(root)
    assert f"{_where(root)}: itsdangerous comes from a `url` source pointing at " in message
    assert "file:///home/me/itsdangerous-2.2.0.tar.gz" in message
    assert "cannot fetch" in message and "has no wheel" not in message


def with_itsdangerous_as(tmp_path: Path, rest: str) -> Path:
    """The uv fixture app whose lock entry for itsdangerous 2.2.0 is ``rest`` (its
    source and files) instead of the registry's."""
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    text = (root / "uv.lock").read_text()
    start = text.index('name = "itsdangerous"')
    end = text.index("[[package]]", start)
    block = 'name = "itsdangerous"\nversion = "2.2.0"\n' + rest
    (root / "uv.lock").write_text(text[:start] + block + text[end:])
    return root


def test_a_url_source_with_no_file_says_so(tmp_path: Path) -> None:
    root = with_itsdangerous_as(
        tmp_path, 'source = { url = "https://example.com/itsdangerous-2.2.0.tar.gz" }\n\n'
    )
    message = error(root)
    assert "itsdangerous comes from the `url` source https://example.com/" in message
    assert "lists no file for it" in message and "has no wheel" not in message


def test_a_url_source_naming_no_distribution_says_so(tmp_path: Path) -> None:
    root = with_itsdangerous_as(
        tmp_path,
        'source = { url = "https://example.com/download?id=7" }\n'
        'sdist = { hash = "sha256:' + "ab" * 32 + '" }\n\n',
    )
    message = error(root)
    assert "names no wheel or sdist file" in message and "has no wheel" not in message


def test_a_refused_wheel_url_falls_back_to_the_sdist_with_a_line(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    edit(root / "uv.lock", ITS_WHEEL, "file:///etc/itsdangerous-2.2.0-py3-none-any.whl")
    (pin,) = [p for p in read(root).locked if p.name == "itsdangerous"]
    assert pin.wheels == () and pin.sdist is not None
    assert pin.sdist.filename == "itsdangerous-2.2.0.tar.gz"
    (note,) = pin.notes
    assert note.startswith(f"warpdrive: {_where(root)}: the wheel URL file:///etc/")
    assert "is refused (not an http or https URL); its sdist is built instead" in note


def test_a_wheel_url_naming_no_wheel_is_refused(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    edit(root / "uv.lock", ITS_WHEEL, "https://evil.example/..%2F..%2Fx.whl")
    (pin,) = [p for p in read(root).locked if p.name == "itsdangerous"]
    assert pin.wheels == () and "it names no wheel file" in pin.notes[0]


def test_a_refused_wheel_with_no_sdist_is_an_error_naming_it(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    edit(root / "uv.lock", ITS_WHEEL, "file:///etc/passwd")
    text = (root / "uv.lock").read_text()
    start = text.index('name = "itsdangerous"')
    sdist = text.index("sdist = {", start)
    (root / "uv.lock").write_text(text[:sdist] + text[text.index("\n", sdist) + 1 :])
    message = error(root)
    assert "the wheel URL file:///etc/passwd of itsdangerous 2.2.0 is refused" in message
    assert "no other file of it" in message


def test_good_wheel_urls_have_no_notes(tmp_path: Path) -> None:
    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    assert all(p.notes == () for p in read(root).locked)


def test_the_wheelhouse_says_the_notes(tmp_path: Path) -> None:
    from nox_warpdrive.wheelhouse.build import _say_notes

    root = project(tmp_path, "uv", 'lock = "uv.lock"\n')
    edit(root / "uv.lock", ITS_WHEEL, "file:///etc/itsdangerous-2.2.0-py3-none-any.whl")
    reqs = read(root)
    shown: list[str] = []
    _say_notes(reqs, shown.append)
    assert len(shown) == 1 and "is refused (not an http or https URL)" in shown[0]
