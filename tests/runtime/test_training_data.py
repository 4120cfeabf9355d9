"""Dataset reading and packing (torch-free): what is trained on, and what is not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from certmodel.runtime.errors import NotFoundError, UsageError
from certmodel.runtime.training.data import (
    IGNORE_INDEX,
    Document,
    TokenizedDoc,
    load_documents,
    pack,
    split_documents,
    tokenize_documents,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_reads_text_and_prompt_completion_records(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "d.jsonl",
        '{"text": "plain one"}\n\n{"prompt": "Q?", "completion": " A."}\n',
    )
    assert load_documents(path) == [Document(text="plain one"), Document(text=" A.", prompt="Q?")]


def test_custom_text_field(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"body": "x"}\n')
    assert load_documents(path, text_field="body") == [Document(text="x")]


def test_plain_text_documents_are_separated_by_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "d.txt", "first line\nstill first\n\n  \nsecond\n")
    assert [d.text for d in load_documents(path)] == ["first line\nstill first", "second"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"text": "ok"}\n{"text": "ok"}\n{"text": oops}\n', "d.jsonl:3: malformed JSON"),
        ('{"text": "ok"}\n["a list"]\n', "d.jsonl:2: expected a JSON object"),
        ('{"title": "no text"}\n', "d.jsonl:1: expected a string field 'text'"),
        ('{"text": "  "}\n', "d.jsonl:1: field 'text' is empty"),
        ('{"prompt": "Q", "completion": ""}\n', "d.jsonl:1: field 'completion' is empty"),
        ("\n\n", "dataset is empty"),
    ],
)
def test_bad_jsonl_names_file_and_line(tmp_path: Path, content: str, expected: str) -> None:
    path = write(tmp_path, "d.jsonl", content)
    with pytest.raises(UsageError) as info:
        load_documents(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_missing_dataset_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_documents(tmp_path / "nope.jsonl")


def test_split_is_deterministic_and_keeps_one_eval_document() -> None:
    docs = [Document(text=str(i)) for i in range(5)]
    train, held = split_documents(docs, eval_fraction=0.1, seed=3)
    assert (train, held) == split_documents(docs, eval_fraction=0.1, seed=3)
    assert len(held) == 1 and len(train) == 4
    assert split_documents(docs, eval_fraction=0.0, seed=3)[1] == []


def test_pack_fills_blocks_resets_positions_and_masks_document_starts() -> None:
    docs = [
        TokenizedDoc(ids=[1, 2, 3], labels=[1, 2, 3]),
        TokenizedDoc(ids=[4, 5, 6, 7, 8], labels=[IGNORE_INDEX, IGNORE_INDEX, 6, 7, 8]),
    ]
    blocks = pack(docs, seq_len=4, pad_id=0)
    assert blocks.input_ids == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert blocks.position_ids == [[0, 1, 2, 0], [0, 1, 2, 3]]
    # first token of each document is never a target; prompt labels stay ignored
    assert blocks.labels == [[IGNORE_INDEX, 2, 3, IGNORE_INDEX], [IGNORE_INDEX, 6, 7, 8]]
    assert blocks.real == [4, 4]


def test_pack_pads_only_the_last_block_as_its_own_segment() -> None:
    blocks = pack([TokenizedDoc(ids=[1, 2, 3, 4, 5], labels=[1, 2, 3, 4, 5])], seq_len=4, pad_id=9)
    assert blocks.input_ids[1] == [5, 9, 9, 9]
    assert blocks.labels[1] == [5, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    assert blocks.position_ids[1] == [0, 0, 1, 2]
    assert blocks.real == [4, 1]
    assert blocks.real_tokens == 5


class CharTokenizer:
    """One token per character (ord), EOS = 0: enough to check what is a target."""

    eos_token_id = 0

    def __call__(self, texts: list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        assert texts, "real tokenizers reject an empty batch"
        return {"input_ids": [[ord(c) for c in text] for text in texts]}


def test_tokenize_trains_on_completions_and_text_and_appends_eos() -> None:
    docs = [Document(text="bc", prompt="a"), Document(text="xy")]
    out = tokenize_documents(docs, CharTokenizer())
    assert out[0] == TokenizedDoc(ids=[97, 98, 99, 0], labels=[IGNORE_INDEX, 98, 99, 0])
    assert out[1] == TokenizedDoc(ids=[120, 121, 0], labels=[120, 121, 0])
    assert tokenize_documents([], CharTokenizer()) == []
