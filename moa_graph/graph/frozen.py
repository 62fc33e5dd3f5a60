"""JSON data in a hashable form, for the parts of a run's options that are JSON.

A run's tools, ``tool_choice`` and ``response_format`` are JSON objects (OpenAI's
schemas). :class:`~moa_graph.graph.plan.RunOptions` keeps them frozen, so options are
hashable (plans are kept per distinct options) and can be neither changed nor
shared by mistake: :func:`freeze` makes objects :class:`FrozenDict` and arrays
tuples, :func:`thaw` gives back plain dicts and lists for the model clients.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class FrozenDict(Mapping[str, Any]):
    """A JSON object that cannot change, and so can be hashed.

    Its keys are sorted, so equal objects are equal (and hash alike) whatever order
    their keys were written in, and reach a model in one order.
    """

    __slots__ = ("_hash", "_items")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._items = {key: freeze(data[key]) for key in sorted(data)}
        self._hash = hash(tuple(self._items.items()))

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        """Equal to a frozen object with the same items, or to the plain data it froze."""
        if isinstance(other, FrozenDict):
            return self._items == other._items
        return isinstance(other, Mapping) and thaw(self) == thaw(other)

    def __repr__(self) -> str:
        return f"FrozenDict({self._items!r})"


def freeze(value: Any) -> Any:
    """Return JSON data with every object a :class:`FrozenDict` and every array a tuple."""
    if isinstance(value, FrozenDict):
        return value
    if isinstance(value, Mapping):
        return FrozenDict(value)
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """Return frozen JSON data as plain dicts and lists (what :func:`freeze` took)."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value
