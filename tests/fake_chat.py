"""The one fake chat model of the test suite."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field


def _default_reply(model: FakeChatModel, messages: list[BaseMessage]) -> str:
    return f"{model.model_name} answers: {messages[-1].text}"


class FakeChatModel(BaseChatModel):
    """A chat model that records what it receives and answers deterministically.

    Attributes:
        model_name: Shown as the model's identifier.
        reply: Builds the answer from the model and the messages received.
        delay: Seconds each call takes (a list gives one value per call, cycling).
        input_tokens: Reported prompt tokens per call.
        output_tokens: Reported completion tokens per call.
        calls: Every message list received, in call order.
        streamed_calls: How many calls were streamed.
    """

    model_name: str = "fake"
    # A reply may also be an AIMessage, e.g. one with tool calls.
    reply: Callable[[FakeChatModel, list[BaseMessage]], str | AIMessage] = _default_reply
    delay: float | list[float] = 0.0
    input_tokens: int = 10
    output_tokens: int = 5
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    streamed_calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "fake-chat"

    def _next_delay(self) -> float:
        if isinstance(self.delay, list):
            return self.delay[(len(self.calls) - 1) % len(self.delay)]
        return self.delay

    def bind_tools(self, tools: Any, **kwargs: Any) -> FakeChatModel:
        """Accept tools; which ones are called is up to ``reply``."""
        return self

    def _answer(self, messages: list[BaseMessage]) -> tuple[AIMessage, UsageMetadata, float]:
        message, usage, delay = self._message(messages)
        return message, usage, delay

    def _message(self, messages: list[BaseMessage]) -> tuple[AIMessage, UsageMetadata, float]:
        self.calls.append(list(messages))
        usage = UsageMetadata(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            total_tokens=self.input_tokens + self.output_tokens,
        )
        reply = self.reply(self, messages)
        message = reply if isinstance(reply, AIMessage) else AIMessage(reply)
        return message.model_copy(update={"usage_metadata": usage}), usage, self._next_delay()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message, _, delay = self._message(messages)
        time.sleep(delay)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message, _, delay = self._message(messages)
        await asyncio.sleep(delay)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _chunks(self, message: AIMessage, usage: UsageMetadata) -> Iterator[ChatGenerationChunk]:
        """Stream as providers do: the text word by word, then each tool call in two deltas."""
        words = message.text.split(" ")
        for i, word in enumerate(words):
            if word or i < len(words) - 1:
                yield ChatGenerationChunk(
                    message=AIMessageChunk(word if i == len(words) - 1 else word + " ")
                )
        for index, call in enumerate(message.tool_calls):
            arguments = json.dumps(call["args"])
            half = len(arguments) // 2
            for part in (
                {"name": call["name"], "id": call["id"], "args": arguments[:half]},
                {"args": arguments[half:]},
            ):
                delta = tool_call_chunk(index=index, **{"name": None, "id": None, **part})
                yield ChatGenerationChunk(message=AIMessageChunk("", tool_call_chunks=[delta]))
        last = AIMessageChunk("", usage_metadata=usage, chunk_position="last")
        yield ChatGenerationChunk(message=last)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message, usage, delay = self._answer(messages)
        self.streamed_calls += 1
        time.sleep(delay)
        for chunk in self._chunks(message, usage):
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        message, usage, delay = self._answer(messages)
        self.streamed_calls += 1
        await asyncio.sleep(delay)
        for chunk in self._chunks(message, usage):
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
