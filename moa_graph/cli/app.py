"""The ``moa`` command line: a thin shell over the library.

Heavy imports (LangGraph, LangChain) happen inside the commands, so ``moa --help``
starts fast.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.text import Text

from moa_graph.cli.eval import app as eval_app
from moa_graph.cli.models import app as models_app
from moa_graph.cli.options import ConfigOption, PresetOption, chosen_config
from moa_graph.cli.serve import serve_command

if TYPE_CHECKING:
    from langchain_core.messages import AnyMessage

    from moa_graph.config.model import MoAConfig

app = typer.Typer(
    name="moa",
    help="Mixture-of-Agents: layered LLMs answering as one, built on LangGraph.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
presets_app = typer.Typer(help="List and show the shipped presets.", invoke_without_command=True)
app.add_typer(presets_app, name="presets")
app.add_typer(models_app, name="models")
app.add_typer(eval_app, name="eval")
app.command("serve")(serve_command)

_out = Console()
_err = Console(stderr=True)
_debug = False

ShowProposalsOption = Annotated[
    bool, typer.Option("--show-proposals", help="Print every proposer's response too.")
]
PromptArgument = Annotated[
    Optional[str],  # noqa: UP045
    typer.Argument(help="The question; '-' reads it from stdin.", show_default=False),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print answer, proposals and usage as JSON.")
]
ThreadOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--thread", help="Save the run under this thread id, to resume it."),
]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="Finish the interrupted run of --thread.")
]
CheckpointsOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--checkpoints",
        help="SQLite file or postgresql:// DSN for --thread "
        "(default: $MOA_CHECKPOINTS or ~/.local/state/moa-graph/checkpoints.sqlite).",
        show_default=False,
    ),
]


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", envvar="MOA_DEBUG", help="Show tracebacks on errors.")
    ] = False,
) -> None:
    global _debug
    _debug = debug


def _print_error(message: str) -> None:
    """Print ``error: message`` on one line, the message exactly as it is (no markup)."""
    _err.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


def _fail(message: str) -> NoReturn:
    _print_error(message)
    raise typer.Exit(1)


async def _answer(
    config: MoAConfig,
    messages: list[AnyMessage],
    *,
    live: bool,
    thread: str | None = None,
    checkpoints: str | None = None,
) -> dict[str, Any]:
    from moa_graph.cli.display import render_run
    from moa_graph.graph.plan import RunOptions
    from moa_graph.run.factory import create_moa
    from moa_graph.run.streaming import stream_moa

    # The answer streams; proposals are shown whole (--show-proposals), never token by token.
    options = RunOptions(show_proposals=False)
    builder = create_moa(config, context_schema=RunOptions)
    if thread is None:
        events = stream_moa(builder.compile(), {"messages": messages}, context=options, tokens=live)
        return await render_run(events, config, out=_out, err=_err, live=live)
    from moa_graph.run.checkpoints import default_checkpoints, open_checkpointer, resume_input

    async with open_checkpointer(
        default_checkpoints() if checkpoints is None else checkpoints
    ) as saver:
        graph = builder.compile(checkpointer=saver)
        run_input, run_config = await resume_input(graph, thread, messages)
        events = stream_moa(
            graph, run_input, run_config, context=options, durability="sync", tokens=live
        )
        return await render_run(events, config, out=_out, err=_err, live=live)


def _as_json(config: MoAConfig, state: dict[str, Any]) -> str:
    data = {
        "answer": state["messages"][-1].text,
        "preset": config.name,
        "proposals": [p.model_dump() for p in state["proposals"]],
        "usage": dict(state["usage"]),
    }
    if state.get("exit"):
        data["exit"] = dict(state["exit"])
    return json.dumps(data, indent=2, ensure_ascii=False)


@app.command()
def ask(
    prompt: PromptArgument = None,
    preset: PresetOption = None,
    config_file: ConfigOption = None,
    show_proposals: ShowProposalsOption = False,
    as_json: JsonOption = False,
    thread: ThreadOption = None,
    resume: ResumeOption = False,
    checkpoints: CheckpointsOption = None,
) -> None:
    """Answer one prompt with a Mixture-of-Agents."""
    from langchain_core.messages import HumanMessage

    from moa_graph.cli.display import render_proposals
    from moa_graph.graph.build import check_input

    if resume and (thread is None or prompt is not None):
        _fail("--resume needs --thread and no prompt")
    if prompt == "-":
        prompt = sys.stdin.read()
    if not resume and not (prompt or "").strip():
        _fail("the prompt is empty")
    config = chosen_config(preset, config_file)
    messages: list[AnyMessage] = [] if resume else [HumanMessage(prompt)]
    if messages:
        check_input(config, messages)  # before anything is written to a checkpoint
    run = _answer(config, messages, live=not as_json, thread=thread, checkpoints=checkpoints)
    state = asyncio.run(run)
    if as_json:
        _out.print_json(_as_json(config, state)) if _out.is_terminal else print(
            _as_json(config, state)
        )
    elif show_proposals:
        render_proposals(state["proposals"], _err, state["messages"][-1])


@app.command()
def chat(
    preset: PresetOption = None,
    config_file: ConfigOption = None,
    show_proposals: ShowProposalsOption = False,
) -> None:
    """Talk with a Mixture-of-Agents, turn after turn (/reset forgets, /exit quits)."""
    from langchain_core.messages import HumanMessage

    from moa_graph.cli.display import render_proposals

    config = chosen_config(preset, config_file)
    name = config.name or "custom config"
    _err.print(Text(f"moa chat · {name} · /reset forgets, /exit or Ctrl-D quits", style="dim"))
    messages: list[AnyMessage] = []
    while True:
        try:
            prompt = _err.input("[bold cyan]you>[/] ")
        except EOFError:
            _err.print()
            return
        command = prompt.strip()
        if command in ("/exit", "/quit"):
            return
        if command == "/reset":
            messages = []
            _err.print("[dim]conversation cleared[/]")
            continue
        if not command:
            continue
        state = asyncio.run(_answer(config, [*messages, HumanMessage(prompt)], live=True))
        messages = state["messages"]
        if show_proposals:
            render_proposals(state["proposals"], _err, state["messages"][-1])


@presets_app.callback()
def presets(ctx: typer.Context) -> None:
    """List the shipped presets."""
    if ctx.invoked_subcommand:
        return
    from rich.table import Table

    from moa_graph.config.presets import list_presets, load_preset

    table = Table("preset", "agents per layer", "aggregator", "description", header_style="bold")
    for name in list_presets():
        config = load_preset(name)
        shape = " + ".join(str(len(layer)) for layer in config.layers)
        table.add_row(name, shape, config.aggregator.model_id, config.description)
    _out.print(table)


@presets_app.command("show")
def presets_show(name: Annotated[str, typer.Argument(help="Preset name.")]) -> None:
    """Print a preset as YAML, ready to copy into a config file and edit."""
    import yaml

    from moa_graph.config.presets import load_preset

    data = load_preset(name).to_dict()
    print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")


def main() -> None:
    """Entry point of the ``moa`` command: one-line errors unless ``--debug``."""
    from moa_graph.errors import MoAError

    try:
        app()
    except KeyboardInterrupt:
        _err.print("[dim]interrupted[/]")
        sys.exit(130)
    except Exception as error:
        if _debug:
            raise
        message = str(error).splitlines()[0] if str(error) else ""
        if not isinstance(error, MoAError):
            message = f"{type(error).__name__}: {message}"
        _print_error(message)
        sys.exit(1)


if __name__ == "__main__":
    main()
