"""Tokenising a split into model inputs, cached on disk.

``encode_split`` returns one dict per example:

* ``input_ids``: ``list[int]`` of length ``<= max_length`` (special tokens included; truncated, never padded);
* ``token_type_ids``: ``list[int]`` of the same length, only when the tokenizer produces them (BERT does);
* ``labels``: the class index (``int``) into ``task.labels``, the score (``float``) for regression, or for token
  classification a ``list[int]`` as long as ``input_ids`` holding the tag index on the first sub-word of each
  word and ``-100`` on every other sub-word and on special tokens (Devlin et al., 2019, BERT, section 5.3:
  "we use the representation of the first sub-token as the input to the token-level classifier"). Words cut
  off by truncation have no label at all.

Sentence pairs are truncated longest-first (the tokenizer's ``truncation=True``), as GLUE fine-tuning does.

The cache is one JSON file per (task, split, source, tokenizer, max_length) under ``cache_dir`` (default
``$ADAPTERBENCH_CACHE``, else ``~/.cache/adapterbench/encoded``). Its name carries a SHA-256 of the key and the
file stores the key itself, so a stale or colliding entry is never used. JSON keeps the cache free of pickle;
files are written to a temporary name and renamed, so a crash never leaves half a file under the real name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

from adapterbench.errors import UserError
from adapterbench.tasks.data import load_examples, source_identity
from adapterbench.tasks.spec import TaskSpec

ENV_CACHE = "ADAPTERBENCH_CACHE"
CACHE_FORMAT = 1  # bump when the encoding or the file layout changes
IGNORE_INDEX = -100  # the label torch's cross-entropy skips


def default_cache_dir() -> Path:
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "adapterbench" / "encoded"


# ---- pure encoding ---------------------------------------------------------------------------------------------


def align_labels(word_ids: list[int | None], word_labels: list[int], ignore: int = IGNORE_INDEX) -> list[int]:
    """Per-token labels from per-word labels: the label on each word's first sub-word, ``ignore`` elsewhere.

    ``word_ids[t]`` is the index of the word that token ``t`` came from, ``None`` for special tokens (as a fast
    tokenizer's ``BatchEncoding.word_ids()`` returns). Output length equals ``len(word_ids)``.
    """
    labels: list[int] = []
    previous: int | None = None
    for word in word_ids:
        if word is None or word == previous:
            labels.append(ignore)
        else:
            labels.append(word_labels[word])
        previous = word
    return labels


def encode_examples(task: TaskSpec, examples: list[dict[str, Any]], tokenizer: Any,
                    max_length: int) -> list[dict[str, Any]]:
    """Tokenise examples in one batched tokenizer call (see the module docstring for the output)."""
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise UserError(f"max_length {max_length!r} must be a positive integer")
    if task.kind == "token_classification":
        return _encode_words(task, examples, tokenizer, max_length)
    first = [ex[task.text_fields[0]] for ex in examples]
    second = [ex[task.text_fields[1]] for ex in examples] if len(task.text_fields) > 1 else None
    encoded = tokenizer(first, second, truncation=True, max_length=max_length)
    return [_record(encoded, i, label) for i, label in enumerate(example_labels(task, examples))]


def example_labels(task: TaskSpec, examples: list[dict[str, Any]]) -> list[Any]:
    """The training targets of ``examples`` as the loop sees them: a class index into ``task.labels``, a float for
    regression, or per word a tag index for token classification (before alignment to sub-words)."""
    if task.kind == "regression":
        return [float(ex[task.label_field]) for ex in examples]
    index = {label: i for i, label in enumerate(task.labels or ())}
    if task.kind == "token_classification":
        return [[index[tag] for tag in ex[task.label_field]] for ex in examples]
    return [index[ex[task.label_field]] for ex in examples]


def _encode_words(task: TaskSpec, examples: list[dict[str, Any]], tokenizer: Any,
                  max_length: int) -> list[dict[str, Any]]:
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"token classification needs a fast tokenizer (one that reports word ids); "
                        f"{type(tokenizer).__name__} is not")
    words = [ex[task.text_fields[0]] for ex in examples]
    try:
        encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
    except ValueError as exc:  # e.g. a byte-level BPE tokenizer built without add_prefix_space
        raise UserError(f"tokenizer {type(tokenizer).__name__} cannot encode pre-split words: "
                        f"{str(exc).strip().splitlines()[0]}") from None
    return [_record(encoded, i, align_labels(encoded.word_ids(i), tags))
            for i, tags in enumerate(example_labels(task, examples))]


def _record(encoded: Any, i: int, label: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"input_ids": list(encoded["input_ids"][i])}
    if "token_type_ids" in encoded:
        record["token_type_ids"] = list(encoded["token_type_ids"][i])
    record["labels"] = label
    return record


# ---- cache key -------------------------------------------------------------------------------------------------


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    """Memoised :func:`compute_tokenizer_identity`: hashing a 30k-entry vocabulary costs about a second."""
    cached = getattr(tokenizer, "_adapterbench_identity", None)
    if cached is None:
        cached = compute_tokenizer_identity(tokenizer)
        try:
            tokenizer._adapterbench_identity = cached
        except AttributeError:  # a tokenizer that refuses attributes is simply hashed again
            pass
    return cached


def compute_tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    """What decides how a tokenizer splits text: its class, name, vocabulary, rules and special tokens.

    For a fast tokenizer the serialised backend (normaliser, pre-tokeniser, model with its vocabulary,
    post-processor) is hashed, without its truncation and padding state, which the tokenizer itself rewrites on
    each call. Otherwise the vocabulary is hashed. Settings kept by the Python side (``init_kwargs`` with plain
    values, ``truncation_side``, the special tokens) are included as they are.
    """
    cls = type(tokenizer)
    settings = {k: v for k, v in sorted(getattr(tokenizer, "init_kwargs", {}).items())
                if isinstance(v, (str, int, float, bool, type(None)))}
    identity: dict[str, Any] = {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "name_or_path": str(getattr(tokenizer, "name_or_path", "")),
        "truncation_side": getattr(tokenizer, "truncation_side", None),
        "special_tokens": [str(t) for t in getattr(tokenizer, "all_special_tokens", [])],
        "settings": settings,
    }
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        identity["backend_sha256"] = _sha256_json(state)
    else:
        identity["vocab_sha256"] = _sha256_json(sorted(tokenizer.get_vocab().items()))
    return identity


def cache_key(task: TaskSpec, split: str, tokenizer: Any, max_length: int,
              data_dir: Path | str | None) -> dict[str, Any]:
    """Everything the encoded split depends on, as plain JSON values."""
    return json.loads(json.dumps({
        "format": CACHE_FORMAT,
        "task": task.name,
        "version": task.version,
        "split": split,
        # Fields and labels too, so that editing a user task file without bumping its version is still safe.
        "kind": task.kind,
        "fields": [*task.text_fields, task.label_field],
        "labels": list(task.labels) if task.labels is not None else None,
        "source": source_identity(task, split, data_dir),
        "tokenizer": tokenizer_identity(tokenizer),
        "max_length": max_length,
    }))


def cache_file(cache_dir: Path, key: dict[str, Any]) -> Path:
    safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{key['task']}-{key['split']}")
    return cache_dir / f"{safe_name}-{_sha256_json(key)[:20]}.json"


# ---- the cached entry point ------------------------------------------------------------------------------------


def encode_split(task: TaskSpec, split: str, tokenizer: Any, max_length: int, data_dir: Path | str | None,
                 cache_dir: Path | str | None = None) -> list[dict[str, Any]]:
    """The encoded examples of ``split``, from the cache when an entry with the same key exists."""
    key = cache_key(task, split, tokenizer, max_length, data_dir)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = cache_file(folder, key)
    cached = _read_cache(path, key)
    if cached is not None:
        return cached
    records = encode_examples(task, load_examples(task, split, data_dir), tokenizer, max_length)
    _write_cache(path, key, records)
    return records


def _read_cache(path: Path, key: dict[str, Any]) -> list[dict[str, Any]] | None:
    try:
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable or half-written by an older crash: encode again and replace it
    if not isinstance(stored, dict) or stored.get("key") != key or not isinstance(stored.get("examples"), list):
        return None
    return stored["examples"]


def _write_cache(path: Path, key: dict[str, Any], records: list[dict[str, Any]]) -> None:
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=path.stem + ".",
                                         suffix=".tmp", delete=False) as f:
            tmp_name = f.name
            json.dump({"key": key, "examples": records}, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except OSError as exc:
        # A read-only or full cache folder costs time on the next run, not this run's result.
        warnings.warn(f"could not write the encoding cache {path}: {exc}", stacklevel=3)
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
