"""CoNLL-2003 English named-entity recognition, and the reader for CoNLL column files.

Tjong Kim Sang & De Meulder, 2003, "Introduction to the CoNLL-2003 Shared Task: Language-Independent Named
Entity Recognition" (CoNLL), https://aclanthology.org/W03-0419/. Scored, as in the shared task and in the BERT
paper (Devlin et al., 2019, section 5.3), by entity-level F1 (seqeval's default, conlleval-compatible mode).

Files: one token per line, ``word POS chunk NER`` separated by spaces; sentences separated by blank lines; each
document starts with a ``-DOCSTART-`` line that is not a sentence. Tags are IOB2. ``train.txt`` is
``eng.train``, ``valid.txt`` is ``eng.testa`` (split ``validation``) and ``test.txt`` is ``eng.testb``.
"""

from __future__ import annotations

from pathlib import Path

from adapterbench.errors import UserError
from adapterbench.tasks.spec import HubSource, LocalSource, TaskSpec
from adapterbench.textfiles import open_text

# Ordered as the hub's ``ner_tags`` class names, so that hub indices and file tags map to the same label ids.
CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")

CONLL2003 = TaskSpec(
    name="conll2003",
    version="1",
    kind="token_classification",
    text_fields=("tokens",),
    label_field="ner_tags",
    labels=CONLL_TAGS,
    metrics=("f1", "precision", "recall", "accuracy"),
    primary_metric="f1",
    # Validation decides the best epoch; test is reported beside it, as papers report eng.testb.
    eval_splits=("validation", "test"),
    local=LocalSource("conll", {"train": "conll2003/train.txt", "validation": "conll2003/valid.txt",
                                "test": "conll2003/test.txt"}, header=False, conll_column=3),
    hub=HubSource("eriktks/conll2003", None, {"train": "train", "validation": "validation", "test": "test"},
                  label_names_from_hub=True),
    paper="Tjong Kim Sang & De Meulder, 2003, Introduction to the CoNLL-2003 Shared Task: Language-Independent "
          "Named Entity Recognition, https://aclanthology.org/W03-0419/",
    description="CoNLL-2003 English NER: PER, ORG, LOC and MISC entities, IOB2 tags, entity-level F1.",
)

DOCSTART = "-DOCSTART-"


def parse_conll_lines(lines: list[str], tag_column: int, where: str = "<lines>",
                      word_column: int = 0) -> list[tuple[int, list[str], list[str]]]:
    """Sentences of a CoNLL column file as ``(first line number, words, tags)``.

    ``lines`` are the file's lines without line ends. A sentence is a maximal block of non-blank lines; a
    ``-DOCSTART-`` line marks a document boundary: it ends any open sentence and is itself dropped. ``where``
    names the file in errors; a line with too few columns raises a one-line :class:`UserError` with
    ``file:line``.
    """
    sentences: list[tuple[int, list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    start = 0
    needed = max(tag_column, word_column) + 1
    for number, line in enumerate(lines + [""], start=1):  # the sentinel closes a final block without blank
        parts = line.split()
        if not parts or parts[0] == DOCSTART:
            if words:
                sentences.append((start, words, tags))
            words, tags = [], []
            continue
        if len(parts) < needed:
            # The line itself is not quoted: the file may be anything a task file points at.
            raise UserError(f"{where}:{number}: expected at least {needed} space-separated columns "
                            f"(word ... tag in column {tag_column}), got {len(parts)}")
        if not words:
            start = number
        words.append(parts[word_column])
        tags.append(parts[tag_column])
    return sentences


def read_conll(path: Path, tag_column: int, encoding: str = "utf-8-sig") -> list[tuple[int, list[str], list[str]]]:
    """:func:`parse_conll_lines` over a file (undecodable bytes raise a one-line error naming the line)."""
    with open_text(path, encoding, newline="") as f:
        lines = f.read().splitlines()
    return parse_conll_lines(lines, tag_column, where=str(path))
