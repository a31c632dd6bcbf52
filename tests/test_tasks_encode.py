"""Encoding: labels on first sub-words, truncation, and the on-disk cache (a second encode does not tokenise)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from adapterbench.errors import UserError
from adapterbench.tasks import ENV_CACHE, TASKS, encode_split, get_task, load_examples
from adapterbench.tasks.encode import IGNORE_INDEX, align_labels, encode_examples, tokenizer_identity
from adapterbench.testing import minilm_tokenizer

DATA = Path(__file__).parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "conll2003").is_dir(), reason=f"shared benchmark data not found at {DATA}")
TASK_FILES = Path(__file__).parent / "data" / "tasks"


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture
def count_calls(tokenizer, monkeypatch):
    """Counts calls of the tokenizer (patched on its class: ``tok(...)`` looks ``__call__`` up on the type)."""
    calls = []
    original = type(tokenizer).__call__

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", counting)
    return calls


def test_align_labels_marks_first_subwords_only():
    # [CLS] w0 w0 w1 [SEP]-like None in the middle, w2 w2 w2 [SEP]
    word_ids = [None, 0, 0, 1, None, 2, 2, 2, None]
    assert align_labels(word_ids, [5, 6, 7]) == [-100, 5, -100, 6, -100, 7, -100, -100, -100]
    assert align_labels([None, 0, 1, 1, None], [3, 4], ignore=-1) == [-1, 3, 4, -1, -1]


@needs_data
def test_conll_labels_sit_on_first_subwords(tokenizer):
    task = TASKS.get("conll2003")
    examples = load_examples(task, "validation", DATA)[:300]
    records = encode_examples(task, examples, tokenizer, max_length=128)
    tag_index = {tag: i for i, tag in enumerate(task.labels)}
    checked_multi_piece = 0
    for example, record in zip(examples, records):
        assert len(record["labels"]) == len(record["input_ids"]) == len(record["token_type_ids"])
        # Independently: tokenise word by word; word k starts at 1 + the pieces of the words before it.
        pieces = [len(tokenizer.tokenize(word)) for word in example["tokens"]]
        assert all(p > 0 for p in pieces)
        if 2 + sum(pieces) > 128:
            continue  # truncated; covered below
        starts = [1 + sum(pieces[:k]) for k in range(len(pieces))]
        expected = [IGNORE_INDEX] * (2 + sum(pieces))
        for start, tag in zip(starts, example["ner_tags"]):
            expected[start] = tag_index[tag]
        assert record["labels"] == expected
        assert record["input_ids"][0] == tokenizer.cls_token_id and record["input_ids"][-1] == tokenizer.sep_token_id
        checked_multi_piece += any(p > 1 for p in pieces)
    assert checked_multi_piece > 50  # the check above really covered words split into several pieces


def test_truncation_keeps_length_and_special_tokens(tokenizer):
    task = get_task(str(TASK_FILES / "ner.json"))
    examples = load_examples(task, "validation")
    records = encode_examples(task, examples, tokenizer, max_length=6)
    for record in records:
        assert len(record["input_ids"]) == len(record["labels"]) <= 6
        assert record["input_ids"][-1] == tokenizer.sep_token_id
        assert record["labels"][0] == record["labels"][-1] == IGNORE_INDEX
    # "Alan Turing was born in ...": only the first words survive, labelled B-PER, I-PER, ...
    kept = [label for label in records[0]["labels"] if label != IGNORE_INDEX]
    assert kept[:2] == [task.labels.index("B-PER"), task.labels.index("I-PER")]
    assert len(kept) < len(examples[0]["words"])


def test_sentence_and_pair_encoding(tokenizer, tmp_path):
    sentiment = get_task(str(TASK_FILES / "sentiment.toml"))
    records = encode_split(sentiment, "validation", tokenizer, 32, None, cache_dir=tmp_path)
    assert [r["labels"] for r in records] == [0, 1, 0]  # negative, positive, negative
    assert records[0]["input_ids"] == tokenizer("Cheap plastic smell that never goes away.")["input_ids"]
    assert set(records[0]["token_type_ids"]) == {0}

    (tmp_path / "p").mkdir()
    (tmp_path / "p/train.tsv").write_text("sentence1\tsentence2\tlabel\nA man plays.\tSomeone plays music.\t3.8\n")
    from adapterbench.tasks.spec import LocalSource

    stsb = TASKS.get("stsb").derive(local=LocalSource("tsv", {"train": "p/train.tsv"}))
    record, = encode_split(stsb, "train", tokenizer, 64, tmp_path, cache_dir=tmp_path / "cache")
    assert record["labels"] == pytest.approx(3.8) and isinstance(record["labels"], float)
    first_len = len(tokenizer("A man plays.")["input_ids"])
    assert record["token_type_ids"][:first_len] == [0] * first_len
    assert set(record["token_type_ids"][first_len:]) == {1}
    short, = encode_examples(stsb, load_examples(stsb, "train", tmp_path), tokenizer, max_length=7)
    assert len(short["input_ids"]) == 7 and short["input_ids"].count(tokenizer.sep_token_id) == 2


def test_second_encode_reads_the_cache(tokenizer, count_calls, tmp_path):
    task = get_task(str(TASK_FILES / "sentiment.toml"))
    first = encode_split(task, "train", tokenizer, 32, None, cache_dir=tmp_path)
    assert len(count_calls) == 1
    second = encode_split(task, "train", tokenizer, 32, None, cache_dir=tmp_path)
    assert len(count_calls) == 1  # no tokenisation the second time
    assert second == first
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"  # no temporary file left behind
    stored = json.loads(files[0].read_text())
    assert stored["examples"] == first and stored["key"]["max_length"] == 32

    encode_split(task, "train", tokenizer, 16, None, cache_dir=tmp_path)  # another max_length: a new entry
    assert len(count_calls) == 2
    encode_split(task, "validation", tokenizer, 32, None, cache_dir=tmp_path)  # another split
    assert len(count_calls) == 3
    assert len(list(tmp_path.iterdir())) == 3


def test_cache_notices_a_changed_source_file(tokenizer, count_calls, tmp_path):
    (tmp_path / "pairs").mkdir()
    source = tmp_path / "pairs/train.tsv"
    source.write_text("sentence1\tsentence2\tlabel\na\tb\tentailment\n")
    from adapterbench.tasks.spec import LocalSource

    task = TASKS.get("rte").derive(local=LocalSource("tsv", {"train": "pairs/train.tsv"}))
    cache = tmp_path / "cache"
    assert encode_split(task, "train", tokenizer, 16, tmp_path, cache)[0]["labels"] == 0
    source.write_text("sentence1\tsentence2\tlabel\na\tb\tnot_entailment\n")
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    assert encode_split(task, "train", tokenizer, 16, tmp_path, cache)[0]["labels"] == 1
    assert len(count_calls) == 2


def test_cache_ignores_a_corrupt_entry(tokenizer, count_calls, tmp_path):
    task = get_task(str(TASK_FILES / "sentiment.toml"))
    good = encode_split(task, "validation", tokenizer, 32, None, cache_dir=tmp_path)
    entry, = tmp_path.iterdir()
    entry.write_text('{"key": {"trunc')
    assert encode_split(task, "validation", tokenizer, 32, None, cache_dir=tmp_path) == good
    assert len(count_calls) == 2
    assert json.loads(entry.read_text())["examples"] == good  # rewritten whole


def test_cache_dir_from_environment(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "env-cache"))
    encode_split(get_task(str(TASK_FILES / "sentiment.toml")), "validation", tokenizer, 32, None)
    assert len(list((tmp_path / "env-cache").glob("tiny-sentiment-validation-*.json"))) == 1


def test_tokenizer_identity_is_stable_and_sees_settings(tokenizer):
    before = tokenizer_identity(tokenizer)
    tokenizer(["a b c d e f"], truncation=True, max_length=3)  # leaves truncation state on the backend
    assert tokenizer_identity(tokenizer) == before
    lowercase = before["backend_sha256"]
    from transformers import AutoTokenizer

    cased = AutoTokenizer.from_pretrained(tokenizer.name_or_path, do_lower_case=False)
    assert tokenizer_identity(cased)["backend_sha256"] != lowercase


def test_bad_max_length(tokenizer, tmp_path):
    task = get_task(str(TASK_FILES / "sentiment.toml"))
    with pytest.raises(UserError, match="max_length 0 must be a positive integer"):
        encode_split(task, "validation", tokenizer, 0, None, cache_dir=tmp_path)
