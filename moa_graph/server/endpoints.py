"""``moa serve``'s endpoints and the limits they share: keys, bodies, runs at once."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import AnyMessage
from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from moa_graph.config.model import describe_validation_error
from moa_graph.errors import InputError
from moa_graph.graph.build import check_conversation
from moa_graph.graph.plan import RunOptions
from moa_graph.server.errors import APIError, ClientGone
from moa_graph.server.options import ServerOptions
from moa_graph.server.runs import Run
from moa_graph.server.served import ServedModel
from moa_graph.server.streams import completion_id, stream_answer, unless_disconnected
from moa_graph.server.wire import (
    MAX_JSON_DEPTH,
    BodyError,
    ChatCompletionRequest,
    check_body,
    completion_json,
)


class Endpoints:
    """The endpoints and their shared limits."""

    def __init__(
        self,
        models: Mapping[str, ServedModel],
        options: ServerOptions,
    ) -> None:
        self.models = dict(models)
        self._api_key = options.api_key
        self.max_concurrent = options.max_concurrent
        self.max_body_bytes = options.max_body_bytes
        self.body_timeout_s = options.body_timeout_s
        self.running = 0

    def routes(self) -> list[Route]:
        """Return the routes to the endpoints."""
        return [
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.get_model, methods=["GET"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
        ]

    def _run_ended(self) -> None:
        self.running -= 1

    def authorize(self, request: Request) -> None:
        """Let the request in only with the API key, when one is set.

        Raises:
            APIError: 401, the key is missing or wrong.
        """
        if self._api_key is None:
            return
        header = request.headers.get("authorization")
        if not header:
            raise APIError(
                401,
                "missing API key: send the header 'Authorization: Bearer <key>'",
                code="invalid_api_key",
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self._api_key.encode()
        ):
            raise APIError(401, "incorrect API key", code="invalid_api_key")

    async def health(self, request: Request) -> Response:
        """``GET /health``: whether the server is up; no key needed."""
        return JSONResponse({"status": "ok"})

    async def list_models(self, request: Request) -> Response:
        """``GET /v1/models``: the served models."""
        self.authorize(request)
        models = [_model_json(model) for model in self.models.values()]
        return JSONResponse({"object": "list", "data": models})

    async def get_model(self, request: Request) -> Response:
        """``GET /v1/models/{model}``: one served model."""
        self.authorize(request)
        return JSONResponse(_model_json(self.model(request.path_params["model"])))

    def model(self, name: str) -> ServedModel:
        """Return the served model ``name``.

        Raises:
            APIError: 404, no model has that name.
        """
        if name not in self.models:
            served = ", ".join(self.models)
            raise APIError(
                404,
                f"the model '{name}' does not exist; this server has: {served}",
                code="model_not_found",
                param="model",
            )
        return self.models[name]

    async def read_request(self, request: Request) -> ChatCompletionRequest:
        """Read and validate a chat completion request.

        Raises:
            APIError: 415 for a body not sent as JSON (as a web form or a
                preflight-free cross-origin request is), 413 for a body over the
                limit, 408 for one that does not arrive in time, 400 for one that is
                not a valid request.
            ClientGone: The client went away while sending it.
        """
        media_type = request.headers.get("content-type", "").partition(";")[0]
        if media_type.strip().lower() != "application/json":
            raise APIError(
                415,
                "the request body must be sent as 'Content-Type: application/json'",
                code="unsupported_media_type",
            )
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
            raise APIError(
                408,
                f"the request body did not arrive within {self.body_timeout_s:g} s",
                code="request_timeout",
            ) from None
        except ClientDisconnect:
            raise ClientGone from None
        try:
            data = json.loads(body)
        except RecursionError:
            raise APIError(
                400, f"the request body is nested more than {MAX_JSON_DEPTH} levels deep"
            ) from None
        except ValueError:
            raise APIError(400, "the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise APIError(400, "the request body must be a JSON object")
        try:
            check_body(data)
        except BodyError as error:
            raise APIError(400, str(error), param=error.param) from None
        try:
            return ChatCompletionRequest.model_validate(data)
        except ValidationError as error:
            location = error.errors()[0]["loc"]
            param = str(location[0]) if location else None
            raise APIError(400, describe_validation_error(error), param=param) from None

    def too_large(self) -> APIError:
        """Return the 413 error for a body over the limit."""
        return APIError(
            413,
            f"the request body is over {self.max_body_bytes} bytes",
            code="request_too_large",
        )

    async def chat_completions(self, request: Request) -> Response:
        """``POST /v1/chat/completions``: run the model and answer, streamed or not."""
        self.authorize(request)
        body = await self.read_request(request)
        served = self.model(body.model)
        options, messages = _prepared(body, served)
        if self.running >= self.max_concurrent:
            raise APIError(
                429,
                f"the server is already running its limit of {self.max_concurrent} "
                "MoA runs; retry later",
                error_type="rate_limit_error",
                code="too_many_concurrent_runs",
                headers={"Retry-After": "1"},
            )
        thread_id = str(uuid.uuid4()) if served.checkpointer is not None else None
        # The slot is held until the run's task ends, cancelled or not.
        self.running += 1
        run = Run(options, messages, served, thread_id, self._run_ended, tokens=body.stream)
        handed_over = False
        try:
            if body.stream:
                first = await unless_disconnected(request, run.first_token())
                handed_over = True
                return StreamingResponse(
                    stream_answer(request, run, body, first),
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-cache", **run.headers()},
                )
            await unless_disconnected(request, run.finish())
            return JSONResponse(_completion(run, body), headers=run.headers())
        finally:
            if not handed_over:
                await run.close()


def _model_json(model: ServedModel) -> dict[str, Any]:
    return {"id": model.name, "object": "model", "created": model.created, "owned_by": "moa-graph"}


def _prepared(
    body: ChatCompletionRequest, served: ServedModel
) -> tuple[RunOptions, list[AnyMessage]]:
    """Return a request's run options and conversation, checked before the run.

    Raises:
        APIError: 400: the conversation cannot be answered, or an aggregator cannot
            take the request's tools or answer format (naming the agent).
    """
    try:
        messages = body.conversation()
        check_conversation(messages)
    except InputError as error:
        raise APIError(400, str(error), param="messages") from None
    options = body.run_options()
    try:
        served.check(options)
    except InputError as error:
        # The planner says which the model cannot take: tools or the answer format.
        param = "response_format" if "response_format" in str(error) else "tools"
        raise APIError(400, str(error), param=param) from None
    return options, messages


def _completion(run: Run, body: ChatCompletionRequest) -> dict[str, Any]:
    """Return a finished run's answer as a chat completion."""
    answer = completion_json(
        completion_id=completion_id(),
        created=int(time.time()),
        model=run.served.name,
        text=run.answer,
        finish_reason=run.finish_reason,
        tool_calls=run.tool_calls,
    )
    answer["usage"] = run.usage()
    if body.moa.include_proposals:
        answer["moa"] = run.extension()
    return answer
