"""A fake OpenAI-compatible endpoint with a fixed latency, for the benchmarks.

Every chat completion answers after ``--latency`` seconds with ``--tokens`` words,
streamed or not, with usage. It runs in its own process (uvicorn), so the measured
client never shares a GIL with it.

    python benchmarks/endpoint.py --port 8001 --latency 0.05 --tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def create_app(latency: float, tokens: int) -> Starlette:
    """Return the endpoint's ASGI app."""
    words = [f"w{i}" for i in range(tokens)]

    async def completions(request: Request) -> Response:
        body = await request.json()
        await asyncio.sleep(latency)
        prompt_tokens = sum(len(str(m["content"]).split()) for m in body["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": tokens,
            "total_tokens": prompt_tokens + tokens,
        }
        base = {"id": "chatcmpl-bench", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": " ".join(words)},
                "finish_reason": "stop",
            }
            return JSONResponse(
                {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )

        async def events() -> AsyncIterator[str]:
            for i, word in enumerate(words):
                delta = {"content": word if i == 0 else " " + word}
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
                yield f"data: {json.dumps(chunk)}\n\n"
            last: dict[str, Any] = {**base, "object": "chat.completion.chunk", "choices": []}
            if body.get("stream_options", {}).get("include_usage"):
                yield f"data: {json.dumps({**last, 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


def main() -> None:
    """Serve the endpoint until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    app = create_app(args.latency, args.tokens)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", backlog=4096)


if __name__ == "__main__":
    main()
