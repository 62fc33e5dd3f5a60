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
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableLambda,
    RunnableMap,
    RunnablePassthrough,
)
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from langgraph.graph.state import CompiledStateGraph
from pydantic import ConfigDict, PrivateAttr, ValidationError

from moa_graph.calls.secrets import StreamRedactor
from moa_graph.config.model import MoAConfig, describe_validation_error
from moa_graph.errors import StructuredOutputError
from moa_graph.graph.plan import AGGREGATOR_TAG, RunOptions
from moa_graph.run import structured_output
from moa_graph.run.factory import create_moa, resolve_config
from moa_graph.run.streaming import Finished, Token, stream_moa

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

    moa: MoAConfig | Mapping[str, Any] | str | Path = "local"
    _config: MoAConfig = PrivateAttr()
    _graph: CompiledStateGraph[Any, Any, Any, Any] = PrivateAttr()

    def __init__(self, moa: MoAConfig | Mapping[str, Any] | str | Path = "local", **kwargs: Any):
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
            parsed = self._json_schema_output(schema, include_raw=include_raw)
        else:
            parsed = super().with_structured_output(schema, include_raw=include_raw, **kwargs)
        if include_raw:
            checked: Runnable[Any, Any] = RunnableLambda(_with_validated(validate))
            return parsed | checked
        return _validated(
            parsed | RunnableLambda(_present) | RunnableLambda(validate),
            _schema_name(schema),
            attempts,
        )

    def _json_schema_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool
    ) -> Runnable[LanguageModelInput, Any]:
        """Return the mixture asked for ``schema`` as ``response_format``, then parsed."""
        json_schema = convert_to_json_schema(schema)
        name = re.sub(r"[^A-Za-z0-9_-]", "_", _schema_name(schema))[:64] or "answer"
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": json_schema},
        }
        model = self.bind(response_format=response_format)
        parser: Runnable[Any, Any] = (
            PydanticOutputParser(pydantic_object=schema)
            if isinstance(schema, type) and is_basemodel_subclass(schema)
            else JsonOutputParser()
        )
        if not include_raw:
            return model | parser
        parsing = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        ).with_fallbacks(
            [RunnablePassthrough.assign(parsed=lambda _: None)], exception_key="parsing_error"
        )
        return RunnableMap(raw=model) | parsing

    def _options(self, kwargs: dict[str, Any]) -> RunOptions:
        tools = kwargs.get("tools")
        choice = kwargs.get("tool_choice")
        response_format = kwargs.get("response_format")
        return RunOptions(
            tools=json.dumps(tools, sort_keys=True) if tools else None,
            tool_choice=json.dumps(choice) if choice is not None else None,
            response_format=json.dumps(response_format, sort_keys=True)
            if response_format
            else None,
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config = _nested(run_manager)
        state = self._graph.invoke({"messages": messages}, config, context=self._options(kwargs))
        return ChatResult(generations=[ChatGeneration(message=_answer(state))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config = _nested(run_manager)
        state = await self._graph.ainvoke(
            {"messages": messages}, config, context=self._options(kwargs)
        )
        return ChatResult(generations=[ChatGeneration(message=_answer(state))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        config = _nested(run_manager)
        streamed = ""
        parts: Iterator[tuple[str, Any]] = self._graph.stream(  # type: ignore[assignment]
            {"messages": messages},
            config,
            context=self._options(kwargs),
            stream_mode=["messages", "values"],
        )
        state: dict[str, Any] = {}
        redactor = StreamRedactor()
        for mode, payload in parts:
            if mode == "values":
                state = payload
                continue
            text = redactor.feed(_aggregator_text(payload))
            if text and self._streams_answer(kwargs):
                streamed += text
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                if run_manager:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
        # What the redactor still holds is the answer's end: the last chunk has it.
        yield _last_chunk(_answer(state), streamed)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        config = _nested(run_manager)
        streamed = ""
        events = stream_moa(
            self._graph, {"messages": messages}, config, context=self._options(kwargs)
        )
        async for event in events:
            if isinstance(event, Token) and self._streams_answer(kwargs):
                streamed += event.text
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=event.text))
                if run_manager:
                    await run_manager.on_llm_new_token(event.text, chunk=chunk)
                yield chunk
            elif isinstance(event, Finished):
                yield _last_chunk(_answer(event.state), streamed)

    def _streams_answer(self, kwargs: dict[str, Any]) -> bool:
        """Whether the aggregator's tokens are the answer's (a ranker's are not)."""
        return self._config.aggregation != "rank" and not kwargs.get("tools")


def _schema_name(schema: dict[str, Any] | type) -> str:
    if isinstance(schema, dict):
        return str(schema.get("title") or schema.get("name") or "the schema")
    return schema.__name__


def _present(value: Any) -> Any:
    """Refuse an answer that called no tool (LangChain's parser gives None for it)."""
    if value is None:
        raise OutputParserException("the aggregator answered in text, not with the schema")
    return value


def _with_validated(
    validate: structured_output.Validator,
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Return what validates the ``parsed`` of an ``include_raw`` result.

    An answer that does not validate is reported as LangChain reports one it cannot
    parse: ``parsed`` None and the error in ``parsing_error``.
    """

    def check(result: dict[str, Any]) -> dict[str, Any]:
        if result.get("parsing_error") is not None or result.get("parsed") is None:
            return result
        try:
            return {**result, "parsed": validate(result["parsed"])}
        except (structured_output.InvalidAnswer, ValidationError) as error:
            return {**result, "parsed": None, "parsing_error": error}

    return check


def _validated(parsed: Runnable[Any, Any], name: str, attempts: int) -> Runnable[Any, Any]:
    """Return ``parsed`` retried on invalid answers, failing with one clear error."""
    failures = (OutputParserException, ValidationError, structured_output.InvalidAnswer)
    retrying = parsed.with_retry(
        retry_if_exception_type=failures,
        stop_after_attempt=attempts,
        wait_exponential_jitter=False,
    )

    def failed(error: Exception) -> StructuredOutputError:
        if isinstance(error, ValidationError):
            reason = describe_validation_error(error)[:300]
        else:
            reason = " ".join(str(error).split())[:300]
        return StructuredOutputError(
            f"the MoA's answer did not validate as {name} after {attempts} attempts: {reason}"
        )

    def run(value: Any, config: RunnableConfig) -> Any:
        try:
            return retrying.invoke(value, config)
        except failures as error:
            raise failed(error) from None

    async def arun(value: Any, config: RunnableConfig) -> Any:
        try:
            return await retrying.ainvoke(value, config)
        except failures as error:
            raise failed(error) from None

    return RunnableLambda(run, arun, name=f"structured {name}")


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


def _aggregator_text(payload: Any) -> str:
    """Return the text of a ``messages``-mode chunk of the aggregator's call, or ``""``."""
    chunk, metadata = payload
    if isinstance(chunk, AIMessageChunk) and AGGREGATOR_TAG in metadata.get("tags", ()):
        return chunk.text
    return ""


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
