"""A MoA wherever a chat model goes: :class:`ChatMoA`, a LangChain ``BaseChatModel``.

``ChatMoA("local")`` runs the whole mixture for each call: ``invoke``, ``ainvoke``,
``stream`` and ``astream`` (the aggregator's tokens), ``batch``. The answer's
``usage_metadata`` sums every agent's calls and its ``response_metadata`` holds the
proposals. ``bind_tools`` and ``with_structured_output`` work as for any tool-calling
model: proposers see the tools and propose what to do, and the aggregator, bound to
the tools, decides the message (text or tool calls).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StreamMode
from pydantic import ConfigDict, PrivateAttr

from moa_graph.calls.secrets import StreamRedactor
from moa_graph.config.model import MoAConfig
from moa_graph.config.resolve import ConfigSource, resolve_config
from moa_graph.graph.plan import RunOptions
from moa_graph.run import structured_output
from moa_graph.run.factory import create_moa
from moa_graph.run.streaming import Finished, Token, aggregator_text, answer_shown, stream_moa

ToolLike = dict[str, Any] | type | Callable[..., Any] | BaseTool
"""Anything ``bind_tools`` accepts: a tool, a function, a pydantic model, a schema."""


class ChatMoA(BaseChatModel):
    """A Mixture-of-Agents as a LangChain chat model.

    Attributes:
        moa: What ``create_moa`` takes: a config, its data, a preset name or a file.

    Example:
        >>> model = ChatMoA("local-tiny")  # doctest: +SKIP
        >>> model.invoke("Name three primes.").usage_metadata  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    moa: ConfigSource = "local"
    _config: MoAConfig = PrivateAttr()
    _graph: CompiledStateGraph[Any, Any, Any, Any] = PrivateAttr()

    def __init__(self, moa: ConfigSource = "local", **kwargs: Any):
        # Built before pydantic's own init, so a bad preset or a missing key is its
        # own one-line error (ConfigError), not a pydantic ValidationError.
        config = resolve_config(moa)
        builder = create_moa(config, context_schema=RunOptions)
        graph = builder.compile(name=f"ChatMoA {config.name or ''}".strip())
        super().__init__(moa=config, **kwargs)
        self._config, self._graph = config, graph

    @property
    def _llm_type(self) -> str:
        return "moa-graph"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"moa": self._config.name or "custom", "aggregation": self._config.aggregation}

    def bind_tools(
        self,
        tools: Sequence[ToolLike],
        *,
        tool_choice: str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools: the aggregator may answer with calls of them.

        Args:
            tools: Tools, functions, pydantic models or OpenAI tool schemas.
            tool_choice: ``"auto"``, ``"none"``, ``"required"``/``"any"``, a tool's name,
                or an OpenAI ``tool_choice`` object.
            **kwargs: Further call options.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        attempts: int = 2,
        method: Literal["function_calling", "json_schema"] = "function_calling",
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Return a runnable whose output is ``schema`` validated, from the aggregator.

        The aggregator answers by calling the schema as a tool (``function_calling``)
        or in JSON under the schema given as ``response_format`` (``json_schema``; a
        local aggregator follows it with llama.cpp's grammar); an answer that does
        not validate is asked for again, up to ``attempts`` runs of the mixture.
        Every kind of schema is validated (see :mod:`moa_graph.run.structured_output`).

        Args:
            schema: A pydantic model, a TypedDict or a JSON schema.
            include_raw: Return the raw message and any parsing error too (no retries);
                an answer that does not validate is ``parsed: None`` with its error.
            attempts: Runs of the mixture before giving up (1 or more).
            method: How the aggregator is asked for the schema.
            **kwargs: Passed to LangChain's ``with_structured_output``.

        Raises:
            ValueError: ``attempts`` is below 1, or ``schema`` is an invalid JSON schema.
            StructuredOutputError: (when invoked) no valid answer after ``attempts``.
        """
        if attempts < 1:
            raise ValueError(f"attempts must be 1 or more, not {attempts}")
        validate = structured_output.validator(schema)
        if method == "json_schema":
            parsed = structured_output.json_schema_output(self, schema, include_raw=include_raw)
        else:
            parsed = super().with_structured_output(schema, include_raw=include_raw, **kwargs)
        return structured_output.validated_output(
            parsed, schema, validate, include_raw=include_raw, attempts=attempts
        )

    def _run(
        self,
        messages: list[BaseMessage],
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> tuple[dict[str, Any], RunnableConfig, RunOptions]:
        """Return one call's mixture input, config and run options.

        The config runs the mixture under the chat model's own run; the options are
        the tools and answer format bound to the call, if any.
        """
        options = RunOptions(
            tools=tuple(kwargs.get("tools") or ()),
            tool_choice=kwargs.get("tool_choice"),
            response_format=kwargs.get("response_format") or None,
        )
        return {"messages": messages}, _nested(run_manager), options

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        graph_input, config, options = self._run(messages, run_manager, kwargs)
        return _result(self._graph.invoke(graph_input, config, context=options))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        graph_input, config, options = self._run(messages, run_manager, kwargs)
        return _result(await self._graph.ainvoke(graph_input, config, context=options))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        graph_input, config, options = self._run(messages, run_manager, kwargs)
        answer = _Streamed(self._streams_answer(kwargs))
        # As stream_moa: only the tokens it sends on count as shown, none if it holds
        # the answer whole (one that may be tool calls).
        modes: list[StreamMode] = ["messages", "values"] if answer.shown else ["values"]
        parts: Iterator[tuple[str, Any]] = self._graph.stream(  # type: ignore[assignment]
            graph_input, answer_shown(config), context=options, stream_mode=modes
        )
        state: dict[str, Any] = {}
        redactor = StreamRedactor()
        for mode, payload in parts:
            if mode == "values":
                state = payload
            elif chunk := answer.chunk(redactor.feed(aggregator_text(payload))):
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        # What the redactor still holds is the answer's end: the last chunk has it.
        yield answer.last(state)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        graph_input, config, options = self._run(messages, run_manager, kwargs)
        answer = _Streamed(self._streams_answer(kwargs))
        events = stream_moa(self._graph, graph_input, config, context=options, tokens=answer.shown)
        async for event in events:
            if isinstance(event, Token) and (chunk := answer.chunk(event.text)):
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
            elif isinstance(event, Finished):
                yield answer.last(event.state)

    @staticmethod
    def _streams_answer(kwargs: dict[str, Any]) -> bool:
        """Whether the aggregator's tokens are the answer's: not with tools bound.

        They may be calls then. A ranker's never stream (see ``Planner.plan``).
        """
        return not kwargs.get("tools")


class _Streamed:
    """One call's answer as it streams: a chunk per piece, then the chunk that ends it.

    Args:
        shown: Whether the aggregator's tokens are the answer's; without, the whole
            answer comes in the last chunk.
    """

    def __init__(self, shown: bool) -> None:
        self.shown = shown
        self.text = ""

    def chunk(self, text: str) -> ChatGenerationChunk | None:
        """Return the chunk of a piece of the aggregator's text, or None to send none."""
        if not (text and self.shown):
            return None
        self.text += text
        return ChatGenerationChunk(message=AIMessageChunk(content=text))

    def last(self, state: Mapping[str, Any]) -> ChatGenerationChunk:
        """Return the chunk that completes the stream (see :func:`_last_chunk`)."""
        return _last_chunk(_answer(state), self.text)


def _result(state: Mapping[str, Any]) -> ChatResult:
    return ChatResult(generations=[ChatGeneration(message=_answer(state))])


def _nested(
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
) -> RunnableConfig:
    """Return the config that runs the mixture under the chat model's own run."""
    if run_manager is None:
        return {}
    manager_class = (
        AsyncCallbackManager
        if isinstance(run_manager, AsyncCallbackManagerForLLMRun)
        else CallbackManager
    )
    callbacks = manager_class(
        handlers=run_manager.inheritable_handlers,
        inheritable_handlers=run_manager.inheritable_handlers,
        parent_run_id=run_manager.run_id,
        tags=run_manager.inheritable_tags,
        inheritable_tags=run_manager.inheritable_tags,
        metadata=run_manager.inheritable_metadata,
        inheritable_metadata=run_manager.inheritable_metadata,
    )
    return {"callbacks": callbacks}


def _answer(state: Mapping[str, Any]) -> AIMessage:
    """Return the MoA's answer with its usage summed over every call and its proposals."""
    answer: AIMessage = state["messages"][-1]
    usage = state.get("usage") or UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0)
    proposals = [p.model_dump(mode="json") for p in state.get("proposals", [])]
    metadata = {**answer.response_metadata, "moa_proposals": proposals}
    return AIMessage(
        content=answer.content,
        tool_calls=answer.tool_calls,
        usage_metadata=usage,
        response_metadata=metadata,
    )


def _last_chunk(answer: AIMessage, streamed: str) -> ChatGenerationChunk:
    """Return the chunk that completes a stream: what was not streamed, usage, metadata."""
    rest = answer.text[len(streamed) :] if answer.text.startswith(streamed) else ""
    tool_calls = [
        {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
        for i, c in enumerate(answer.tool_calls)
    ]
    message = AIMessageChunk(
        content=rest,
        tool_call_chunks=tool_calls,
        usage_metadata=answer.usage_metadata,
        response_metadata=answer.response_metadata,
        chunk_position="last",
    )
    return ChatGenerationChunk(message=message)
