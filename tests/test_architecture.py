"""The dependency rules of docs/architecture.md, checked against every import under wcs/."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "architecture.md"

ONLY = re.compile(r"^only (?P<who>.+?) imports? (?P<what>`[^ ]+`(?:, `[^ ]+`)*)$")
NOTHING = re.compile(r"^(?P<who>.+?) imports? nothing from (?P<what>`[^ ]+`(?:, `[^ ]+`)*)$")
ONLY_FROM = re.compile(
    r"^(?P<who>.+?) imports? from (?P<where>`[^ ]+`) only (?P<what>`[^ ]+`(?:, `[^ ]+`)*)$")


def names(text: str) -> list[str]:
    found = re.findall(r"`([^`]+)`", text)
    assert found and ", ".join(f"`{n}`" for n in found) == text.strip(), text
    return found


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def module_of(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every module under wcs/ and the modules (or names in them) it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "wcs").rglob("*.py")):
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}: relative import"
                imported.add(node.module or "")
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[module_of(path)] = imported
    return found


def rules() -> list[str]:
    text = DOC.read_text()
    section = text.split("## Dependency rules", 1)[1].split("\n## ", 1)[0]
    return [line[2:].strip() for line in section.splitlines() if line.startswith("- ")]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return imports()


def test_the_rules_are_there_and_name_real_modules(graph):
    assert len(rules()) >= 10
    for rule in rules():
        match = ONLY.match(rule) or NOTHING.match(rule) or ONLY_FROM.match(rule)
        assert match, f"cannot read the rule {rule!r}"
        for part in match.groupdict().values():
            for name in names(part):
                real = (any(under(m, name) for m in graph) if name.startswith("wcs")
                        else importlib.util.find_spec(name) is not None)
                assert real, f"{rule!r} names {name!r}, which does not exist"


@pytest.mark.parametrize("rule", rules())
def test_rule(rule, graph):
    assert broken(rule, graph) == [], rule


def broken(rule: str, graph: dict[str, set[str]]) -> list[str]:
    """The imports that break ``rule``."""
    broken: list[str] = []
    if match := ONLY.match(rule):
        allowed, targets = names(match["who"]), names(match["what"])
        for module, imported in graph.items():
            if any(under(module, a) for a in allowed):
                continue
            broken += [f"{module} imports {i}" for i in sorted(imported)
                       if any(under(i, t) for t in targets)]
    elif match := NOTHING.match(rule):
        owners, targets = names(match["who"]), names(match["what"])
        for module, imported in graph.items():
            if any(under(module, o) for o in owners):
                broken += [f"{module} imports {i}" for i in sorted(imported)
                           if any(under(i, t) for t in targets) and not under(i, module)]
    elif match := ONLY_FROM.match(rule):
        owners, (where,), allowed = names(match["who"]), names(match["where"]), names(
            match["what"])
        for module, imported in graph.items():
            if any(under(module, o) for o in owners):
                broken += [f"{module} imports {i}" for i in sorted(imported)
                           if under(i, where) and i != where
                           and not any(under(i, a) for a in allowed)]
    else:
        pytest.fail(f"cannot read the rule {rule!r}")
    return broken


def test_a_broken_rule_is_seen(graph):
    """The checker itself: made-up imports that break rules are found."""
    bad = {**graph, "wcs.media.pump": graph["wcs.media.pump"] | {"aiortc.rtp"},
           "wcs.web.vod": graph["wcs.web.vod"] | {"wcs.media.mp4.Mp4File"}}
    assert broken("only `wcs.webrtc` imports `aiortc`, `aioice`", bad) == [
        "wcs.media.pump imports aiortc.rtp"]
    assert broken("`wcs.media` imports nothing from `wcs.webrtc`, `aiortc`", bad) == [
        "wcs.media.pump imports aiortc.rtp"]
    assert broken("`wcs.web` imports from `wcs.media` only `wcs.media.sample`", bad) == [
        "wcs.web.vod imports wcs.media.mp4.Mp4File"]
