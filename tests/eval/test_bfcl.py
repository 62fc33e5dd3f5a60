"""BFCL on the package's own files: loaders, tool conversion, BFCL's AST checker, ``moa eval run``.

Tests never reach the network: they read the ``bfcl-eval`` wheel from the cache and
skip when it is not there (`moa eval datasets --fetch`, a step of .ci/run, fills it).
"""

from __future__ import annotations

import copy
import json
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moa_graph.eval import bfcl
from moa_graph.eval.datasets import DatasetError, fetch_dataset_file, is_cached, load_dataset
from moa_graph.eval.items import Item
from moa_graph.eval.runner import select_items
from moa_graph.eval.scoring import is_correct, score
from tests.openai_server import serve
from tests.test_cli import moa

COUNTS = {
    "simple_python": 400,
    "multiple": 200,
    "parallel": 200,
    "parallel_multiple": 200,
    "irrelevance": 240,
    "live_simple": 258,
}


@pytest.fixture(scope="module")
def wheel() -> Path:
    if not is_cached("bfcl"):
        pytest.skip("bfcl is not cached; run `moa eval datasets --fetch` (needs PyPI)")
    return fetch_dataset_file("bfcl")


def _items(subset: str) -> dict[str, Item]:
    return {item.id: item for item in load_dataset(f"bfcl:{subset}")}


def _first_option(options: list[Any]) -> Any:
    """A value BFCL accepts: the first possible answer, nested dicts unwrapped alike."""
    value = options[0]
    if isinstance(value, dict):
        return {k: _first_option(v) for k, v in value.items() if v and v[0] != ""}
    return value


def _ground_truth_calls(item: Item) -> list[dict[str, Any]]:
    """The item's ground truth as the calls a model would make (dots as underscores)."""
    return [
        {
            "name": name.replace(".", "_"),
            "arguments": {k: _first_option(v) for k, v in args.items() if v[0] != ""},
        }
        for call in item.meta["ground_truth"]
        for name, args in call.items()
    ]


def _score(dataset: str, item: Item, calls: list[dict[str, Any]] | None) -> float:
    metrics = score(dataset, "", item, calls)
    assert metrics is not None
    return metrics["accuracy"]


@pytest.mark.parametrize(("subset", "count"), COUNTS.items())
def test_each_subset_loads_every_item_with_tools(wheel: Path, subset: str, count: int) -> None:
    items = load_dataset(f"bfcl:{subset}")
    assert len(items) == count and len({item.id for item in items}) == count
    for item in items:
        assert len(item.turns) == 1 and item.turns[0].strip()
        assert item.meta["category"] == subset
        names = [tool["function"]["name"] for tool in item.meta["tools"]]
        assert names and all("." not in name for name in names)
        assert all(t["function"]["parameters"]["type"] == "object" for t in item.meta["tools"])
        assert ("ground_truth" in item.meta) == (subset != "irrelevance")


def test_live_simple_keeps_the_system_message(wheel: Path) -> None:
    item = _items("live_simple")["live_simple_58-27-0"]
    assert item.meta["system"].strip() and item.turns[0].strip()


def test_tools_are_converted_exactly_as_bfcl_converts_them_for_openai(wheel: Path) -> None:
    """Against BFCL's own ``convert_to_tool`` (OpenAI completions style), every item.

    That function's module imports Java and JavaScript call parsers (tree-sitter) and
    BFCL's file utilities, which it does not use; only here are those stubbed out.
    """
    modules = bfcl._modules(wheel)
    stubs = {
        "bfcl_eval.model_handler.parser.java_parser": {"parse_java_function_call": None},
        "bfcl_eval.model_handler.parser.js_parser": {"parse_javascript_function_call": None},
        "bfcl_eval.utils": {},
    }
    before = set(sys.modules)
    try:
        sys.modules.update(modules)
        for name, attributes in stubs.items():
            sys.modules[name] = types.ModuleType(name)
            sys.modules[name].__dict__.update(attributes)
        with zipfile.ZipFile(wheel) as archive:
            for name in (
                "bfcl_eval.constants.default_prompts",
                "bfcl_eval.model_handler.parser.json_parser",
                "bfcl_eval.model_handler.parser.xml_parser",
            ):
                bfcl._execute(archive, name)
            handler_utils = bfcl._execute(archive, "bfcl_eval.model_handler.utils")
    finally:
        for name in set(sys.modules) - before:
            del sys.modules[name]
    style = modules["bfcl_eval.constants.enums"].ModelStyle.OPENAI_COMPLETIONS
    table = bfcl.gorilla_to_openapi(wheel)
    for subset in COUNTS:
        for item in load_dataset(f"bfcl:{subset}"):
            theirs = handler_utils.convert_to_tool(item.meta["functions"], table, style)
            assert item.meta["tools"] == theirs, item.id


def test_float_and_dict_types_become_number_and_object(wheel: Path) -> None:
    functions = [
        {
            "name": "geo.distance",
            "description": "Distance.",
            "parameters": {
                "type": "dict",
                "properties": {
                    "km": {"type": "float", "description": "Kilometres."},
                    "where": {"type": "dict", "properties": {"x": {"type": "float"}}},
                },
            },
        }
    ]
    before = copy.deepcopy(functions)
    (tool,) = bfcl.openai_tools(functions, bfcl.gorilla_to_openapi(wheel))
    assert functions == before
    function = tool["function"]
    assert function["name"] == "geo_distance"
    properties = function["parameters"]["properties"]
    assert function["parameters"]["type"] == "object"
    assert properties["km"] == {
        "type": "number",
        "format": "float",
        "description": "Kilometres. This is a float type value.",
    }
    assert properties["where"]["type"] == "object"
    assert properties["where"]["properties"]["x"]["type"] == "number"


@pytest.mark.parametrize(
    ("subset", "ids"),
    [
        ("simple_python", ["simple_python_0", "simple_python_1", "simple_python_2"]),
        ("multiple", ["multiple_0", "multiple_8"]),
        ("parallel", ["parallel_0", "parallel_1"]),
        ("parallel_multiple", ["parallel_multiple_0"]),
        ("live_simple", ["live_simple_0-0-0", "live_simple_58-27-0"]),
    ],
)
def test_ground_truth_passes_bfcls_checker(wheel: Path, subset: str, ids: list[str]) -> None:
    items = _items(subset)
    for item_id in ids:
        calls = _ground_truth_calls(items[item_id])
        assert _score(f"bfcl:{subset}", items[item_id], calls) == 1.0, item_id


def test_parallel_calls_pass_in_any_order(wheel: Path) -> None:
    item = _items("parallel")["parallel_0"]
    calls = _ground_truth_calls(item)
    assert len(calls) > 1
    assert _score("bfcl:parallel", item, calls[::-1]) == 1.0
    assert _score("bfcl:parallel", item, calls[:1]) == 0.0


def test_a_wrong_argument_fails(wheel: Path) -> None:
    item = _items("simple_python")["simple_python_0"]  # base 10, height 5
    (call,) = _ground_truth_calls(item)
    assert call["arguments"]["base"] == 10
    wrong = {**call, "arguments": {**call["arguments"], "base": 11}}
    assert _score("bfcl:simple_python", item, [wrong]) == 0.0
    as_text = {**call, "arguments": {**call["arguments"], "base": "10"}}
    assert _score("bfcl:simple_python", item, [as_text]) == 0.0  # BFCL checks types


def test_a_missing_required_argument_fails(wheel: Path) -> None:
    item = _items("simple_python")["simple_python_0"]
    (call,) = _ground_truth_calls(item)
    assert "height" in item.meta["functions"][0]["parameters"]["required"]
    missing = {**call, "arguments": {k: v for k, v in call["arguments"].items() if k != "height"}}
    assert _score("bfcl:simple_python", item, [missing]) == 0.0


def test_no_call_fails_and_a_wrong_function_fails(wheel: Path) -> None:
    items = _items("multiple")
    item = items["multiple_0"]
    assert _score("bfcl:multiple", item, []) == 0.0
    (call,) = _ground_truth_calls(item)
    names = [tool["function"]["name"] for tool in item.meta["tools"]]
    other = next(name for name in names if name != call["name"])
    assert _score("bfcl:multiple", item, [{**call, "name": other}]) == 0.0


def test_irrelevance_passes_without_a_call_and_fails_with_one(wheel: Path) -> None:
    item = _items("irrelevance")["irrelevance_0"]
    tool = item.meta["tools"][0]["function"]
    arguments = {name: 1.0 for name in tool["parameters"]["required"]}
    metrics = score("bfcl:irrelevance", "I cannot compute that with these tools.", item, [])
    assert metrics == {"accuracy": 1.0} and is_correct("bfcl:irrelevance", metrics)
    assert _score("bfcl:irrelevance", item, [{"name": tool["name"], "arguments": arguments}]) == 0.0
    assert _score("bfcl:irrelevance", item, [{"name": tool["name"], "arguments": {}}]) == 0.0


def test_the_checker_runs_from_the_wheel_and_leaves_no_modules_behind(wheel: Path) -> None:
    checker = bfcl.load_checker(wheel)
    assert checker.__file__ == f"{wheel}/bfcl_eval/eval_checker/ast_eval/ast_checker.py"
    assert not [name for name in sys.modules if name.startswith("bfcl_eval")]


def test_unknown_subsets_are_one_line_errors(wheel: Path) -> None:
    with pytest.raises(DatasetError, match="unknown BFCL subset 'simple_java'"):
        load_dataset("bfcl:simple_java")
    with pytest.raises(DatasetError, match="name a BFCL subset: bfcl:simple_python"):
        load_dataset("bfcl")


# ``moa eval run bfcl:...`` as a real process against the loopback OpenAI server.


@pytest.fixture
def server() -> Iterator[Any]:
    with serve(lambda request: "I would call the tool.") as running:
        yield running


def test_eval_run_bfcl_scores_tool_calls_and_resumes(tmp_path: Path, wheel: Path, server) -> None:
    first, second = select_items(load_dataset("bfcl:simple_python"), limit=2)
    right = {call["name"]: call["arguments"] for call in _ground_truth_calls(first)}
    # The first item's call is answered right; the second's with schema samples (wrong).
    server.arguments = lambda name, request: right.get(name) or {"x": 0}
    config = server.write_config(tmp_path / "moa.yaml", "loop")
    args = ["eval", "run", "bfcl:simple_python", "-c", str(config)]
    done = moa(*args, "--out", str(tmp_path / "out"), "-n", "2", "--no-progress")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out" / "bfcl-simple_python"
    rows = {row["id"]: row for row in map(json.loads, (out / "loop.jsonl").open())}
    assert set(rows) == {first.id, second.id}
    assert rows[first.id]["correct"] is True and rows[second.id]["correct"] is False
    assert [c["name"] for c in rows[first.id]["calls"]] == list(right)
    aggregator = [r for r in server.requests if r["model"] == "omega"]
    assert len(aggregator) == 2
    first_request = next(r for r in aggregator if first.turns[0] in json.dumps(r["messages"]))
    assert first_request["tools"] == first.meta["tools"]
    assert "| loop | 2 | 1 |" in (out / "results.md").read_text()
    calls = len(server.requests)
    again = moa(*args, "--out", str(tmp_path / "out"), "-n", "2", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert len(server.requests) == calls  # both items were done: nothing ran again


def test_eval_run_bfcl_refuses_an_unknown_subset_in_one_line(tmp_path: Path) -> None:
    done = moa("eval", "run", "bfcl:java", "-p", "local-tiny", "--out", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: unknown BFCL subset 'java' (known: simple_python, multiple, parallel, "
        "parallel_multiple, irrelevance, live_simple)"
    ]


def test_a_question_with_a_system_message_is_asked_with_it(tmp_path: Path, wheel: Path) -> None:
    import asyncio

    from moa_graph.config.model import MoAConfig
    from moa_graph.eval.runner import run_eval

    item = _items("live_simple")["live_simple_58-27-0"]
    with serve(lambda request: "text") as running:
        agent = {"model": "openai:omega", "base_url": running.url}
        config = MoAConfig.model_validate(
            {"name": "one", "layers": [[{**agent, "model": "openai:alpha"}]], "aggregator": agent}
        )
        (result,) = asyncio.run(
            run_eval(config, "bfcl:live_simple", tmp_path, items=[item], progress=False)
        )
    (request,) = [r for r in running.requests if r["model"] == "omega"]
    assert request["messages"][0]["role"] == "system"
    assert item.meta["system"].strip() in request["messages"][0]["content"]
    assert request["messages"][-1]["content"] == item.turns[0]
    assert result.calls and result.calls[0]["name"] == item.meta["tools"][0]["function"]["name"]
