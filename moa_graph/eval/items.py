"""What the benchmark loaders share: the :class:`Item` they return and :class:`DatasetError`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moa_graph.errors import MoAError


class DatasetError(MoAError):
    """A benchmark file cannot be fetched, fails its checksum, or is unknown."""


@dataclass(frozen=True)
class Item:
    """One benchmark question.

    Attributes:
        id: Stable identifier within its dataset.
        turns: The user messages, in order (two for MT-Bench, one otherwise).
        reference: The exact answer, or the reference output (AlpacaEval); None
            when there is none.
        meta: Dataset-specific fields kept for the output formats (category,
            dataset, source).
    """

    id: str
    turns: tuple[str, ...]
    reference: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
