"""``moa serve``'s errors: an answer in the OpenAI error format, or a client gone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from moa_graph.server.wire import error_json


class APIError(Exception):
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
        """Return the error as an HTTP response."""
        return JSONResponse(self.body, self.status, headers=self.headers)


class ClientGone(Exception):
    """The client closed the connection before the answer."""
