"""A fake OpenAI-compatible endpoint with a fixed latency, for the benchmarks.

Every chat completion answers after ``--latency`` seconds with ``--tokens`` words,
streamed or not, with usage. It runs in its own process, so the measured client never
shares a GIL with it, and speaks HTTP/1.1 on plain ``asyncio`` streams as a provider's
front end does: connections are kept alive, a streamed answer is a chunked
``text/event-stream`` (one HTTP chunk per event), and every response leaves in one
write, its headers and body together, on a socket with ``TCP_NODELAY``. So no answer
waits on Nagle's algorithm or a delayed ACK, and the endpoint's own CPU per call is a
fraction of a web framework's: what the benchmarks measure is the client.

    python benchmarks/endpoint.py --port 8001 --latency 0.05 --tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from typing import Any

_COMPLETIONS = b"/v1/chat/completions"


class Endpoint:
    """Answers chat completions after a fixed latency.

    Args:
        latency: Seconds before every answer.
        tokens: Words in every answer.
    """

    def __init__(self, latency: float, tokens: int) -> None:
        self.latency = latency
        self.tokens = tokens
        self.text = " ".join(f"w{i}" for i in range(tokens))

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one connection's requests, one after the other, until it closes."""
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                method, path, headers = _parse_head(head)
                body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
                if method == b"POST" and path == _COMPLETIONS:
                    await asyncio.sleep(self.latency)
                    writer.write(self.answer(json.loads(body)))
                else:
                    writer.write(_response(b"404 Not Found", b"application/json", b"{}"))
                await writer.drain()
                if headers.get(b"connection", b"").lower() == b"close":
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    def answer(self, request: dict[str, Any]) -> bytes:
        """Return the whole HTTP response to a chat completion request."""
        prompt_tokens = sum(len(str(m["content"]).split()) for m in request["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": self.tokens,
            "total_tokens": prompt_tokens + self.tokens,
        }
        base = {"id": "chatcmpl-bench", "created": int(time.time()), "model": request["model"]}
        if not request.get("stream"):
            message = {"role": "assistant", "content": self.text}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            reply = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            return _response(b"200 OK", b"application/json", json.dumps(reply).encode())
        events = []
        for i, word in enumerate(self.text.split(" ")):
            delta = {"content": word if i == 0 else " " + word}
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            events.append({**base, "object": "chat.completion.chunk", "choices": [choice]})
        if request.get("stream_options", {}).get("include_usage"):
            last = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            events.append(last)
        lines = [f"data: {json.dumps(event)}\n\n".encode() for event in events]
        lines.append(b"data: [DONE]\n\n")
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(line), line) for line in lines) + b"0\r\n\r\n"
        return _response(b"200 OK", b"text/event-stream", chunks, chunked=True)


def _parse_head(head: bytes) -> tuple[bytes, bytes, dict[bytes, bytes]]:
    """Return a request's method, path and headers (names lower-cased)."""
    request_line, *lines = head.rstrip(b"\r\n").split(b"\r\n")
    method, path, _ = request_line.split(b" ", 2)
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return method, path, headers


def _response(status: bytes, media_type: bytes, body: bytes, *, chunked: bool = False) -> bytes:
    """Return a keep-alive response, headers and body in one buffer."""
    length = b"transfer-encoding: chunked" if chunked else b"content-length: %d" % len(body)
    return b"HTTP/1.1 %s\r\ncontent-type: %s\r\n%s\r\nconnection: keep-alive\r\n\r\n%s" % (
        status,
        media_type,
        length,
        body,
    )


async def serve(port: int, latency: float, tokens: int) -> None:
    """Serve the endpoint on ``127.0.0.1:port`` until cancelled."""
    endpoint = Endpoint(latency, tokens)
    server = await asyncio.start_server(endpoint.serve, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Serve the endpoint until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.latency, args.tokens))


if __name__ == "__main__":
    main()
