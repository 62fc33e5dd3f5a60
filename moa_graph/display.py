"""Terminal display of a MoA run: a live table of agents, then the streamed answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Table

from moa_graph.config import MoAConfig
from moa_graph.state import Proposal
from moa_graph.streaming import Event, Finished, Progress, Token


class ProgressTable:
    """The live state of every agent of one run, rendered as a rich table."""

    def __init__(self, config: MoAConfig) -> None:
        self._rows: dict[tuple[int, str], dict[str, Any]] = {}
        agents = [(n, a) for n, layer in enumerate(config.layers, 1) for a in layer]
        agents.append((len(config.layers) + 1, config.aggregator))
        for layer, agent in agents:
            self._rows[(layer, agent.name or "")] = {"model": agent.model_id, "status": "waiting"}
        self._aggregator_layer = len(config.layers) + 1

    def update(self, event: dict[str, Any]) -> None:
        """Apply one progress event."""
        row = self._rows.get((event.get("moa_layer", 0), event.get("moa_agent", "")))
        if row is None:
            return
        kind = event["event"]
        if kind in ("agent_started", "aggregator_started"):
            row["status"] = "running"
        elif kind == "agent_finished":
            row.update(
                status="done",
                latency=f"{event['latency_s']:.1f}s",
                tokens=f"{event['input_tokens']} → {event['output_tokens']}",
            )

    def __rich__(self) -> Table:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("layer", "agent", "model", "status", "latency", "tokens in → out"):
            table.add_column(column)
        for (layer, agent), row in self._rows.items():
            status = row["status"]
            shown: Any = Spinner("dots", text="running") if status == "running" else status
            label = "agg" if layer == self._aggregator_layer else str(layer)
            table.add_row(
                label, agent, row["model"], shown, row.get("latency", ""), row.get("tokens", "")
            )
        return table


async def render_run(
    events: AsyncIterator[Event],
    config: MoAConfig,
    *,
    out: Console,
    err: Console,
    live: bool = True,
) -> dict[str, Any]:
    """Show a run: progress on ``err`` while it lasts, the answer streamed to ``out``.

    Args:
        events: The run's events, from :func:`moa_graph.streaming.stream_moa`.
        config: The run's config, for the table's rows.
        out: Where the answer goes.
        err: Where progress goes.
        live: Show progress and stream tokens; when False, only collect the result.

    Returns:
        The final state.
    """
    table = ProgressTable(config)
    display = Live(table, console=err, transient=False, refresh_per_second=8) if live else None
    answering = False
    state: dict[str, Any] = {}
    if display:
        display.start()
    try:
        async for event in events:
            if isinstance(event, Progress):
                table.update(event.data)
            elif isinstance(event, Token) and live:
                if not answering and display:
                    display.stop()
                answering = True
                out.print(event.text, end="", soft_wrap=True, highlight=False, markup=False)
            elif isinstance(event, Finished):
                state = event.state
    finally:
        if display and display.is_started:
            display.stop()
    if live:
        if not answering and state.get("messages"):
            out.print(state["messages"][-1].text, soft_wrap=True, highlight=False, markup=False)
        else:
            out.print()
    return state


def render_proposals(proposals: Sequence[Proposal], console: Console) -> None:
    """Print every proposal in a panel titled with its layer, agent and cost."""
    panels = [
        Panel(
            Markdown(p.content),
            title=f"layer {p.layer} · {p.agent} · {p.model}",
            subtitle=f"{p.input_tokens} → {p.output_tokens} tokens · {p.latency_s:.1f}s",
            title_align="left",
            subtitle_align="right",
        )
        for p in proposals
    ]
    console.print(Group(*panels))
