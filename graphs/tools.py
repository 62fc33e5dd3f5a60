"""The tools proposers may call: a calculator and a search over the local documents."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

from langchain_core.tools import BaseTool, tool

from graphs.documents import search

_OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_MAX_EXPONENT = 1000


def evaluate(expression: str) -> float | int:
    """Evaluate an arithmetic expression of numbers, ``+ - * / // % **`` and brackets.

    Raises:
        ValueError: Anything else (names, calls, huge powers), or a division by zero.
    """
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from None

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
                raise ValueError(f"exponent {right} is too large")
            try:
                return _OPERATORS[type(node.op)](left, right)
            except ZeroDivisionError:
                raise ValueError("division by zero") from None
        raise ValueError(f"not allowed in a calculation: {ast.unparse(node)!r}")

    result: float | int = value(tree)
    return result


@tool
def calculator(expression: str) -> str:
    """Compute an arithmetic expression exactly, e.g. ``(1609.344 * 26.2) / 1000``."""
    try:
        return str(evaluate(expression))
    except ValueError as error:
        return f"error: {error}"


@tool
def search_documents(query: str) -> str:
    """Search the local documents (MoA, LangGraph, local models, units) for passages."""
    passages = search(query, k=2)
    if not passages:
        return "no passage matches"
    return "\n\n".join(f"[{p.source}] {p.text}" for p in passages)


TOOLS: list[BaseTool] = [calculator, search_documents]
"""Every tool a proposer of ``moa_with_tools`` may call."""
