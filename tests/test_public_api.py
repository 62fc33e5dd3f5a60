"""The public face: what the README, the notebooks and ``graphs/`` may import.

``moa_graph.__all__`` is the public API, written once as the table ``_EXPORTS`` (each
name and the module that defines it) and repeated for type checkers under
``TYPE_CHECKING``. The README, the notebooks and the example graphs import only those
names, so a user who copies them never depends on where a module lives. One subpackage
keeps its own public API because the README promised it by path:
``moa_graph.eval`` (``moa_graph.eval.run_eval``, ``run_evals``, ``run_experiment``,
``write_report``, ``load_dataset``), the names in its ``__all__``. ``moa_graph.local``
has an ``__all__`` too, but the README never promised it, so the examples may not use it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import moa_graph
import moa_graph.eval

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
GRAPHS = sorted((ROOT / "graphs").glob("*.py"))

PROMISED_SUBPACKAGES: dict[str, ModuleType] = {"moa_graph.eval": moa_graph.eval}
"""Subpackages the README names by path, with their own ``__all__``."""

PENDING: set[str] = set()
"""Private imports allowed until another change replaces them (none now: the last, of
``create_configurable_moa``, became ``create_moa(..., context_schema=MoAContext)``).

Allowed until then; :func:`test_pending_imports_are_still_made` fails once they are gone,
so that this set is emptied then.
"""


def is_public(dotted: str) -> bool:
    """Whether a dotted name (``moa_graph.X...``, ``moa_graph.eval.Y...``) is public."""
    parts = dotted.split(".")
    assert parts[0] == "moa_graph", dotted
    if len(parts) == 1 or parts[1] in moa_graph.__all__:
        return True
    subpackage = PROMISED_SUBPACKAGES.get(".".join(parts[:2]))
    return subpackage is not None and (len(parts) == 2 or parts[2] in subpackage.__all__)


def _python_blocks(markdown: str) -> Iterator[str]:
    yield from re.findall(r"^```python\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


def _notebook_cells(path: Path) -> Iterator[str]:
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            lines = "".join(cell["source"]).splitlines()
            yield "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))


def _sources() -> Iterator[tuple[str, str]]:
    """Every piece of Python the README, the notebooks and ``graphs/`` show a user."""
    for number, block in enumerate(_python_blocks(README.read_text()), 1):
        yield f"README.md, python block {number}", block
    for path in NOTEBOOKS:
        for number, cell in enumerate(_notebook_cells(path), 1):
            yield f"{path.name}, code cell {number}", cell
    for path in GRAPHS:
        yield f"graphs/{path.name}", path.read_text()


def used_names(source: str) -> Iterator[str]:
    """The dotted ``moa_graph`` names a piece of Python imports or reads.

    ``from moa_graph.x import a`` uses ``moa_graph.x.a``; ``import moa_graph.x`` uses
    ``moa_graph.x``; ``moa_graph.x.a`` read as an attribute uses ``moa_graph.x.a``.
    """
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT  # notebooks await at top level
    tree = compile(source, "<example>", "exec", flags=flags)
    inner: set[ast.AST] = set()  # parts of a longer attribute chain, seen whole already
    for node in ast.walk(tree):  # breadth first: a chain before its parts
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "moa_graph":
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "moa_graph")
        elif isinstance(node, ast.Attribute) and node not in inner:
            parts = [node.attr]
            value = node.value
            while isinstance(value, ast.Attribute):
                inner.add(value)
                parts.insert(0, value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id == "moa_graph":
                yield ".".join(["moa_graph", *parts])


def test_the_examples_import_only_public_names() -> None:
    sources = list(_sources())
    assert len(sources) > len(GRAPHS) + len(NOTEBOOKS)  # the README's blocks were found
    private = [
        f"{where}: {name}"
        for where, source in sources
        for name in used_names(source)
        if not is_public(name) and name not in PENDING
    ]
    assert private == []


def test_the_readme_names_only_public_objects() -> None:
    # Prose names objects as `moa_graph.X`; paths (moa_graph/eval/prices.yaml) are files.
    named = re.findall(r"`(moa_graph(?:\.\w+)+)", README.read_text())
    assert "moa_graph.eval.run_eval" in named
    assert [name for name in named if not is_public(name)] == []


def test_pending_imports_are_still_made() -> None:
    used = {name for _, source in _sources() for name in used_names(source)}
    assert used >= PENDING, f"no longer imported, drop from PENDING: {PENDING - used}"


@pytest.mark.parametrize(
    ("source", "private"),
    [
        ("from moa_graph import create_moa, MoAConfig", []),
        ("import moa_graph\nmoa_graph.MoAConfig.model_validate({})", []),
        ("from moa_graph.run.streaming import stream_moa", ["moa_graph.run.streaming.stream_moa"]),
        ("import moa_graph.graph.build", ["moa_graph.graph.build"]),
        ("moa_graph.graph.build.check_input(c, m)", ["moa_graph.graph.build.check_input"]),
        ("from moa_graph.eval import run_eval", []),
        ("from moa_graph.eval.runner import run_eval", ["moa_graph.eval.runner.run_eval"]),
        ("from moa_graph.local import chat_model", ["moa_graph.local.chat_model"]),
        ("async for e in stream_moa(g, {}):\n    from moa_graph import Nope", ["moa_graph.Nope"]),
    ],
)
def test_the_check_tells_public_from_private(source: str, private: list[str]) -> None:
    names = list(used_names(source))
    assert names  # the check saw every import and attribute chain
    assert [name for name in names if not is_public(name)] == private


def _type_checking_imports(package: ModuleType) -> dict[str, str]:
    """The names imported under ``if TYPE_CHECKING:``, each with its module (relative)."""
    assert package.__file__ is not None
    tree = ast.parse(Path(package.__file__).read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
        if node.test.id == "TYPE_CHECKING"
    )
    names: dict[str, str] = {}
    prefix = f"{package.__name__}."
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module is not None
        assert node.module.startswith(prefix), node.module
        for alias in node.names:
            # `import x as x` marks a re-export for strict type checkers.
            assert package is not moa_graph or alias.asname == alias.name, alias.name
            names[alias.asname or alias.name] = node.module.removeprefix(prefix)
    return names


def _defined_at_top_level(module: ModuleType) -> set[str]:
    assert module.__file__ is not None
    names: set[str] = set()
    for node in ast.parse(Path(module.__file__).read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


PACKAGES = ["moa_graph", "moa_graph.eval", "moa_graph.local"]


def test_moa_graph_all_is_its_table() -> None:
    assert moa_graph.__all__ == list(moa_graph._EXPORTS)
    with pytest.raises(AttributeError, match="module 'moa_graph' has no attribute 'build_graph'"):
        _ = moa_graph.build_graph


@pytest.mark.parametrize("name", PACKAGES)
def test_type_checkers_see_the_table(name: str) -> None:
    package = importlib.import_module(name)
    exports: dict[str, str] = package._EXPORTS
    assert _type_checking_imports(package) == exports
    assert sorted(package.__all__) == sorted(exports)


@pytest.mark.parametrize("name", PACKAGES)
def test_each_name_comes_from_the_module_the_table_names(name: str) -> None:
    package = importlib.import_module(name)
    for export, relative in package._EXPORTS.items():
        module = importlib.import_module(f"{name}.{relative}")
        value = getattr(package, export)
        assert value is getattr(module, export), export
        assert export in _defined_at_top_level(module), f"{export} is not defined in {relative}"
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__ == module.__name__, export


def test_importing_the_package_loads_no_langchain_or_langgraph() -> None:
    heavy = ("langchain", "langchain_core", "langchain_openai", "langgraph", "openai")
    code = (
        "import sys, moa_graph, moa_graph.eval, moa_graph.local\n"
        "assert moa_graph.__all__ and moa_graph.eval.__all__ and moa_graph.local.__all__\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
