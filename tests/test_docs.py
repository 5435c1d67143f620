"""The documents against the code: every setting in the shipped properties file
and the README's tables with the code's default, and every module of ``wcs/`` in
the README's Layout. The lists come from the code, so a new key or module that
is not documented fails here."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from wcs import config, limits
from wcs.config import DEFAULT_CONFIG, REPO_ROOT, Settings, parse_properties

README = REPO_ROOT / "README.md"
#: A setting's line in the properties file, commented out or not.
SETTING_LINE = re.compile(r"^#?([A-Za-z0-9_.]+)=", re.MULTILINE)
#: What a README table shows for a key whose default is empty.
EMPTY = "(empty)"


def keys() -> list[str]:
    """Every key the server reads: the parser's own table."""
    return list(config._KEYS)


def stated_defaults() -> dict[str, list[tuple[int, str]]]:
    """Each key's ``(line, text)`` in the properties file, commented-out lines
    included (read as settings with their ``#`` taken off), by the server's parser."""
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    uncommented = SETTING_LINE.sub(lambda match: match.group(1) + "=", text)
    stated: dict[str, list[tuple[int, str]]] = {}
    for line, key, value in parse_properties(uncommented):
        stated.setdefault(key, []).append((line, value))
    return stated


def default_of(attribute: str) -> Any:
    value: Any = Settings()
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


@pytest.fixture(autouse=True)
def no_xdg_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """``state_dir``'s default as the file states it (without ``$XDG_STATE_HOME``)."""
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)


def test_every_settings_field_has_a_key():
    """The key table covers ``Settings`` (and ``Limits``), so checking the keys
    checks every setting."""
    attributes = {attribute for attribute, _convert, _show in config._KEYS.values()}
    fields = {field.name for field in dataclasses.fields(Settings)} - {"limits"}
    fields |= {f"limits.{key}" for key in limits.KEYS}
    assert fields - attributes == set()


def test_properties_file_states_every_key_once():
    stated = stated_defaults()
    assert sorted(set(keys()) - set(stated)) == [], "keys missing from the properties file"
    assert sorted(set(stated) - set(keys())) == [], "unknown keys in the properties file"
    twice = {key: [line for line, _ in places] for key, places in stated.items() if len(places) > 1}
    assert twice == {}, "keys stated more than once (lines)"


@pytest.mark.parametrize("key", keys())
def test_properties_file_states_the_default(key: str):
    """Each key's value in the file, converted by the server's own converter, is
    the code's default; an empty value stands for an empty default."""
    (line, text), *_ = stated_defaults()[key]
    attribute, convert, _show = config._KEYS[key]
    default = default_of(attribute)
    if text == "":
        assert default in (None, "", ()), f"line {line}: {key}= but the default is {default!r}"
        return
    value = convert(text)
    if isinstance(value, Path) and not value.is_absolute():
        value = REPO_ROOT / value  # media_dir: serve.sh runs in the repository
    assert value == default, f"line {line}: {key}={text} but the default is {default!r}"


@pytest.mark.parametrize("key", keys())
def test_properties_file_says_what_the_key_does(key: str):
    """A comment line above each key (or above its group of keys)."""
    lines = DEFAULT_CONFIG.read_text(encoding="utf-8").splitlines()
    line, _text = stated_defaults()[key][0]
    above = line - 2
    while above >= 0 and SETTING_LINE.match(lines[above]):
        above -= 1  # a group of keys under one comment
    assert above >= 0 and lines[above].startswith("#") and not SETTING_LINE.match(lines[above]), (
        f"{key} (line {line}) has no comment saying what it does"
    )


def test_server_starts_from_the_properties_file():
    """The file as shipped, read by the server's loader, gives the defaults."""
    assert config.load(DEFAULT_CONFIG) == Settings()


def readme_rows() -> list[tuple[str, str]]:
    """``(key, default)`` of every README table row whose first cell is a key."""
    rows = []
    for line in README.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            rows.append((cells[0].strip("`"), cells[1]))
    return rows


def test_readme_settings_table_lists_every_key():
    listed = [key for key, _default in readme_rows()]
    assert sorted(set(keys()) - set(listed)) == []


@pytest.mark.parametrize("key", keys())
def test_readme_tables_state_the_default(key: str):
    """Every README table row of a key shows what the properties file states."""
    stated = stated_defaults()[key][0][1]
    for _key, shown in (row for row in readme_rows() if row[0] == key):
        assert (shown.strip("`") if shown != EMPTY else "") == stated, (
            f"README: {key} | {shown} but the properties file states {stated!r}"
        )


def layout() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Layout\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def modules(under: str = "wcs") -> list[str]:
    """Every package (``wcs/x/``) and module (``.py``, ``.c``) of ``wcs/``; a
    package's ``__init__.py`` counts when it holds more than a docstring."""
    found = []
    for path in sorted((REPO_ROOT / under).rglob("*")):
        name = path.relative_to(REPO_ROOT).as_posix()
        if "__pycache__" in name or "/static/" in name:
            continue
        if path.is_dir() and (path / "__init__.py").exists():
            found.append(name + "/")
        elif path.suffix in (".py", ".c") and (path.name != "__init__.py" or holds_code(path)):
            found.append(name)
    return found


def holds_code(path: Path) -> bool:
    """More than a docstring."""
    return len(ast.parse(path.read_text(encoding="utf-8")).body) > 1


#: Being split into several modules; its Layout lines come with the split
#: (README's TODO above wcs/streams/).
@pytest.mark.parametrize("module", modules())
def test_layout_names_every_module(module: str):
    assert f"`{module}`" in layout()


def test_layout_names_nothing_that_is_gone():
    named = set(re.findall(r"`(wcs/[\w/]+(?:\.py|\.c|/))`", layout()))
    gone = [name for name in named if not (REPO_ROOT / name).exists()]
    assert gone == []
