"""The package's imports follow the layers of docs/architecture.md, with no cycles."""

from __future__ import annotations

import ast
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "moa_graph"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or "moa_graph"


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """Return the package modules a file imports, at module level or inside functions."""

    def short(name: str) -> str:
        return name.removeprefix("moa_graph.") if name != "moa_graph" else name

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from moa_graph import nodes` imports the submodule, not the package's names.
            submodules = {short(f"{node.module}.{alias.name}") for alias in node.names}
            names = submodules & known or {short(node.module)}
        elif isinstance(node, ast.Import):
            names = {short(alias.name) for alias in node.names}
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def layers() -> dict[str, int]:
    """Return each module's layer, from the table of docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    layer_of: dict[str, int] = {}
    for number, listed in re.findall(r"^\| (\d+) \| [a-z]+ \| (.+) \|$", text, re.MULTILINE):
        for name in re.findall(r"`([\w.]+)`", listed):
            layer_of[name] = int(number)
    return layer_of


def test_every_module_is_on_the_whiteboard() -> None:
    missing = sorted(set(modules()) - set(layers()))
    assert missing == [], f"add these to docs/architecture.md: {missing}"
    gone = sorted(set(layers()) - set(modules()))
    assert gone == [], f"docs/architecture.md lists modules that do not exist: {gone}"


def test_imports_go_up_the_layers_only() -> None:
    layer_of, found = layers(), modules()
    wrong = [
        f"{name} (layer {layer_of[name]}) imports {target} (layer {layer_of[target]})"
        for name, path in found.items()
        for target in sorted(imports(path, set(found)) - {name})
        if layer_of[target] > layer_of[name]
    ]
    assert wrong == []


def test_the_core_never_reads_presets_or_files() -> None:
    layer_of, found = layers(), modules()
    core = [name for name in found if layer_of[name] <= 6]
    for name in core:
        assert not {"presets", "config_files", "factory"} & imports(found[name], set(found))


def test_there_are_no_import_cycles() -> None:
    found = modules()
    graph = {name: imports(path, set(found)) - {name} for name, path in found.items()}
    # A package's __init__ importing its own modules lazily is not a cycle.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(f"{t}.") and t != "moa_graph"}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None
