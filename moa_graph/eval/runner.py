"""Run a benchmark on one configuration, saving each item's result as it finishes.

Results go to ``<out_dir>/<label>.jsonl``, one line per item; a run that is
interrupted and started again skips the items already there.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from moa_graph.config.model import MoAConfig
from moa_graph.errors import ConfigError
from moa_graph.eval.call_cache import SQLiteCallCache
from moa_graph.eval.datasets import load_dataset
from moa_graph.eval.items import Item
from moa_graph.eval.scoring import is_correct, score
from moa_graph.graph.plan import RunOptions
from moa_graph.graph.state import RunExit
from moa_graph.run.factory import create_moa


class ItemResult(BaseModel):
    """What one configuration answered to one item, and what it cost.

    Attributes:
        id: The item's id.
        label: The configuration's label.
        outputs: The final answer to each user turn.
        calls: The tool calls of the last answer, each ``{"name", "arguments"}``, for
            items that bind tools (BFCL); empty when it answered in text.
        correct: Whether the last answer is right, for exactly scored benchmarks.
        metrics: The scorer's metrics of the last answer (e.g. IFEval's strict and
            loose accuracies); ``correct`` is its primary one.
        proposals: The last layer's proposals to the last turn, in agent order
            (failed ones empty), to study what an aggregation could have picked;
            after an early exit, those of the layer that ended the run.
        tokens: Input and output tokens per model id, over every call of every turn.
        wall_s: Wall time of the item, all turns.
        exits: For each turn, where and why it left its layers early (``early_exit``
            in the config), or None.
    """

    id: str
    label: str
    outputs: list[str]
    calls: list[dict[str, Any]] = Field(default_factory=list)
    correct: bool | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    proposals: list[str] = Field(default_factory=list)
    tokens: dict[str, tuple[int, int]] = Field(default_factory=dict)
    wall_s: float = 0.0
    exits: list[RunExit | None] = Field(default_factory=list)

    @property
    def exited_early(self) -> bool:
        """Whether a turn of the item left its layers early."""
        return any(self.exits)

    @property
    def input_tokens(self) -> int:
        """Prompt tokens of every call."""
        return sum(i for i, _ in self.tokens.values())

    @property
    def output_tokens(self) -> int:
        """Completion tokens of every call."""
        return sum(o for _, o in self.tokens.values())


def select_items(
    items: Sequence[Item], *, limit: int | None = None, seed: int = 0, offset: int = 0
) -> list[Item]:
    """Return a seeded sample of items: shuffle with ``seed``, skip ``offset``, take ``limit``.

    The same seed gives the same order, so ``offset=0, limit=100`` and
    ``offset=100, limit=100`` are disjoint splits (a tuning and a held-out part).
    """
    order = list(items)
    random.Random(seed).shuffle(order)
    end = None if limit is None else offset + limit
    return order[offset:end]


def read_results(path: Path) -> dict[str, ItemResult]:
    """Return the results saved in a JSONL file, by item id (none if it is missing).

    A last line cut short by an interruption is ignored; its item runs again.
    """
    results: dict[str, ItemResult] = {}
    if not path.exists():
        return results
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            result = ItemResult.model_validate_json(line)
        except ValueError:
            continue
        results[result.id] = result
    return results


def _tokens(config: MoAConfig, state: dict[str, Any], into: dict[str, list[int]]) -> None:
    proposals = state.get("proposals", [])
    for proposal in proposals:
        totals = into.setdefault(proposal.model, [0, 0])
        totals[0] += proposal.input_tokens
        totals[1] += proposal.output_tokens
    usage = state.get("usage") or {}
    aggregator = into.setdefault(config.aggregator.model_id, [0, 0])
    aggregator[0] += usage.get("input_tokens", 0) - sum(p.input_tokens for p in proposals)
    aggregator[1] += usage.get("output_tokens", 0) - sum(p.output_tokens for p in proposals)


async def _answer(
    graph: Any, config: MoAConfig, label: str, dataset: str, item: Item
) -> ItemResult:
    system = item.meta.get("system")
    messages: list[AnyMessage] = [SystemMessage(system)] if system else []
    # An item that binds tools (BFCL) is answered with them, as a client's request would be.
    tools = item.meta.get("tools")
    context = RunOptions(tools=tuple(tools)) if tools else None
    outputs: list[str] = []
    exits: list[RunExit | None] = []
    tokens: dict[str, list[int]] = {}
    started = time.perf_counter()
    for turn in item.turns:
        messages = [*messages, HumanMessage(turn)]
        run = {
            "run_name": f"{label} · {dataset}/{item.id}",
            "metadata": {"moa_eval_dataset": dataset, "moa_eval_item": item.id},
            "tags": ["moa:eval"],
        }
        state = await graph.ainvoke({"messages": messages}, run, context=context)
        messages = state["messages"]
        outputs.append(messages[-1].text)
        exits.append(state.get("exit"))
        _tokens(config, state, tokens)
    wall_s = time.perf_counter() - started
    last = messages[-1]
    calls = [
        {"name": call["name"], "arguments": call["args"]}
        for call in (last.tool_calls if isinstance(last, AIMessage) else [])
    ]
    metrics = await asyncio.to_thread(score, dataset, outputs[-1], item, calls)  # may run code
    return ItemResult(
        id=item.id,
        label=label,
        outputs=outputs,
        calls=calls,
        correct=None if metrics is None else is_correct(dataset, metrics),
        metrics=metrics or {},
        proposals=_last_proposals(config, state),
        tokens={model: (i, o) for model, (i, o) in tokens.items() if i or o},
        wall_s=wall_s,
        exits=exits,
    )


def _last_proposals(config: MoAConfig, state: dict[str, Any]) -> list[str]:
    left = state.get("exit")
    last = left["layer"] if left else len(config.layers)
    ordered = sorted(
        (p for p in state.get("proposals", []) if p.layer == last), key=lambda p: (p.turn, p.index)
    )
    by_index = {p.index: p.content for p in ordered}  # the last turn's overwrite earlier ones
    return [by_index.get(i, "") for i in range(len(config.layers[last - 1]))]


def config_label(config: MoAConfig) -> str:
    """Return the label results of a config are saved under: its name, or ``moa``.

    Raises:
        ConfigError: The name holds a path (``../x``), which would put the results
            outside their folder. (A config file's name is checked when loaded.)
    """
    label = config.name or "moa"
    if Path(label).name != label or label in (".", "..") or "\\" in label:
        raise ConfigError(f"invalid config name {label!r}: it names a results file, not a path")
    return label


async def run_evals(
    configs: Sequence[MoAConfig],
    dataset: str,
    out_dir: str | Path,
    *,
    share_calls: bool = True,
    **options: Any,
) -> dict[str, list[ItemResult]]:
    """Run several configurations on the same items, one after another.

    Args:
        configs: The configurations; their labels must differ.
        dataset: The benchmark, as for :func:`run_eval`.
        out_dir: Where each ``<label>.jsonl`` is written (a rerun resumes).
        share_calls: Pay once for a repeatable model call (the same greedy or seeded
            sample) that several configurations make, in this run or an earlier one:
            such calls are kept in ``<out_dir>/calls.sqlite``.
        **options: The other arguments of :func:`run_eval` (``limit``, ``seed``, ...).

    Returns:
        The results of each configuration, by label, in the order given.

    Raises:
        ConfigError: Two configurations have the same label.
    """
    labels = [config_label(config) for config in configs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"configurations need distinct names; repeated: {', '.join(repeated)}")
    cache = None
    if share_calls:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        cache = SQLiteCallCache(Path(out_dir) / "calls.sqlite")
    if options.get("items") is None:
        options["items"] = load_dataset(dataset)  # read once, not once per config
    return {
        label: await run_eval(config, dataset, out_dir, cache=cache, **options)
        for label, config in zip(labels, configs, strict=True)
    }


async def run_eval(
    config: MoAConfig,
    dataset: str,
    out_dir: str | Path,
    *,
    items: Sequence[Item] | None = None,
    limit: int | None = None,
    seed: int = 0,
    offset: int = 0,
    concurrency: int = 4,
    progress: bool = True,
    cache: BaseCache | None = None,
) -> list[ItemResult]:
    """Run a benchmark on one configuration; resume from earlier results.

    Args:
        config: The configuration; its ``name`` labels the results file.
        dataset: A name from :data:`~moa_graph.eval.datasets.DATASETS` (picks the scorer).
        out_dir: Where ``<label>.jsonl`` is written.
        items: The items to run; loaded from ``dataset`` when None.
        limit: Run at most this many items of the seeded order.
        seed: Seed of the item order.
        offset: Skip this many items of the seeded order first.
        concurrency: Items answered at once.
        progress: Draw a progress bar on stderr.
        cache: Shared with other runs, it answers the repeatable calls (temperature 0
            or seeded) they already made; see :func:`~moa_graph.run.factory.create_moa`.
            Tokens and cost still count every call; wall time counts those made.

    Returns:
        The results of the selected items, in selection order. Items whose run
        failed are left out (and run again next time); their errors are printed.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    chosen = select_items(
        items if items is not None else load_dataset(dataset), limit=limit, seed=seed, offset=offset
    )
    label = config_label(config)
    path = Path(out_dir) / f"{label}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = read_results(path)
    graph = create_moa(config, cache=cache).compile()
    answer = functools.partial(_answer, graph, config, label, dataset)
    title = f"{label} · {dataset}"
    await _answer_missing(chosen, done, answer, path, title, concurrency, progress=progress)
    return [done[item.id] for item in chosen if item.id in done]


async def _answer_missing(
    chosen: Sequence[Item],
    done: dict[str, ItemResult],
    answer: Callable[[Item], Awaitable[ItemResult]],
    path: Path,
    title: str,
    concurrency: int,
    *,
    progress: bool,
) -> None:
    """Answer the chosen items not ``done`` yet, adding each result to ``done`` and ``path``.

    An item whose run fails is left out; the first five errors are printed on stderr.
    """
    todo = [item for item in chosen if item.id not in done]
    semaphore = asyncio.Semaphore(concurrency)
    errors: list[str] = []
    console = Console(stderr=True)
    bar = Progress(
        TextColumn(title),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
    )

    with bar, path.open("a", encoding="utf-8") as sink:
        task = bar.add_task(title, total=len(chosen), completed=len(chosen) - len(todo))

        async def one(item: Item) -> None:
            async with semaphore:
                try:
                    result = await answer(item)
                except Exception as error:  # one bad item must not end a long run
                    errors.append(f"{item.id}: {type(error).__name__}: {error}")
                    return
            done[item.id] = result
            sink.write(result.model_dump_json() + "\n")
            sink.flush()
            bar.advance(task)

        await asyncio.gather(*(one(item) for item in todo))
    for error in errors[:5]:
        console.print(f"[red]item failed[/] {error}", highlight=False)


def save_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented UTF-8 JSON."""
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
