"""``moa serve``: Mixture-of-Agents presets behind the OpenAI chat completions API.

Each served model is a preset or config; its graph is compiled once at start and
reused by every request. ``POST /v1/chat/completions`` runs it (streamed or not),
``GET /v1/models`` lists the served models, errors use the OpenAI error format.

Safety: the server binds 127.0.0.1 unless told otherwise, refuses any other address
without an API key, limits body size and concurrent runs, and never repeats a key.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AnyMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from moa_graph.config import MoAConfig, describe_validation_error, load_config
from moa_graph.durable import open_checkpointer
from moa_graph.errors import ConfigError, InputError, MoAError, ModelCallError
from moa_graph.graph import AGGREGATOR_TAG, check_conversation, create_moa
from moa_graph.openai_api import (
    MAX_JSON_DEPTH,
    BodyError,
    ChatCompletionRequest,
    ChunkMaker,
    check_body,
    completion_json,
    error_json,
    moa_extension,
    usage_json,
)
from moa_graph.presets import load_preset
from moa_graph.reliability import describe
from moa_graph.secrets import RedactingFilter
from moa_graph.state import AgentFinished
from moa_graph.streaming import Event, Finished, Progress, Token, stream_moa

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_CONCURRENT = 4
"""MoA runs at once; each run makes several model calls."""
DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_BODY_TIMEOUT_S = 30.0
"""Seconds a client may take to send its request body."""
THREAD_HEADER = "X-MoA-Thread-Id"
"""Response header naming the run's thread id when the server checkpoints."""

_VARIANTS_PER_MODEL = 16
"""Compiled graphs kept per served model for requests that change sampling."""
_FINISH_REASONS = frozenset({"stop", "length", "content_filter"})

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


class _APIError(Exception):
    """An error answered in the OpenAI format with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_json(message, error_type=error_type, code=code, param=param, **extra)
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, self.status, headers=self.headers)


def is_loopback(host: str) -> bool:
    """Return whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to serve beyond this machine without an API key.

    Raises:
        ConfigError: ``host`` is not a loopback address and no key is set.
    """
    if not is_loopback(host) and not api_key:
        raise ConfigError(
            f"refusing to listen on {host} without an API key: set --api-key "
            "(or MOA_API_KEY), or bind 127.0.0.1"
        )


def served_configs(
    presets: Iterable[str] = (), config_files: Iterable[str | Path] = ()
) -> dict[str, MoAConfig]:
    """Name the configs to serve: a preset by its name, a file by its ``name`` or stem.

    Raises:
        ConfigError: A preset or file is unknown or invalid, or two share a name.
    """
    named: list[tuple[str, MoAConfig]] = [(name, load_preset(name)) for name in presets]
    for path in config_files:
        config = load_config(path)
        named.append((config.name or Path(path).stem, config))
    served: dict[str, MoAConfig] = {}
    for name, config in named:
        if name in served:
            raise ConfigError(f"two served models are named '{name}'")
        served[name] = config
    if not served:
        raise ConfigError("nothing to serve: give --preset or --config")
    return served


def _with_sampling(
    config: MoAConfig, temperature: float | None, max_tokens: int | None, scope: str
) -> MoAConfig:
    update: dict[str, Any] = {}
    if temperature is not None:
        update["temperature"] = temperature
    if max_tokens is not None:
        update["max_tokens"] = max_tokens
    if not update:
        return config
    aggregators = {
        "aggregator": config.aggregator.model_copy(update=update),
        "aggregator_fallbacks": [a.model_copy(update=update) for a in config.aggregator_fallbacks],
    }
    if scope == "aggregator":
        return config.model_copy(update=aggregators)
    layers = [[agent.model_copy(update=update) for agent in layer] for layer in config.layers]
    return config.model_copy(update={"layers": layers, **aggregators})


@dataclass
class _ServedModel:
    """A served config and its compiled graphs.

    The default graph is compiled at start; a request that changes sampling gets a
    variant, compiled on first use and kept for the next such request.
    """

    name: str
    config: MoAConfig
    checkpointer: BaseCheckpointSaver[Any] | None
    created: int = field(default_factory=lambda: int(time.time()))
    default: CompiledStateGraph[Any, Any, Any, Any] = field(init=False)
    variants: OrderedDict[tuple[Any, ...], CompiledStateGraph[Any, Any, Any, Any]] = field(
        default_factory=OrderedDict
    )

    def __post_init__(self) -> None:
        self.default = self._compile(self.config)

    def _compile(self, config: MoAConfig) -> CompiledStateGraph[Any, Any, Any, Any]:
        builder = create_moa(config, stream_proposers=False)
        return builder.compile(checkpointer=self.checkpointer, name=self.name)

    def graph(
        self, temperature: float | None, max_tokens: int | None, scope: str
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        """Return the compiled graph for a request's sampling."""
        if temperature is None and max_tokens is None:
            return self.default
        key = (temperature, max_tokens, scope)
        if key in self.variants:
            self.variants.move_to_end(key)
        else:
            config = _with_sampling(self.config, temperature, max_tokens, scope)
            self.variants[key] = self._compile(config)
            if len(self.variants) > _VARIANTS_PER_MODEL:
                self.variants.popitem(last=False)
        return self.variants[key]


class _Cancelled:
    """Queued when a run was cancelled."""


class _AggregatorWatch(BaseCallbackHandler):
    """Sees the aggregator's model calls, to tell when its streamed answer broke.

    A call that fails after it streamed text, or a new call (a retry, a fallback)
    after text went out, means the text already sent is not the start of the
    answer: the stream must end in an error, never splice two attempts.

    Attributes:
        streamed: Pieces of answer text the aggregator's calls streamed so far.
        broken_after: ``streamed`` when the answer first broke after text went
            out; None while it has not.
        reason: Why it broke, in one line.
    """

    run_inline = True

    def __init__(self) -> None:
        self.calls: set[UUID] = set()
        self.streamed = 0
        self.broken_after: int | None = None
        self.reason = ""

    def _break(self, reason: str) -> None:
        if self.broken_after is None and self.streamed:
            self.broken_after = self.streamed
            self.reason = reason

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if AGGREGATOR_TAG in (tags or ()):
            self._break("its call was made again after the answer had started")
            self.calls.add(run_id)

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if run_id in self.calls and isinstance(chunk, ChatGenerationChunk) and chunk.message.text:
            self.streamed += 1

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if run_id in self.calls:
            self._break(describe(error))


class _Run:
    """One request's MoA run, going on in its own task, read event by event.

    The run is a task of its own so that cancelling it (the client went away)
    is plain asyncio cancellation, which LangGraph passes on to every model call
    under way; the task ends, and calls ``on_end``, only once they have stopped.
    """

    def __init__(
        self,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        messages: list[AnyMessage],
        served: _ServedModel,
        thread_id: str | None,
        on_end: Callable[[], None],
    ) -> None:
        self.served = served
        self.thread_id = thread_id
        self.watch = _AggregatorWatch()
        config: RunnableConfig = {
            "run_name": f"moa serve {served.name}",
            "metadata": {"moa_served_model": served.name},
            "callbacks": [self.watch],
        }
        if thread_id is not None:
            config["configurable"] = {"thread_id": thread_id}
        self.failed_agents: list[str] = []
        self.aggregator: AgentFinished | None = None
        self.state: dict[str, Any] = {}
        self.tokens = 0
        self._ended = False
        self._queue: asyncio.Queue[Event | BaseException | _Cancelled | None] = asyncio.Queue()
        events = stream_moa(graph, {"messages": messages}, config)
        self._task = asyncio.create_task(self._produce(events), name=f"moa run {served.name}")
        self._task.add_done_callback(lambda _: on_end())

    async def _produce(self, events: AsyncIterator[Event]) -> None:
        try:
            async for event in events:
                self._queue.put_nowait(event)
        except asyncio.CancelledError:
            self._queue.put_nowait(_Cancelled())
            raise
        except Exception as error:
            self._queue.put_nowait(error)
        else:
            self._queue.put_nowait(None)

    async def next(self) -> Event | None:
        """Return the next event, or None at the end.

        Raises:
            _APIError: The run failed: 400 for bad input, 502 naming the failing
                agents when too few agents answered, 500 otherwise.
            _ClientGone: The run was cancelled.
        """
        if self._ended:
            return None
        item = await self._queue.get()
        if item is None or isinstance(item, BaseException | _Cancelled):
            self._ended = True
        if isinstance(item, _Cancelled):
            raise _ClientGone
        if isinstance(item, BaseException):
            raise self._api_error(item)
        if isinstance(item, Progress):
            data = item.data
            if data["event"] == "agent_failed":
                self.failed_agents.append(data["moa_agent"])
            elif data["event"] == "agent_finished" and data["moa_role"] == "aggregator":
                self.aggregator = data
        elif isinstance(item, Finished):
            self.state = item.state
        return item

    def _api_error(self, error: BaseException) -> _APIError:
        if isinstance(error, InputError):
            return _APIError(400, _one_line(str(error)), headers=self.headers())
        if isinstance(error, MoAError):
            # The core's messages name each failed agent and why, without secrets.
            # Proposers' failures arrive as events; one that escapes is the aggregator's.
            if isinstance(error, ModelCallError):
                self.failed_agents.append(self.served.config.aggregator.name or "")
            _log.warning("upstream failure: %s", error)
            return _APIError(
                502,
                _one_line(f"upstream failure: {error}"),
                error_type="upstream_error",
                code="agents_failed",
                failed_agents=list(dict.fromkeys(self.failed_agents)),
                headers=self.headers(),
            )
        _log.error("MoA run failed", exc_info=error)
        return _APIError(
            500,
            f"the MoA run failed: {type(error).__name__}",
            error_type="server_error",
            headers=self.headers(),
        )

    def broken(self) -> _APIError | None:
        """Return the error to end a stream with if the next token would splice.

        The aggregator's answer broke after some of it streamed: the tokens up to
        that point may go out, no token after them.
        """
        broken_after = self.watch.broken_after
        if broken_after is None or self.tokens < broken_after:
            return None
        name = self.served.config.aggregator.name or "aggregator"
        return _APIError(
            502,
            _one_line(
                f"aggregator '{name}' failed after its answer had started: {self.watch.reason}"
            ),
            error_type="upstream_error",
            code="stream_interrupted",
        )

    def cancel(self) -> None:
        """Stop the run if it is still going (the client went away)."""
        self._task.cancel()

    async def close(self) -> None:
        """Stop the run if it is still going, and wait until it has stopped."""
        self._task.cancel()
        await asyncio.wait({self._task})

    def headers(self) -> dict[str, str]:
        return {THREAD_HEADER: self.thread_id} if self.thread_id else {}

    @property
    def answer(self) -> str:
        messages = self.state.get("messages") or []
        return str(messages[-1].text) if messages else ""

    @property
    def finish_reason(self) -> str:
        messages = self.state.get("messages") or []
        reason = messages[-1].response_metadata.get("finish_reason") if messages else None
        return reason if reason in _FINISH_REASONS else "stop"

    def extension(self) -> dict[str, Any]:
        return moa_extension(self.state.get("proposals", []), self.aggregator, self.thread_id)


class _Server:
    """The endpoints and their shared limits."""

    def __init__(
        self,
        models: Mapping[str, _ServedModel],
        *,
        api_key: str | None,
        max_concurrent: int,
        max_body_bytes: int,
        body_timeout_s: float,
    ) -> None:
        self.models = dict(models)
        self._api_key = api_key
        self.max_concurrent = max_concurrent
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.running = 0

    def _run_ended(self) -> None:
        self.running -= 1

    def authorize(self, request: Request) -> None:
        if self._api_key is None:
            return
        header = request.headers.get("authorization")
        if not header:
            raise _APIError(
                401,
                "missing API key: send the header 'Authorization: Bearer <key>'",
                code="invalid_api_key",
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self._api_key.encode()
        ):
            raise _APIError(401, "incorrect API key", code="invalid_api_key")

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def list_models(self, request: Request) -> Response:
        self.authorize(request)
        models = [_model_json(model) for model in self.models.values()]
        return JSONResponse({"object": "list", "data": models})

    async def get_model(self, request: Request) -> Response:
        self.authorize(request)
        return JSONResponse(_model_json(self.model(request.path_params["model"])))

    def model(self, name: str) -> _ServedModel:
        if name not in self.models:
            served = ", ".join(self.models)
            raise _APIError(
                404,
                f"the model '{name}' does not exist; this server has: {served}",
                code="model_not_found",
                param="model",
            )
        return self.models[name]

    async def read_request(self, request: Request) -> ChatCompletionRequest:
        """Read and validate a chat completion request.

        Raises:
            _APIError: 413 for a body over the limit, 408 for one that does not
                arrive in time, 400 for one that is not a valid request.
            _ClientGone: The client went away while sending it.
        """
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            raise self.too_large()
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_timeout_s):
                async for part in request.stream():
                    body += part
                    if len(body) > self.max_body_bytes:
                        raise self.too_large()
        except TimeoutError:
            raise _APIError(
                408,
                f"the request body did not arrive within {self.body_timeout_s:g} s",
                code="request_timeout",
            ) from None
        except ClientDisconnect:
            raise _ClientGone from None
        try:
            data = json.loads(body)
        except RecursionError:
            raise _APIError(
                400, f"the request body is nested more than {MAX_JSON_DEPTH} levels deep"
            ) from None
        except ValueError:
            raise _APIError(400, "the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise _APIError(400, "the request body must be a JSON object")
        try:
            check_body(data)
        except BodyError as error:
            raise _APIError(400, str(error), param=error.param) from None
        try:
            return ChatCompletionRequest.model_validate(data)
        except ValidationError as error:
            location = error.errors()[0]["loc"]
            param = str(location[0]) if location else None
            raise _APIError(400, describe_validation_error(error), param=param) from None

    def too_large(self) -> _APIError:
        return _APIError(
            413,
            f"the request body is over {self.max_body_bytes} bytes",
            code="request_too_large",
        )

    async def chat_completions(self, request: Request) -> Response:
        self.authorize(request)
        body = await self.read_request(request)
        served = self.model(body.model)
        try:
            messages = body.conversation()
            check_conversation(messages)
        except InputError as error:
            raise _APIError(400, str(error), param="messages") from None
        if self.running >= self.max_concurrent:
            raise _APIError(
                429,
                f"the server is already running its limit of {self.max_concurrent} "
                "MoA runs; retry later",
                error_type="rate_limit_error",
                code="too_many_concurrent_runs",
                headers={"Retry-After": "1"},
            )
        graph = served.graph(body.temperature, body.completion_budget, body.moa.sampling)
        thread_id = str(uuid.uuid4()) if served.checkpointer is not None else None
        # The slot is held until the run's task ends, cancelled or not.
        self.running += 1
        run = _Run(graph, messages, served, thread_id, self._run_ended)
        handed_over = False
        try:
            if body.stream:
                first = await _unless_disconnected(request, self._first_token(run))
                handed_over = True
                return StreamingResponse(
                    self._stream(request, run, body, first),
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-cache", **run.headers()},
                )
            await _unless_disconnected(request, self._finish(run))
            answer = completion_json(
                completion_id=_completion_id(),
                created=int(time.time()),
                model=served.name,
                text=run.answer,
                finish_reason=run.finish_reason,
            )
            answer["usage"] = usage_json(run.state.get("usage") or {})
            if body.moa.include_proposals:
                answer["moa"] = run.extension()
            return JSONResponse(answer, headers=run.headers())
        finally:
            if not handed_over:
                await run.close()

    async def _finish(self, run: _Run) -> None:
        while await run.next() is not None:
            pass

    async def _first_token(self, run: _Run) -> Event | None:
        """Run until the answer starts, so a failure before it is a plain HTTP error."""
        while True:
            event = await run.next()
            if event is None or isinstance(event, Token | Finished):
                return event

    async def _stream(
        self, request: Request, run: _Run, body: ChatCompletionRequest, first: Event | None
    ) -> AsyncIterator[str]:
        """Stream the answer as server-sent events.

        Once the status line is sent, a failure can only be told in the stream: it
        ends with an OpenAI error event (no ``[DONE]``), which OpenAI clients raise.
        A client that goes away cancels the run, and so its model calls.
        """
        chunks = ChunkMaker(_completion_id(), int(time.time()), body.model, body.include_usage)
        gone = asyncio.ensure_future(_disconnected(request))
        gone.add_done_callback(lambda task: None if task.cancelled() else run.cancel())
        streamed = False
        try:
            yield _sse(chunks.chunk({"role": "assistant", "content": ""}))
            event = first
            while event is not None:
                if isinstance(event, Token | Finished) and (error := run.broken()):
                    raise error
                if isinstance(event, Token):
                    streamed = True
                    run.tokens += 1
                    yield _sse(chunks.chunk({"content": event.text}))
                event = await run.next()
            if not streamed and run.answer:
                # A model that does not stream gives its whole answer at the end.
                yield _sse(chunks.chunk({"content": run.answer}))
            yield _sse(chunks.chunk({}, run.finish_reason))
            if body.include_usage or body.moa.include_proposals:
                last = chunks.chunk(None)
                if body.include_usage:
                    last["usage"] = usage_json(run.state.get("usage") or {})
                if body.moa.include_proposals:
                    last["moa"] = run.extension()
                yield _sse(last)
            yield "data: [DONE]\n\n"
        except _ClientGone:
            _log.info("client went away; run cancelled")
        except _APIError as error:
            _log.warning("stream ended with an error: %s", error)
            yield _sse(error.body)
        except Exception as error:
            _log.exception("streaming the answer failed")
            message = f"the MoA run failed: {type(error).__name__}"
            yield _sse(error_json(message, error_type="server_error"))
        finally:
            # No await here: when the client left, Starlette cancels this generator.
            gone.cancel()
            run.cancel()


class _ClientGone(Exception):
    """The client closed the connection before the answer."""


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, _T]) -> _T:
    """Await ``work``, cancelling it if the client goes away first.

    A MoA run can take minutes; one nobody waits for should not hold a slot.

    Raises:
        _ClientGone: The client disconnected; ``work`` was cancelled.
    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        _log.info("client went away; run cancelled")
        raise _ClientGone
    return task.result()


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next message is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _one_line(message: str, limit: int = 500) -> str:
    """Return the first line of ``message``, at most ``limit`` characters."""
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _sse(data: Mapping[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _model_json(model: _ServedModel) -> dict[str, Any]:
    return {"id": model.name, "object": "model", "created": model.created, "owned_by": "moa-graph"}


async def _client_gone(request: Request, error: Exception) -> Response:
    return Response(status_code=499)  # nginx's "client closed request": nobody reads it


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, _APIError)
    return error.response()


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code = "not_found" if error.status_code == 404 else None
    return JSONResponse(error_json(str(error.detail), code=code), error.status_code)


def create_app(
    configs: Mapping[str, MoAConfig],
    *,
    api_key: str | None = None,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> Starlette:
    """Build the ASGI app serving ``configs`` under their names.

    Every config's graph is built and compiled here, so a missing API key or an
    invalid config fails before the server listens.

    Args:
        configs: Served model name to config.
        api_key: The key clients must send as ``Authorization: Bearer``; None
            lets every client in.
        max_concurrent: MoA runs at once; one more is answered 429.
        max_body_bytes: Largest request body; a larger one is answered 413.
        body_timeout_s: Seconds a client may take to send its request body; a
            slower one is answered 408.
        checkpointer: When set, each request runs on a fresh thread id, returned
            in the ``X-MoA-Thread-Id`` header.

    Returns:
        A Starlette app; run it with any ASGI server.

    Raises:
        ConfigError: A config is invalid or one of its models cannot be resolved.
    """
    if max_concurrent < 1 or max_body_bytes < 1:
        raise ConfigError("max_concurrent and max_body_bytes must be at least 1")
    if not body_timeout_s > 0:
        raise ConfigError("body_timeout_s must be more than 0")
    models = {name: _ServedModel(name, config, checkpointer) for name, config in configs.items()}
    server = _Server(
        models,
        api_key=api_key,
        max_concurrent=max_concurrent,
        max_body_bytes=max_body_bytes,
        body_timeout_s=body_timeout_s,
    )
    routes = [
        Route("/health", server.health, methods=["GET"]),
        Route("/v1/models", server.list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", server.get_model, methods=["GET"]),
        Route("/v1/chat/completions", server.chat_completions, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            _APIError: _api_error,
            HTTPException: _http_error,
            _ClientGone: _client_gone,
        },
    )


async def serve(
    configs: Mapping[str, MoAConfig],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    api_key: str | None = None,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    checkpoint: str | None = None,
) -> None:
    """Serve ``configs`` over HTTP until interrupted.

    Args:
        configs: Served model name to config (see :func:`served_configs`).
        host: Address to bind; anything but loopback needs ``api_key``.
        port: TCP port.
        api_key: The key clients must send.
        max_concurrent: MoA runs at once.
        max_body_bytes: Largest request body.
        body_timeout_s: Seconds a client may take to send its request body.
        checkpoint: ``sqlite:PATH`` (or just a path), or a ``postgresql://`` URL:
            run each request on its own thread id in that checkpoint store.

    Raises:
        ConfigError: The bind is refused, PostgreSQL support is not installed, or
            a config cannot be built.
    """
    import uvicorn

    check_bind(host, api_key)
    opened: AbstractAsyncContextManager[BaseCheckpointSaver[Any] | None] = (
        nullcontext(None)
        if checkpoint is None
        else open_checkpointer(checkpoint.removeprefix("sqlite:"))
    )
    async with opened as checkpointer:
        app = create_app(
            configs,
            api_key=api_key,
            max_concurrent=max_concurrent,
            max_body_bytes=max_body_bytes,
            body_timeout_s=body_timeout_s,
            checkpointer=checkpointer,
        )
        _log.info("serving %s on %s:%s", ", ".join(configs), host, port)
        config = uvicorn.Config(app, host=host, port=port, lifespan="off", server_header=False)
        _redact_logs()
        await uvicorn.Server(config).serve()


def _redact_logs() -> None:
    """Redact secrets from every record the server's log handlers write (tracebacks too)."""
    _log.addFilter(RedactingFilter())
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in ("uvicorn", "uvicorn.error"))]
    for handler in {h for logger in loggers for h in logger.handlers}:
        handler.addFilter(RedactingFilter())
