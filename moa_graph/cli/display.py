"""Terminal display of a MoA run: a live table of agents, then the streamed answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from langchain_core.messages import AIMessage
from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from moa_graph.config.model import MoAConfig
from moa_graph.graph.state import ProgressEvent, Proposal
from moa_graph.run.streaming import Event, Finished, Progress, Token

_LITERAL: dict[str, Any] = {"soft_wrap": True, "highlight": False, "markup": False, "emoji": False}
"""Console.print options that print model text exactly as it is."""


class ProgressTable:
    """The live state of every agent of one run, rendered as a rich table.

    Names, models and every other text from a config are shown literally, never read
    as console markup.
    """

    def __init__(self, config: MoAConfig) -> None:
        self._rows: dict[tuple[int, str], dict[str, Any]] = {}
        agents = [(n, a) for n, layer in enumerate(config.layers, 1) for a in layer]
        agents.append((len(config.layers) + 1, config.aggregator))
        for layer, agent in agents:
            self._rows[(layer, agent.name or "")] = {"model": agent.model_id, "status": "waiting"}
        self._aggregator = (len(config.layers) + 1, config.aggregator.name or "")
        self.exit: str | None = None  # how the run left its layers early, if it did

    def update(self, event: ProgressEvent) -> None:
        """Apply one progress event."""
        if event["event"] == "layer_started":
            return
        if event["event"] == "early_exit":
            where = event["moa_layer"], event["moa_stage"]
            self._exited(*where, event["moa_action"], event["moa_reason"])
            return
        # The aggregator's layer is the last one run plus one, which a stop may lower.
        key = self._aggregator if event.get("moa_role") == "aggregator" else None
        row = self._rows.get(key or (event["moa_layer"], event["moa_agent"]))
        if row is None:
            return
        if event["event"] == "agent_finished":
            row.update(
                status="done",
                latency=f"{event['latency_s']:.1f}s",
                tokens=f"{event['input_tokens']} → {event['output_tokens']}",
            )
        elif event["event"] == "agent_failed":
            row["status"] = "failed"
        else:
            row["status"] = "running"

    def finish(self, state: dict[str, Any] | None) -> None:
        """Show the state the run ended in, whatever events were seen.

        A resumed run sends no events for the agents that answered before it was
        stopped, so the final state's proposals decide each proposer's row.

        Args:
            state: The final state of a run that finished, or None for a run that
                stopped with an error (its running agents are then failed).
        """
        if state is None:
            for row in self._rows.values():
                if row["status"] == "running":
                    row["status"] = "failed"
            return
        proposals: list[Proposal] = state.get("proposals", [])
        for proposal in proposals:
            shown = self._rows.get((proposal.layer, proposal.agent))
            if shown is not None:
                shown["status"] = "done" if proposal.ok else "failed"
                shown["latency"] = f"{proposal.latency_s:.1f}s"
                if proposal.ok:
                    shown["tokens"] = f"{proposal.input_tokens} → {proposal.output_tokens}"
        self._rows[self._aggregator]["status"] = "done"
        if exit_ := state.get("exit"):
            self._exited(exit_["layer"], exit_["stage"], exit_["action"], exit_["reason"])

    def _exited(self, layer: int, stage: int, action: str, reason: str) -> None:
        """Say where and why the run left its layers early; mark the agents it skips."""
        then = "the rest" if action == "answer" else "later layers"
        self.exit = f"layer {layer}, stage {stage}: {reason}; {then} skipped"
        for key, row in self._rows.items():
            if row["status"] == "waiting" and key != self._aggregator:
                row["status"] = "skipped"
        if action == "answer":
            self._rows[self._aggregator]["status"] = "skipped"

    def __rich__(self) -> Table | Group:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("layer", "agent", "model", "status", "latency", "tokens in → out"):
            table.add_column(column)
        for (layer, agent), row in self._rows.items():
            status = row["status"]
            shown: Any = Spinner("dots", text="running") if status == "running" else status
            if status == "failed":
                shown = Text(status, style="red")
            label = "agg" if (layer, agent) == self._aggregator else str(layer)
            table.add_row(
                label,
                Text(agent),
                Text(row["model"]),
                shown,
                row.get("latency", ""),
                row.get("tokens", ""),
            )
        return Group(table, Text(self.exit, style="green")) if self.exit else table


async def render_run(
    events: AsyncIterator[Event],
    config: MoAConfig,
    *,
    out: Console,
    err: Console,
    live: bool = True,
) -> dict[str, Any]:
    """Show a run: progress on ``err`` while it lasts, the answer streamed to ``out``.

    On a terminal the table of agents is redrawn live and cleared when the answer
    starts; at the end (or failure) it is printed as the run left it. Model text is
    shown literally.

    Args:
        events: The run's events, from :func:`moa_graph.run.streaming.stream_moa`.
        config: The run's config, for the table's rows.
        out: Where the answer goes.
        err: Where progress goes.
        live: Show progress and stream tokens; when False, only collect the result.

    Returns:
        The final state.
    """
    table = ProgressTable(config)
    redraw = live and err.is_terminal and not err.is_dumb_terminal
    display = Live(table, console=err, transient=True, refresh_per_second=8) if redraw else None
    answering, final = False, None
    if display:
        display.start()
    try:
        async for event in events:
            if isinstance(event, Progress):
                table.update(event.data)
            elif isinstance(event, Token) and live:
                if display and display.is_started:
                    display.stop()
                answering = True
                out.print(event.text, end="", **_LITERAL)
            elif isinstance(event, Finished):
                final = event.state
    finally:
        if display and display.is_started:
            display.stop()
        if live:
            _show_end(table, final, answering, out=out, err=err)
    return final or {}


def _show_end(
    table: ProgressTable,
    final: dict[str, Any] | None,
    answered: bool,
    *,
    out: Console,
    err: Console,
) -> None:
    """End a shown run: the answer if it was not streamed, then the table as it ended."""
    if answered:
        out.print()
    elif final and final.get("messages"):
        out.print(final["messages"][-1].text, **_LITERAL)
    table.finish(final)
    err.print(table)


_CHOSEN_BY = {
    "vote": "a vote of their final answers",
    "examples": "running its code on the prompt's examples",
    "similarity": "agreeing most with the others",
    "rank": "the aggregator's ranking",
}


def how_answered(answer: AIMessage) -> str:
    """Return how the aggregation came to an answer, from its ``response_metadata``."""
    meta = answer.response_metadata
    if meta.get("moa_strategy") == "early_exit":
        return (
            f"the answer is proposal {meta['moa_chosen'] + 1} of layer {meta['moa_exit_layer']}, "
            f"on which the proposals agreed ({meta['moa_exit_reason']}); later layers and "
            "the aggregator were skipped"
        )
    if "moa_chosen" not in meta:
        return "the aggregator wrote the answer from the last layer's proposals"
    how = _CHOSEN_BY.get(meta.get("moa_strategy", ""), "the aggregation")
    return f"the answer is proposal {meta['moa_chosen'] + 1} of the last layer, chosen by {how}"


def render_proposals(
    proposals: Sequence[Proposal], console: Console, answer: AIMessage | None = None
) -> None:
    """Print every proposal in a panel titled with its layer, agent and cost.

    With the ``answer``, a last line says how the aggregation came to it.
    """
    panels = [
        Panel(
            Markdown(p.content),
            title=Text(f"layer {p.layer} · {p.agent} · {p.model}"),
            subtitle=Text(f"{p.input_tokens} → {p.output_tokens} tokens · {p.latency_s:.1f}s"),
            title_align="left",
            subtitle_align="right",
        )
        for p in proposals
    ]
    console.print(Group(*panels))
    if answer is not None:
        console.print(Text(how_answered(answer)))
