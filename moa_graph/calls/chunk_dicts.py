"""Streamed chat chunks read as the JSON objects they arrive as, not as SDK models.

LangChain's OpenAI chat models (``ChatOpenAI``, ``ChatTogether``) read every streamed
chunk as a dict: handed the OpenAI SDK's typed chunk, they dump it straight back
(``model_dump``), and accept a dict as it is. Building that typed chunk is the SDK's
``construct_type``, pure Python over every field of every chunk, and it was most of
the CPU a streamed call cost (``python -m benchmarks.overhead``, see
docs/performance.md). :func:`with_dict_chunks` gives such a model a client whose
chat streams yield the decoded JSON instead; everything else the client returns
(whole replies, the SDK's structured-output streams, errors) is the SDK's as before.
"""

from __future__ import annotations

from typing import Any, TypeVar

import openai
from langchain_core.language_models import BaseChatModel
from openai.types.chat import ChatCompletionChunk

_Client = TypeVar("_Client", openai.OpenAI, openai.AsyncOpenAI)


def _is_chunk(data: object, cast_to: Any) -> bool:
    """Whether ``data`` is a streamed chat chunk LangChain reads as it reads the SDK's.

    LangChain indexes a choice's ``delta`` and a streamed tool call's ``index`` and
    ``function``, which the SDK's dump has (``None`` where the server left them out).
    A chunk without one of them, as some OpenAI-compatible servers send, is built as
    the SDK's model, as before.
    """
    if cast_to is not ChatCompletionChunk or not isinstance(data, dict):
        return False
    choices = data.get("choices", [])
    return isinstance(choices, list) and all(_complete(choice) for choice in choices)


def _complete(choice: object) -> bool:
    if not isinstance(choice, dict) or not isinstance(delta := choice.get("delta"), dict):
        return False
    calls = delta.get("tool_calls")
    return calls is None or (
        isinstance(calls, list)
        and all(
            isinstance(call, dict) and "index" in call and isinstance(call.get("function"), dict)
            for call in calls
        )
    )


class _AsyncChunkDicts(openai.AsyncOpenAI):
    """An ``AsyncOpenAI`` whose chat streams yield the chunks' decoded JSON."""

    def _process_response_data(self, *, data: object, cast_to: Any, response: Any) -> Any:
        if _is_chunk(data, cast_to):
            return data
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)


class _SyncChunkDicts(openai.OpenAI):
    """An ``OpenAI`` whose chat streams yield the chunks' decoded JSON."""

    def _process_response_data(self, *, data: object, cast_to: Any, response: Any) -> Any:
        if _is_chunk(data, cast_to):
            return data
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)


def dict_chunks_client(client: _Client) -> _Client:
    """Return a copy of an SDK client whose chat streams yield the chunks' decoded JSON.

    The copy has the client's key, URL, timeout, headers and HTTP pool; only its
    streamed chat chunks differ. It must be an ``openai.OpenAI`` or
    ``openai.AsyncOpenAI`` itself, not a subclass (Azure's).
    """
    dicts = _AsyncChunkDicts if isinstance(client, openai.AsyncOpenAI) else _SyncChunkDicts
    copied = client.copy()
    # The SDK's own copy carries every setting over; its class becomes the subclass
    # that only adds the method above (same layout, so Python allows it).
    copied.__class__ = dicts
    return copied


def with_dict_chunks(model: BaseChatModel) -> BaseChatModel:
    """Make a LangChain OpenAI chat model read its streamed chunks as dicts.

    The model's chat-completion clients (``client``, ``async_client``) are replaced
    by those of :func:`dict_chunks_client` copies of its SDK clients. Its root clients
    stay as they are: the SDK's own structured-output stream, which LangChain uses
    for ``response_format``, reads typed chunks. A model of another kind, or with SDK
    clients of another class (Azure's, a user's own), is returned unchanged.

    Args:
        model: A chat model, changed in place.

    Returns:
        The same model.
    """
    for root_name, chat_name in (("root_async_client", "async_client"), ("root_client", "client")):
        root: Any = getattr(model, root_name, None)
        if type(root) in (openai.AsyncOpenAI, openai.OpenAI):
            setattr(model, chat_name, dict_chunks_client(root).chat.completions)
    return model
