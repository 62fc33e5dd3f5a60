"""Config files: read, load and save a ``MoAConfig`` (YAML, TOML, JSON)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import yaml

from moa_graph.config.model import MoAConfig, config_from_data
from moa_graph.config.presets import check_name
from moa_graph.errors import ConfigError

ALIAS_BUDGET = 10_000
"""Most YAML nodes a config file's aliases may add when expanded: enough to reuse an
agent many times, far too few for a "billion laughs" file to cost time or memory."""


class _AliasesExpandTooFar(Exception):
    """A YAML document's aliases expand it past :data:`ALIAS_BUDGET`, or into itself."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a document whose aliases expand it too far.

    PyYAML builds an alias as a reference to its anchor's object, so loading is cheap
    even for nested aliases; the cost comes later, from everything that walks the
    data as a tree (validation copies every leaf): 10^8 leaves from a 1 kB file.
    """

    def compose_document(self) -> yaml.Node | None:
        node: yaml.Node | None = super().compose_document()
        if node is not None:
            distinct: dict[int, int] = {}
            if _expanded_size(node, distinct) - len(distinct) > ALIAS_BUDGET:
                raise _AliasesExpandTooFar
        return node


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Return the nodes under ``node`` counted as a tree (each alias expanded).

    ``sizes`` memoizes each distinct node's, so the work is linear in the document;
    a node under way (-1) is one that holds itself.
    """
    known = sizes.get(id(node))
    if known is not None:
        if known < 0:
            raise _AliasesExpandTooFar
        return known
    sizes[id(node)] = -1
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    sizes[id(node)] = size
    return size


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML, TOML or JSON file into plain data without validating it.

    Raises:
        ConfigError: The file is missing, unreadable or not well-formed, or its YAML
            aliases expand it by more than :data:`ALIAS_BUDGET` nodes.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file {path} is not UTF-8 text: byte {error.object[error.start]:#04x} "
            f"at offset {error.start}"
        ) from None
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader
        else:
            raise ConfigError(f"config file {path} must end in .yaml, .yml, .toml or .json")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"config file {path} is malformed{_syntax_error(error)}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply") from None
    except _AliasesExpandTooFar:
        raise ConfigError(
            f"config file {path} is refused: its YAML aliases expand it by more than "
            f"{ALIAS_BUDGET} nodes"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _syntax_error(error: yaml.YAMLError | ValueError) -> str:
    """Return where a YAML, JSON or TOML syntax error is and what it is, on one line.

    The text follows "is malformed": `` at line 2, column 1: ...`` or ``: ...``.
    """
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark, problem = error.problem_mark, error.problem or "syntax error"
        detail = f" at line {mark.line + 1}, column {mark.column + 1}: {problem}"
        if error.context:
            start = error.context_mark
            at = f" at line {start.line + 1}, column {start.column + 1}" if start else ""
            detail += f" ({error.context}{at})"
        return detail
    if isinstance(error, yaml.reader.ReaderError):
        return f" at character {error.position + 1}: unacceptable character #x{error.character:04x}"
    if isinstance(error, json.JSONDecodeError):
        return f" at line {error.lineno}, column {error.colno}: {error.msg}"
    return ": " + " ".join(str(error).split())  # TOML's message ends with its line and column


def load_config(path: str | Path) -> MoAConfig:
    """Load a config from a YAML, TOML or JSON file.

    Args:
        path: The file; its suffix picks the format.

    Raises:
        ConfigError: The file cannot be read or parsed, its ``name`` is not a name
            (the rule of preset names: it becomes a file name), or a field is
            invalid; the message names the file and the field.
    """
    data = read_config_file(path)
    if data.get("name") is not None:  # it names the files of `moa eval run`
        try:
            check_name(data["name"], "config name")
        except ConfigError as error:
            raise ConfigError(f"config file {path}: {error}") from None
    return config_from_data(data, source=f"config file {path}")


def save_config(config: MoAConfig, path: str | Path) -> None:
    """Write a config to a YAML or JSON file (TOML cannot hold its nested lists).

    Raises:
        ConfigError: An agent's model is an instance, which a file cannot hold.
    """
    path = Path(path)
    agents = [a for layer in config.layers for a in layer] + [config.aggregator]
    if any(not isinstance(a.model, str) for a in agents):
        raise ConfigError("a config with model instances cannot be saved to a file")
    data = config.to_dict()
    if path.suffix == ".json":
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
