"""Chat models for ``local:NAME`` specs: ``ChatOpenAI`` pointed at the in-process server.

The embedded runtime is reached the same way as any OpenAI-compatible endpoint
(vLLM, Ollama, a remote ``llama-server``): only the base URL differs.
"""

from __future__ import annotations

from typing import Any

import openai
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from moa_graph.connections import async_http_client
from moa_graph.local.catalog import get_model
from moa_graph.local.server import server_for

_PLACEHOLDER_KEY = "local"  # the server checks no key, but the OpenAI client wants one


def chat_model(
    name: str,
    *,
    temperature: float,
    max_tokens: int,
    seed: int | None = None,
    **params: Any,
) -> BaseChatModel:
    """Return a chat model served by the embedded llama.cpp runtime.

    Its server starts on first use and serves every chat model of that name.

    Args:
        name: A local model name, e.g. ``"smollm2-135m"`` for ``local:smollm2-135m``.
        temperature: Sampling temperature.
        max_tokens: Completion budget.
        seed: Sampling seed. A seeded request is repeatable at any temperature: it
            skips the server's prompt cache (and reads its prompt again).
        **params: Further ``ChatOpenAI`` settings (``timeout``, ``max_retries``, ...).

    Returns:
        A ``ChatOpenAI`` on the server's ``/v1``.

    Raises:
        UnknownModelError: No local model has that name.
        WeightsNotInstalledError: The weights are not installed; says the command.
        ChecksumMismatchError: The installed file is corrupted; it is not loaded.
        NoFreePortError: No port on 127.0.0.1 could be bound.
        ModelLoadError: llama.cpp could not load the file.
    """
    server = server_for(get_model(name))
    settings: dict[str, Any] = {
        "base_url": f"{server.base_url}/v1",
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
    return ChatOpenAI(**settings)
