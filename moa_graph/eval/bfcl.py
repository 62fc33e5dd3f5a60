"""BFCL: the Berkeley Function Calling Leaderboard's single-turn subsets, scored by its AST checker.

The ``bfcl-eval`` wheel (fetched whole by :mod:`moa_graph.eval.datasets`, without its
dependencies, and checked against its recorded SHA-256) ships each subset's questions
and function docs, the possible answers and the checker. An item's functions are
bound as tools in OpenAI's format, converted as BFCL converts them for OpenAI-style
function-calling models (see :func:`openai_tools`); the tool calls of the answer are
scored by the package's own ``ast_checker``, executed from the wheel's source.

That checker imports four light modules (an enum, type tables, the Java and
JavaScript type converters), which are executed from the wheel too, and the
leaderboard's table of model handlers (``MODEL_CONFIG_MAPPING``), which imports every
provider's SDK. The table is only read to ask whether a model's function names had
their dots replaced by underscores; it is replaced by one entry saying yes for this
harness, which does replace them (as BFCL does for every OpenAI-style model).
"""

from __future__ import annotations

import copy
import functools
import json
import sys
import threading
import types
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moa_graph.eval.items import DatasetError, Item

SUBSETS = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "irrelevance",
    "live_simple",
)
"""The single-turn Python subsets ``moa eval run bfcl:<subset>`` runs."""

MODEL_NAME = "moa-graph"
"""The model name the checker is told (only its dot-to-underscore flag is read)."""

PYTHON_HINT = " Note that the provided function is in Python 3 syntax."
"""What BFCL appends to every Python function's description before converting it."""

_ROOT = "bfcl_eval"
_CHECKER = f"{_ROOT}.eval_checker.ast_eval.ast_checker"
# The checker's imports in the order they must run, each the wheel's own source.
_CHECKER_MODULES = (
    f"{_ROOT}.constants.enums",
    f"{_ROOT}.constants.type_mappings",
    f"{_ROOT}.eval_checker.ast_eval.type_convertor.java_type_converter",
    f"{_ROOT}.eval_checker.ast_eval.type_convertor.js_type_converter",
)
_MODEL_CONFIG = f"{_ROOT}.constants.model_config"
# Loading swaps entries of sys.modules; scorers run in threads.
_LOADING = threading.Lock()


def bfcl_items(wheel: Path, subset: str) -> list[Item]:
    """Read a subset's items out of the ``bfcl-eval`` wheel.

    Args:
        wheel: The cached wheel.
        subset: One of :data:`SUBSETS`.

    Returns:
        One single-turn item per question, with the id BFCL gives it. ``meta`` holds
        ``category`` (the subset), ``functions`` (BFCL's function docs, for the
        checker), ``tools`` (those functions in OpenAI's tool format), ``system``
        (the question's system message, or absent) and ``ground_truth`` (the possible
        answers; absent for irrelevance, where the right answer is no call).

    Raises:
        DatasetError: The subset is unknown, or a question is not one user message
            after an optional system message.
    """
    if subset not in SUBSETS:
        raise DatasetError(f"unknown BFCL subset '{subset}' (known: {', '.join(SUBSETS)})")
    with zipfile.ZipFile(wheel) as archive:
        questions = _json_lines(archive, f"{_ROOT}/data/BFCL_v4_{subset}.json")
        answers = {}
        if "irrelevance" not in subset:
            path = f"{_ROOT}/data/possible_answer/BFCL_v4_{subset}.json"
            answers = {row["id"]: row["ground_truth"] for row in _json_lines(archive, path)}
    mapping = gorilla_to_openapi(wheel)
    return [_item(row, subset, answers.get(row["id"]), mapping) for row in questions]


def _json_lines(archive: zipfile.ZipFile, path: str) -> list[dict[str, Any]]:
    text = archive.read(path).decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _item(
    row: dict[str, Any], subset: str, ground_truth: list[Any] | None, mapping: dict[str, str]
) -> Item:
    messages = row["question"][0] if len(row["question"]) == 1 else []
    roles = [message["role"] for message in messages]
    if roles not in (["user"], ["system", "user"]):
        raise DatasetError(f"BFCL item {row['id']}: expected one user turn, got roles {roles}")
    functions = [_with_hint(function) for function in row["function"]]
    meta: dict[str, Any] = {
        "category": subset,
        "functions": functions,
        "tools": openai_tools(functions, mapping),
    }
    if roles[0] == "system":
        meta["system"] = messages[0]["content"]
    if ground_truth is not None:
        meta["ground_truth"] = ground_truth
    elif "irrelevance" not in subset:
        raise DatasetError(f"BFCL item {row['id']} has no possible answer")
    return Item(str(row["id"]), (messages[-1]["content"],), None, meta)


def _with_hint(function: dict[str, Any]) -> dict[str, Any]:
    hinted = copy.deepcopy(function)
    hinted["description"] = hinted.get("description", "") + PYTHON_HINT
    return hinted


def openai_tools(
    functions: Sequence[dict[str, Any]], mapping: dict[str, str]
) -> list[dict[str, Any]]:
    """Return BFCL function docs as OpenAI tools, as BFCL converts them for OpenAI models.

    A dot in a name becomes an underscore (OpenAI allows neither), the parameters'
    ``"dict"`` type becomes ``"object"``, and every property type is mapped by BFCL's
    ``mapping``, BFCL's own Gorilla-to-OpenAPI table (``"float"`` to ``"number"``,
    ``"tuple"`` to ``"array"``; unknown ones become ``"string"``), nested ones too; a
    float property also gets ``"format": "float"`` and " This is a float type value."
    in its description. The input is not changed.

    Args:
        functions: BFCL function docs (``name``, ``description``, ``parameters``).
        mapping: The table, from :func:`gorilla_to_openapi`.
    """
    tools = []
    for function in copy.deepcopy(list(functions)):
        function["name"] = function["name"].replace(".", "_")
        parameters = function["parameters"]
        parameters["type"] = "object"
        parameters["properties"] = _openai_properties(parameters["properties"], mapping)
        tools.append({"type": "function", "function": function})
    return tools


def _openai_properties(properties: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    for schema in properties.values():
        kind = schema.get("type")
        if kind == "float":
            schema["format"] = "float"
            schema["description"] = schema.get("description", "") + " This is a float type value."
        schema["type"] = mapping.get(kind, "string") if kind is not None else "string"
        if schema["type"] not in ("array", "object"):
            continue
        if "properties" in schema:
            schema["properties"] = _openai_properties(schema["properties"], mapping)
        elif "items" in schema:
            items = schema["items"]
            items["type"] = mapping[items["type"]]
            if items["type"] == "array" and "items" in items:
                items["items"]["type"] = mapping[items["items"]["type"]]
            elif items["type"] == "object" and "properties" in items:
                items["properties"] = _openai_properties(items["properties"], mapping)
    return properties


def score_bfcl(calls: Sequence[dict[str, Any]] | None, item: Item, wheel: Path) -> dict[str, float]:
    """Score an answer's tool calls with BFCL's AST checker.

    Args:
        calls: The answer's calls, each ``{"name": ..., "arguments": {...}}``, in
            order; None or empty when it answered in text.
        item: An item from :func:`bfcl_items`.
        wheel: The cached ``bfcl-eval`` wheel the checker is read from.

    Returns:
        ``{"accuracy": 1.0}`` when BFCL counts the answer valid, else 0.0. On
        irrelevance, an answer is valid when it calls nothing (as BFCL's relevance
        runner decides: any call fails); elsewhere the checker decides, and an
        answer without calls fails.
    """
    called = [{call["name"]: dict(call["arguments"])} for call in calls or ()]
    category = item.meta["category"]
    if "irrelevance" in category:
        return {"accuracy": float(not called)}
    if not called:
        return {"accuracy": 0.0}
    checker = _modules(wheel)[_CHECKER]
    verdict = checker.ast_checker(
        copy.deepcopy(item.meta["functions"]),
        called,
        copy.deepcopy(item.meta["ground_truth"]),
        checker.Language.PYTHON,
        category,
        MODEL_NAME,
    )
    return {"accuracy": float(verdict["valid"])}


def gorilla_to_openapi(wheel: Path) -> dict[str, str]:
    """Return BFCL's table of its parameter types to OpenAPI types, from the wheel."""
    table: dict[str, str] = _modules(wheel)[f"{_ROOT}.constants.type_mappings"].GORILLA_TO_OPENAPI
    return dict(table)


def load_checker(wheel: Path) -> types.ModuleType:
    """Return BFCL's ``ast_checker`` module, executed from the wheel's source."""
    return _modules(wheel)[_CHECKER]


@functools.cache
def _modules(wheel: Path) -> dict[str, types.ModuleType]:
    """Execute the checker and its imports from the wheel; return them by name.

    They run under their own names while the checker loads; ``sys.modules`` is left
    as it was afterwards (so an installed ``bfcl_eval`` is neither shadowed nor
    used). Only the model handler table is replaced, as the module docstring explains.
    """
    names = [*_CHECKER_MODULES, _MODEL_CONFIG, _CHECKER]
    with _LOADING:
        saved = {name: sys.modules.get(name) for name in names}
        try:
            return _execute_all(wheel)
        finally:
            for name, module in saved.items():
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module


def _execute_all(wheel: Path) -> dict[str, types.ModuleType]:
    with zipfile.ZipFile(wheel) as archive:
        loaded = {name: _execute(archive, name) for name in _CHECKER_MODULES}
        sys.modules[_MODEL_CONFIG] = _model_config()
        loaded[_CHECKER] = _execute(archive, _CHECKER)
        return loaded


def _execute(archive: zipfile.ZipFile, name: str) -> types.ModuleType:
    path = name.replace(".", "/") + ".py"
    module = types.ModuleType(name)
    module.__file__ = f"{archive.filename}/{path}"
    sys.modules[name] = module
    exec(compile(archive.read(path), module.__file__, "exec"), module.__dict__)
    return module


def _model_config() -> types.ModuleType:
    module = types.ModuleType(_MODEL_CONFIG)
    module.MODEL_CONFIG_MAPPING = {  # type: ignore[attr-defined]
        MODEL_NAME: types.SimpleNamespace(underscore_to_dot=True)
    }
    return module
