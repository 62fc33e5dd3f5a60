"""Offline BM25 search over the small document set in ``graphs/documents``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import bm25s

DOCUMENTS = Path(__file__).parent / "documents"


@dataclass(frozen=True)
class Passage:
    """One paragraph of a document, and how well it matched."""

    source: str
    text: str
    score: float


@cache
def _index() -> tuple[bm25s.BM25, tuple[tuple[str, str], ...]]:
    passages = tuple(
        (path.name, paragraph.strip())
        for path in sorted(DOCUMENTS.glob("*.md"))
        for paragraph in path.read_text(encoding="utf-8").split("\n\n")
        if paragraph.strip() and not paragraph.startswith("#")
    )
    retriever = bm25s.BM25()
    tokens = bm25s.tokenize([text for _, text in passages], stopwords="en", show_progress=False)
    retriever.index(tokens, show_progress=False)
    return retriever, passages


def search(query: str, k: int = 2) -> list[Passage]:
    """Return up to ``k`` passages matching ``query``, best first; none if nothing matches."""
    retriever, passages = _index()
    tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
    if not tokens.vocab:
        return []
    ids, scores = retriever.retrieve(tokens, k=min(k, len(passages)), show_progress=False)
    return [
        Passage(passages[i][0], passages[i][1], float(s))
        for i, s in zip(ids[0], scores[0], strict=True)
        if s > 0
    ]
