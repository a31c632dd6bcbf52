"""Loading examples: every real file in ../shared/data with its verified counts, and every data error."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from adapterbench.errors import UserError
from adapterbench.tasks import ENV_DATA_DIR, TASKS, load_examples
from adapterbench.tasks.conll import parse_conll_lines
from adapterbench.tasks.data import local_path
from adapterbench.tasks.spec import HubSource, LocalSource, TaskSpec

DATA = Path(__file__).parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "glue").is_dir(), reason=f"shared benchmark data not found at {DATA}")

# Rows and label counts verified in ../shared/data/README.md.
GLUE_COUNTS = [
    ("cola", "train", 8551, {"1": 6023, "0": 2528}),
    ("cola", "validation", 1043, {"1": 721, "0": 322}),
    ("sst2", "train", 67349, {"0": 29780, "1": 37569}),
    ("sst2", "validation", 872, {"0": 428, "1": 444}),
    ("mrpc", "train", 3668, {"1": 2474, "0": 1194}),
    ("mrpc", "validation", 408, {"1": 279, "0": 129}),
    ("stsb", "train", 5749, None),
    ("stsb", "validation", 1500, None),
    ("qnli", "validation", 5463, {"entailment": 2702, "not_entailment": 2761}),
    ("rte", "train", 2490, {"entailment": 1249, "not_entailment": 1241}),
    ("rte", "validation", 277, {"entailment": 146, "not_entailment": 131}),
    ("wnli", "train", 635, {"1": 312, "0": 323}),
    ("wnli", "validation", 71, {"1": 31, "0": 40}),
]
# Sentences, tokens and PER/ORG/LOC/MISC entities per split.
CONLL_COUNTS = [
    ("train", 14041, 203621, {"PER": 6600, "ORG": 6321, "LOC": 7140, "MISC": 3438}),
    ("validation", 3250, 51362, {"PER": 1842, "ORG": 1341, "LOC": 1837, "MISC": 922}),
    ("test", 3453, 46435, {"PER": 1617, "ORG": 1661, "LOC": 1668, "MISC": 702}),
]


@needs_data
@pytest.mark.parametrize("name, split, rows, label_counts", GLUE_COUNTS)
def test_glue_files_load_with_verified_counts(name, split, rows, label_counts):
    task = TASKS.get(name)
    examples = load_examples(task, split, DATA)
    assert len(examples) == rows
    for example in examples[:50]:
        assert set(example) == {*task.text_fields, task.label_field}
        assert all(isinstance(example[f], str) and example[f].strip() for f in task.text_fields)
    if label_counts is not None:
        assert Counter(ex[task.label_field] for ex in examples) == label_counts


@needs_data
@pytest.mark.parametrize("split, mean", [("train", 2.701), ("validation", 2.364)])
def test_stsb_scores_are_floats_in_range(split, mean):
    scores = [ex["label"] for ex in load_examples(TASKS.get("stsb"), split, DATA)]
    assert all(isinstance(s, float) and 0.0 <= s <= 5.0 for s in scores)
    assert sum(scores) / len(scores) == pytest.approx(mean, abs=5e-4)


@needs_data
def test_glue_quirks_bom_quotes_and_missing_final_newline():
    mrpc = load_examples(TASKS.get("mrpc"), "validation", DATA)
    # Read through the header name "Quality", which only matches once the BOM is stripped.
    assert mrpc[0]["label"] == "1"
    assert mrpc[0]["sentence1"].startswith("He said the foodservice pie business")
    # A bare quote opens the field and is kept: TSV is read with no quote character.
    assert mrpc[0]["sentence2"].startswith('"The foodservice pie business')
    cola = load_examples(TASKS.get("cola"), "validation", DATA)
    assert cola[0] == {"sentence": "The sailors rode the breeze clear of the rocks.", "label": "1"}
    assert cola[-1] == {"sentence": "John talked to Bill about himself.", "label": "1"}  # the line without "\n"


@needs_data
@pytest.mark.parametrize("split, sentences, tokens, entities", CONLL_COUNTS)
def test_conll_files_load_with_verified_counts(split, sentences, tokens, entities):
    task = TASKS.get("conll2003")
    examples = load_examples(task, split, DATA)
    assert len(examples) == sentences
    assert sum(len(ex["tokens"]) for ex in examples) == tokens
    assert all(len(ex["tokens"]) == len(ex["ner_tags"]) for ex in examples)
    assert not any("-DOCSTART-" in ex["tokens"] for ex in examples)
    # IOB2: every entity starts with B-, so B- tags count the entities.
    counted = Counter(tag[2:] for ex in examples for tag in ex["ner_tags"] if tag.startswith("B-"))
    assert counted == entities


@needs_data
def test_conll_first_sentence():
    first = load_examples(TASKS.get("conll2003"), "train", DATA)[0]
    assert first["tokens"] == ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]
    assert first["ner_tags"] == ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]


@needs_data
def test_data_dir_from_environment(monkeypatch):
    monkeypatch.setenv(ENV_DATA_DIR, str(DATA))
    assert len(load_examples(TASKS.get("wnli"), "validation")) == 71


@needs_data
def test_missing_split_file_names_the_expected_path():
    with pytest.raises(UserError, match=r"qnli.*'train'.*glue/QNLI/train\.tsv.*does not exist"):
        load_examples(TASKS.get("qnli"), "train", DATA)


def test_conll_parser_drops_docstart_and_handles_a_missing_final_blank():
    lines = ["-DOCSTART- -X- -X- O", "", "Ada NNP B-NP B-PER", "spoke VBD B-VP O", "",
             "-DOCSTART- -X- -X- O", "Oslo NNP B-NP B-LOC"]
    assert parse_conll_lines(lines, 3) == [(3, ["Ada", "spoke"], ["B-PER", "O"]), (7, ["Oslo"], ["B-LOC"])]


# ---- errors, on small files written here ------------------------------------------------------------------------


def _pair_task(tmp_path: Path, **local: object) -> TaskSpec:
    """An RTE-shaped task reading ``pairs/{train,dev}.tsv`` under ``tmp_path``."""
    source = {"format": "tsv", "files": {"train": "pairs/train.tsv", "validation": "pairs/dev.tsv"},
              "columns": {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}, **local}
    return TASKS.get("rte").derive(name="pairs", local=LocalSource(**source))


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


HEADER = "index\tsentence1\tsentence2\tlabel\n"


def test_tmp_pair_task_loads(tmp_path):
    _write(tmp_path / "pairs/train.tsv", HEADER + "0\tA cat sat.\tA cat.\tentailment\n1\tNo.\tYes.\tnot_entailment\n")
    examples = load_examples(_pair_task(tmp_path), "train", tmp_path)
    assert examples == [{"sentence1": "A cat sat.", "sentence2": "A cat.", "label": "entailment"},
                        {"sentence1": "No.", "sentence2": "Yes.", "label": "not_entailment"}]


def test_bom_is_stripped_from_the_header(tmp_path):
    (tmp_path / "pairs").mkdir()
    (tmp_path / "pairs/train.tsv").write_bytes(("\ufeff" + HEADER + "0\ta\tb\tentailment\n").encode("utf-8"))
    assert load_examples(_pair_task(tmp_path), "train", tmp_path)[0]["label"] == "entailment"


def test_missing_data_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError, match=f"data folder '{missing}' does not exist"):
        load_examples(TASKS.get("rte"), "train", missing)


def test_missing_data_folder_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "gone"))
    with pytest.raises(UserError, match="gone"):
        load_examples(TASKS.get("rte"), "train")


def test_missing_split_file(tmp_path):
    _write(tmp_path / "pairs/train.tsv", HEADER + "0\ta\tb\tentailment\n")
    with pytest.raises(UserError, match=f"split 'validation': expected the file '{tmp_path}/pairs/dev.tsv'"):
        load_examples(_pair_task(tmp_path), "validation", tmp_path)


def test_unknown_split(tmp_path):
    with pytest.raises(UserError, match="no split 'test'; its splits are: train, validation"):
        load_examples(_pair_task(tmp_path), "test", tmp_path)


def test_malformed_tsv_line(tmp_path):
    path = _write(tmp_path / "pairs/train.tsv", HEADER + "0\ta\tb\tentailment\n1\tonly two\tentailment\n")
    with pytest.raises(UserError, match=f"^{path}:3: expected 4 tab-separated columns, got 3$"):
        load_examples(_pair_task(tmp_path), "train", tmp_path)


def test_malformed_line_in_headerless_file(tmp_path):
    path = _write(tmp_path / "pairs/train.tsv", "0\ta\tb\tentailment\n1\ta\tb\tentailment\textra\n")
    task = _pair_task(tmp_path, header=False, columns={"sentence1": "1", "sentence2": "2", "label": "3"})
    with pytest.raises(UserError, match=f"{path}:2: expected 4 tab-separated columns, got 5"):
        load_examples(task, "train", tmp_path)


def test_label_outside_the_label_set(tmp_path):
    path = _write(tmp_path / "pairs/train.tsv", HEADER + "0\ta\tb\tentailment\n1\ta\tb\tneutral\n")
    with pytest.raises(UserError, match=f"{path}:3: label 'neutral' is not one of the task's labels: "
                                        "entailment, not_entailment"):
        load_examples(_pair_task(tmp_path), "train", tmp_path)


def test_missing_column_in_header(tmp_path):
    _write(tmp_path / "pairs/train.tsv", "index\tsentence1\tsentence2\tgold\n0\ta\tb\tentailment\n")
    with pytest.raises(UserError, match="no column 'label' .*columns are: index, sentence1, sentence2, gold"):
        load_examples(_pair_task(tmp_path), "train", tmp_path)


def test_empty_split(tmp_path):
    path = _write(tmp_path / "pairs/train.tsv", HEADER)
    with pytest.raises(UserError, match=f"split 'train' is empty: {path} holds no examples"):
        load_examples(_pair_task(tmp_path), "train", tmp_path)


def test_regression_label_that_is_not_a_number(tmp_path):
    path = _write(tmp_path / "pairs/train.tsv", "sentence1\tsentence2\tlabel\na\tb\t4.5\na\tb\thigh\n")
    task = TASKS.get("stsb").derive(local=LocalSource("tsv", {"train": "pairs/train.tsv"}))
    with pytest.raises(UserError, match=f"{path}:3: label 'high' is not a number"):
        load_examples(task, "train", tmp_path)


def test_malformed_and_wrongly_tagged_conll(tmp_path):
    task = TASKS.get("conll2003").derive(local=LocalSource("conll", {"train": "c.txt"}, header=False))
    path = _write(tmp_path / "c.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ\n")
    with pytest.raises(UserError, match=f"{path}:4: expected at least 4 space-separated columns"):
        load_examples(task, "train", tmp_path)
    _write(tmp_path / "c.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP B-FOO\n")
    with pytest.raises(UserError, match=f"{path}:1: tag 'B-FOO' is not one of the task's labels: O, B-PER"):
        load_examples(task, "train", tmp_path)
    _write(tmp_path / "c.txt", "-DOCSTART- -X- -X- O\n\n")
    with pytest.raises(UserError, match="split 'train' is empty"):
        load_examples(task, "train", tmp_path)


def test_user_task_without_hub_needs_a_data_folder(monkeypatch):
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    task = TASKS.get("rte").derive(name="local-only", hub=None)
    with pytest.raises(UserError, match="'local-only' has no hub source, so it needs a data folder"):
        load_examples(task, "train", None)


def test_without_a_data_folder_the_hub_is_used(monkeypatch):
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    assert local_path(TASKS.get("sst2"), "train", None) is None


def test_hub_error_when_offline(monkeypatch, tmp_path):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    # Offline mode, and an empty datasets cache, so the answer is the same on every machine and comes at once.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    task = TASKS.get("rte").derive(hub=HubSource("nyu-mll/glue", "rte", {"train": "train"}, True))
    with pytest.raises(UserError) as info:
        load_examples(task, "train", None)
    message = str(info.value)
    assert "cannot load task 'rte' split 'train' from the hub dataset nyu-mll/glue (rte) split train" in message
    assert "--data-dir" in message and "\n" not in message


# MNLI and QQP are not in the shared data; these rows are made up, the headers are GLUE's own.
MNLI_TRAIN_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                     "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n")
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER.replace("label1\t", "label1\tlabel2\tlabel3\tlabel4\tlabel5\t")


def test_mnli_and_qqp_specs_read_the_glue_headers(tmp_path):
    _write(tmp_path / "glue/MNLI/train.tsv",
           MNLI_TRAIN_HEADER + "0\t1\t1n\tfiction\t( a )\t( b )\t(S a)\t(S b)\tIt rained.\tIt was dry.\tcontradiction"
                               "\tcontradiction\n")
    row = "0\t2\t2e\tslate\t( c )\t( d )\t(S c)\t(S d)\tShe ran \"fast\".\tShe moved.\t" + "entailment\t" * 5
    _write(tmp_path / "glue/MNLI/dev_matched.tsv", MNLI_DEV_HEADER + row + "entailment\n")
    _write(tmp_path / "glue/MNLI/dev_mismatched.tsv", MNLI_DEV_HEADER + row.replace("slate", "letters") + "neutral\n")
    mnli = TASKS.get("mnli")
    assert load_examples(mnli, "train", tmp_path) == [
        {"premise": "It rained.", "hypothesis": "It was dry.", "label": "contradiction"}]
    assert load_examples(mnli, "validation_matched", tmp_path)[0] == {
        "premise": 'She ran "fast".', "hypothesis": "She moved.", "label": "entailment"}
    assert load_examples(mnli, "validation_mismatched", tmp_path)[0]["label"] == "neutral"

    _write(tmp_path / "glue/QQP/dev.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                                          "7\t1\t2\tHow do I cook rice?\tWhat is the way to cook rice?\t1\n")
    assert load_examples(TASKS.get("qqp"), "validation", tmp_path) == [
        {"question1": "How do I cook rice?", "question2": "What is the way to cook rice?", "label": "1"}]
