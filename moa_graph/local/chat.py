"""Chat models for ``local:NAME`` specs: ``ChatOpenAI`` pointed at the in-process server.

The embedded runtime is reached the same way as any OpenAI-compatible endpoint
(vLLM, Ollama, a remote ``llama-server``): only the base URL differs. Bound tools
are the exception: the server takes none, so :class:`LocalChatModel` writes them
into the prompt and reads calls out of the reply (:mod:`moa_graph.local.tools`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI

from moa_graph.calls.http_pool import async_http_client
from moa_graph.local.catalog import get_model
from moa_graph.local.server import server_for
from moa_graph.local.tools import ToolRequest

_PLACEHOLDER_KEY = "local"  # the server checks no key, but the OpenAI client wants one
_NOT_STARTED = "http://127.0.0.1:0/v1"  # no server yet: nothing listens on port 0


def chat_model(
    name: str,
    *,
    temperature: float,
    max_tokens: int,
    seed: int | None = None,
    start: bool = True,
    **params: Any,
) -> LocalChatModel:
    """Return a chat model served by the embedded llama.cpp runtime.

    Its server serves every chat model of that name; it starts now, or with
    ``start=False`` at the model's first call (or :meth:`LocalChatModel.start`).

    Args:
        name: A local model name, e.g. ``"smollm2-135m"`` for ``local:smollm2-135m``.
        temperature: Sampling temperature.
        max_tokens: Completion budget.
        seed: Sampling seed. A seeded request is repeatable at any temperature: it
            skips the server's prompt cache (and reads its prompt again).
        start: Start the server now (verifying and loading the weights); False:
            only check the name, and leave the weights alone until first use.
        **params: Further ``ChatOpenAI`` settings (``timeout``, ``max_retries``, ...).

    Returns:
        A :class:`LocalChatModel` on the server's ``/v1``.

    Raises:
        UnknownModelError: No local model has that name.
        WeightsNotInstalledError: The weights are not installed; says the command.
        ChecksumMismatchError: The installed file is corrupted; it is not loaded.
        NoFreePortError: No port on 127.0.0.1 could be bound.
        ModelLoadError: llama.cpp could not load the file.
    """
    get_model(name)  # an unknown name fails now, started or not
    settings: dict[str, Any] = {
        "base_url": _NOT_STARTED,
        "api_key": _PLACEHOLDER_KEY,
        "model": name,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "seed": seed,
        "stream_usage": True,
        # Loopback must never go through an HTTP(S)_PROXY from the environment.
        "http_client": openai.DefaultHttpxClient(trust_env=False),
        "http_async_client": async_http_client(trust_env=False),
        **params,
    }
    if seed is not None:
        # llama.cpp's logits differ in the last bits between a prompt computed in one
        # batch and one restored from the prompt cache, enough to flip a greedy choice;
        # a seeded request asks for repeatable answers, so it skips the cache.
        settings["extra_body"] = {"cache_prompt": False, **(params.get("extra_body") or {})}
    model = LocalChatModel(**settings)
    if start:
        model.start()
    return model


class LocalChatModel(ChatOpenAI):
    """``ChatOpenAI`` on the embedded server, with tools written into the prompt.

    ``bind_tools`` is ``ChatOpenAI``'s; a call with tools writes them into the system
    prompt in the model's own format, and a reply made of calls of them (bare,
    fenced or tagged JSON, arguments valid against the tool's schema) comes back as
    tool calls, anything else as text. ``tool_choice`` ``"required"`` or a named tool
    constrains the reply to one valid call with llama.cpp's JSON-schema grammar.
    While a streamed reply may still be calls, its tokens are held (empty tokens keep
    time), so a call is never shown as text. Every call first makes sure the model's
    server runs (:meth:`start`).
    """

    def start(self) -> None:
        """Start the model's server unless it runs, and point this model at it.

        Cheap once the server runs. A server stopped by
        :func:`~moa_graph.local.server.shutdown` is started afresh.

        Raises:
            WeightsNotInstalledError: The weights are not installed; says the command.
            ChecksumMismatchError: The installed file is corrupted; it is not loaded.
            NoFreePortError: No port on 127.0.0.1 could be bound.
            ModelLoadError: llama.cpp could not load the file.
        """
        url = f"{server_for(get_model(self.model_name)).base_url}/v1"
        if self.openai_api_base != url:
            self.openai_api_base = url
            self.root_client.base_url = url
            self.root_async_client.base_url = url

    @property
    def started(self) -> bool:
        """Whether :meth:`start` has pointed the model at a server."""
        return self.openai_api_base != _NOT_STARTED

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.start()
        tools = ToolRequest.pop(kwargs)
        if tools is None:
            return super()._generate(messages, stop, run_manager, **kwargs)
        tools.request(kwargs, self.extra_body)
        result = super()._generate(tools.prompt(messages), stop, run_manager, **kwargs)
        return tools.result(result)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.start()
        tools = ToolRequest.pop(kwargs)
        if tools is None:
            return await super()._agenerate(messages, stop, run_manager, **kwargs)
        tools.request(kwargs, self.extra_body)
        result = await super()._agenerate(tools.prompt(messages), stop, run_manager, **kwargs)
        return tools.result(result)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        self.start()
        tools = ToolRequest.pop(kwargs)
        if tools is None:
            yield from super()._stream(messages, stop, run_manager, **kwargs)
            return
        tools.request(kwargs, self.extra_body)
        reading = tools.stream()
        # No run manager below: the reading decides which tokens are reported.
        for chunk in super()._stream(tools.prompt(messages), stop, None, **kwargs):
            for passed, token in reading.take(chunk):
                if run_manager:
                    run_manager.on_llm_new_token(token, chunk=passed)
                yield passed
        for passed, token in reading.end():
            if run_manager:
                run_manager.on_llm_new_token(token, chunk=passed)
            yield passed

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        self.start()
        tools = ToolRequest.pop(kwargs)
        if tools is None:
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                yield chunk
            return
        tools.request(kwargs, self.extra_body)
        reading = tools.stream()
        async for chunk in super()._astream(tools.prompt(messages), stop, None, **kwargs):
            for passed, token in reading.take(chunk):
                if run_manager:
                    await run_manager.on_llm_new_token(token, chunk=passed)
                yield passed
        for passed, token in reading.end():
            if run_manager:
                await run_manager.on_llm_new_token(token, chunk=passed)
            yield passed
