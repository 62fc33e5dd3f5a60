"""``moa serve -p local-tiny``: real local models behind the OpenAI API."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.local.conftest import require_installed
from tests.server_process import moa_serve


@pytest.mark.local
def test_openai_sdk_streams_a_local_tiny_answer_with_summed_usage(tmp_path: Path) -> None:
    require_installed("smollm2-135m")
    with moa_serve(["--preset", "local-tiny"], log=tmp_path / "serve.log", timeout=120) as moa:
        client = openai.OpenAI(base_url=moa.url, api_key="unused", max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="local-tiny",
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                max_tokens=24,
                stream=True,
                stream_options={"include_usage": True},
                # Short answers from every agent keep the run to seconds on a CPU.
                extra_body={"moa": {"sampling": "all", "include_proposals": True}},
            )
        )
    answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert answer.strip()
    last = chunks[-1]
    assert last.usage is not None and last.usage.completion_tokens > 0
    extension = (last.model_extra or {})["moa"]
    assert [p["agent"] for p in extension["proposals"]] == [
        "smollm2-135m",
        "smollm2-135m-2",
        "smollm2-135m-3",
    ]
    agents = [*extension["proposals"], extension["aggregator"]]
    assert all(a["usage"]["completion_tokens"] > 0 for a in agents)
    assert sum(a["usage"]["total_tokens"] for a in agents) == last.usage.total_tokens
