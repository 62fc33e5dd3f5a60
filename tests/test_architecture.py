"""The package's imports follow the folders of docs/architecture.md, with no cycles."""

from __future__ import annotations

import ast
import re
import subprocess
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "moa_graph"
MAX_LINES = 350


def module_name(path: Path) -> str:
    parts = ["moa_graph", *path.relative_to(PACKAGE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def folder(module: str) -> str:
    """Return the entry of ``moa_graph/`` a module is in (``moa_graph`` for ``__init__``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "moa_graph"


def imports(path: Path, known: set[str]) -> set[str]:
    """Return the package modules a file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from moa_graph.graph import nodes` imports the submodule.
            submodules = {f"{node.module}.{alias.name}" for alias in node.names}
            names = submodules & known or {node.module}
        elif isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def allowed() -> dict[str, set[str]]:
    """Return each folder's allowed imports, from the table of docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table: dict[str, set[str]] = {}
    for name, may in re.findall(r"^\| `(\w+)` \| .+ \| (.*) \|$", text, re.MULTILINE):
        table[name] = set(re.findall(r"`(\w+)`", may))
    return table


def test_every_entry_is_on_the_whiteboard() -> None:
    entries = {
        path.name.removesuffix(".py")
        for path in PACKAGE.iterdir()
        if path.name != "__pycache__" and path.name != "__init__.py"
    }
    assert entries == set(allowed())


def test_the_package_has_at_most_twelve_entries() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "moa_graph"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    top = {Path(name).parts[1] for name in tracked}
    assert len(top) <= 12, sorted(top)


def test_no_module_is_over_350_lines() -> None:
    long = {
        name: lines
        for name, path in modules().items()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_imports_follow_the_table() -> None:
    table, found = allowed(), modules()
    wrong = [
        f"{name} imports {target}"
        for name, path in found.items()
        if name != "moa_graph"  # the public API imports lazily from everywhere
        for target in sorted(imports(path, set(found)))
        if folder(target) not in table.get(folder(name), set()) | {folder(name), "moa_graph"}
    ]
    assert wrong == []


def test_the_table_is_one_stack() -> None:
    """Each folder imports only folders above it in the table, so folders never cycle."""
    order = list(allowed())
    for position, name in enumerate(order):
        assert allowed()[name] <= set(order[:position]), name


def test_the_graph_never_reads_presets_or_files() -> None:
    found = modules()
    banned = {"moa_graph.config.files", "moa_graph.config.presets", "moa_graph.config.resolve"}
    for name, path in found.items():
        if folder(name) == "graph":
            assert not banned & imports(path, set(found)), name


def test_there_are_no_import_cycles() -> None:
    found = modules()
    graph = {name: imports(path, set(found)) - {name} for name, path in found.items()}
    # A package's __init__ importing its own modules lazily is not a cycle; nor is a
    # module importing a parent package (which Python has initialised first).
    for name in graph:
        graph[name] = {
            t for t in graph[name] if not t.startswith(f"{name}.") and not name.startswith(f"{t}.")
        }
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None
