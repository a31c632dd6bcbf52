"""The nine GLUE tasks, declared as data.

GLUE: Wang et al., 2019, "GLUE: A Multi-Task Benchmark and Analysis Platform for Natural Language
Understanding" (ICLR), https://arxiv.org/abs/1804.07461. Each task keeps the official metrics of the GLUE
leaderboard: Matthews correlation for CoLA, F1 and accuracy for MRPC and QQP, Pearson and Spearman correlation
for STS-B, accuracy elsewhere; the first metric listed is the primary one.

Local files use the classic layout written by GLUE's ``download_glue_data.py`` (``glue/SST-2/train.tsv``,
``glue/SST-2/dev.tsv`` for the validation split, ``glue/MNLI/dev_matched.tsv``). Field names follow the hub's
``nyu-mll/glue`` so that an example looks the same whichever source it came from; ``columns`` says which column
of the TSV holds each field. Label strings are the ones in the TSV files, ordered so that index ``i`` is the hub's
class ``i`` (``label_names_from_hub``), which makes both sources encode to the same class indices.

Sentence-pair tasks with the same shape are declared by difference from one another.
"""

from __future__ import annotations

from adapterbench.tasks.spec import HubSource, LocalSource, TaskSpec

GLUE_PAPER = ("Wang et al., 2019, GLUE: A Multi-Task Benchmark and Analysis Platform for Natural Language "
              "Understanding, https://arxiv.org/abs/1804.07461")
GLUE_VERSION = "1"  # bump when anything that changes the numbers changes (files, fields, labels, metrics)
TRAIN_DEV = ("train", "validation")


def _glue_files(folder: str, splits: dict[str, str] | None = None) -> dict[str, str]:
    """Split name -> path under the data folder; GLUE calls the validation split ``dev``."""
    splits = splits or {"train": "train.tsv", "validation": "dev.tsv"}
    return {split: f"glue/{folder}/{file}" for split, file in splits.items()}


def _hub(config: str, splits: tuple[str, ...] = TRAIN_DEV, labels: bool = True) -> HubSource:
    return HubSource("nyu-mll/glue", config, {s: s for s in splits}, label_names_from_hub=labels)


COLA = TaskSpec(
    name="cola",
    version=GLUE_VERSION,
    kind="classification",
    text_fields=("sentence",),
    label_field="label",
    labels=("0", "1"),  # 0 = unacceptable, 1 = acceptable
    metrics=("matthews_correlation",),
    primary_metric="matthews_correlation",
    # No header: source_code, label, original_mark, sentence.
    local=LocalSource("tsv", _glue_files("CoLA"), header=False, columns={"label": "1", "sentence": "3"}),
    hub=_hub("cola"),
    paper="Warstadt, Singh & Bowman, 2019, Neural Network Acceptability Judgments (TACL); " + GLUE_PAPER,
    description="CoLA: is the sentence grammatically acceptable?",
)

SST2 = TaskSpec(
    name="sst2",
    version=GLUE_VERSION,
    kind="classification",
    text_fields=("sentence",),
    label_field="label",
    labels=("0", "1"),  # 0 = negative, 1 = positive
    metrics=("accuracy",),
    primary_metric="accuracy",
    local=LocalSource("tsv", _glue_files("SST-2"), columns={"sentence": "sentence", "label": "label"}),
    hub=_hub("sst2"),
    paper="Socher et al., 2013, Recursive Deep Models for Semantic Compositionality Over a Sentiment "
          "Treebank (EMNLP); " + GLUE_PAPER,
    description="SST-2: binary sentiment of a movie-review phrase.",
)

MRPC = TaskSpec(
    name="mrpc",
    version=GLUE_VERSION,
    kind="classification",
    text_fields=("sentence1", "sentence2"),
    label_field="label",
    labels=("0", "1"),  # 0 = not a paraphrase, 1 = paraphrase (the positive class of F1)
    metrics=("f1", "accuracy"),
    primary_metric="f1",
    # The files start with a UTF-8 BOM; LocalSource's default encoding (utf-8-sig) drops it.
    local=LocalSource("tsv", _glue_files("MRPC"),
                      columns={"label": "Quality", "sentence1": "#1 String", "sentence2": "#2 String"}),
    hub=_hub("mrpc"),
    paper="Dolan & Brockett, 2005, Automatically Constructing a Corpus of Sentential Paraphrases (IWP); "
          + GLUE_PAPER,
    description="MRPC: are the two sentences paraphrases?",
)

QQP = MRPC.derive(
    name="qqp",
    text_fields=("question1", "question2"),
    labels=("0", "1"),  # 0 = not duplicate, 1 = duplicate
    local=LocalSource("tsv", _glue_files("QQP"),
                      columns={"question1": "question1", "question2": "question2", "label": "is_duplicate"}),
    hub=_hub("qqp"),
    paper="Iyer, Dandekar & Csernai, 2017, First Quora Dataset Release: Question Pairs; " + GLUE_PAPER,
    description="QQP: do the two Quora questions ask the same thing?",
)

STSB = TaskSpec(
    name="stsb",
    version=GLUE_VERSION,
    kind="regression",
    text_fields=("sentence1", "sentence2"),
    label_field="label",
    labels=None,
    metrics=("pearson", "spearmanr"),
    primary_metric="pearson",
    local=LocalSource("tsv", _glue_files("STS-B"),
                      columns={"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"}),
    hub=_hub("stsb", labels=False),  # the hub's label is the float score itself
    paper="Cer et al., 2017, SemEval-2017 Task 1: Semantic Textual Similarity (SemEval); " + GLUE_PAPER,
    description="STS-B: similarity of two sentences, a score from 0 to 5.",
)

# The sentence-pair inference tasks share one shape; each is declared by difference from RTE.
RTE = TaskSpec(
    name="rte",
    version=GLUE_VERSION,
    kind="classification",
    text_fields=("sentence1", "sentence2"),
    label_field="label",
    labels=("entailment", "not_entailment"),
    metrics=("accuracy",),
    primary_metric="accuracy",
    local=LocalSource("tsv", _glue_files("RTE"),
                      columns={"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}),
    hub=_hub("rte"),
    paper="Dagan et al., 2006; Bar Haim et al., 2006; Giampiccolo et al., 2007; Bentivogli et al., 2009 "
          "(the PASCAL/TAC RTE challenges 1, 2, 3, 5); " + GLUE_PAPER,
    description="RTE: does the first sentence entail the second?",
)

WNLI = RTE.derive(
    name="wnli",
    labels=("0", "1"),  # 0 = not entailment, 1 = entailment (as the hub orders them)
    local=LocalSource("tsv", _glue_files("WNLI"),
                      columns={"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}),
    hub=_hub("wnli"),
    paper="Levesque, Davis & Morgenstern, 2012, The Winograd Schema Challenge (KR); " + GLUE_PAPER,
    description="WNLI: does the sentence with the pronoun replaced follow from the original?",
)

QNLI = RTE.derive(
    name="qnli",
    text_fields=("question", "sentence"),
    local=LocalSource("tsv", _glue_files("QNLI"),
                      columns={"question": "question", "sentence": "sentence", "label": "label"}),
    hub=_hub("qnli"),
    paper="Rajpurkar et al., 2016, SQuAD: 100,000+ Questions for Machine Comprehension of Text (EMNLP); "
          + GLUE_PAPER,
    description="QNLI: does the sentence contain the answer to the question?",
)

_MNLI_SPLITS = ("train", "validation_matched", "validation_mismatched")
MNLI = RTE.derive(
    name="mnli",
    text_fields=("premise", "hypothesis"),
    labels=("entailment", "neutral", "contradiction"),
    # The matched split (same genres as train) comes first: it decides the best epoch and the headline number.
    eval_splits=("validation_matched", "validation_mismatched"),
    local=LocalSource(
        "tsv",
        _glue_files("MNLI", {"train": "train.tsv", "validation_matched": "dev_matched.tsv",
                             "validation_mismatched": "dev_mismatched.tsv"}),
        # Train has 12 columns and dev 16 (five annotator labels); both name the fields by header.
        columns={"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"},
    ),
    hub=_hub("mnli", _MNLI_SPLITS),
    paper="Williams, Nangia & Bowman, 2018, A Broad-Coverage Challenge Corpus for Sentence Understanding "
          "through Inference (NAACL); " + GLUE_PAPER,
    description="MNLI: entailment, neutral or contradiction, over ten genres.",
)

GLUE_TASKS: tuple[TaskSpec, ...] = (COLA, SST2, MRPC, STSB, QQP, MNLI, QNLI, RTE, WNLI)
