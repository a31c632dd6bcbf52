"""The bad-input battery, second round (issue 25): inputs that can only be judged against something else.

Same promise and helpers as ``tests/test_bad_input.py`` (exit 2, one ``bench: error:`` line naming the bad value
and what is allowed, no traceback, the output folder byte for byte as it was), one group per class of the issue:

1. stored predictions that disagree with their record (sha256);
2. settings checked against the model's config (positions, head size, vocabulary) and absurd budgets;
3. inputs checked by loading them up front (hub data offline, pickled weights, a sharded index);
4. data that cannot train (a token example without words; quotes; long quoted fields);
5. what used to end in a traceback (a deeply nested matrix, ``export --out`` a file, ``results.load``);
6. file modes (records readable as the umask says);
7. words (a SIGKILL'd worker, a byte-order mark, other libraries' warnings);
8. defaults (``runs/``, the report hint).

The faults of class 7 that need processes (``kill -9`` of a worker, two concurrent ``bench run``) are in
``tests/test_faults.py``.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import pytest

from adapterbench.cli import main
from tests import test_bad_input as battery
from tests.test_bad_input import Env, assert_bad_input, snapshot

env, pristine_model = battery.env, battery.pristine_model  # the first battery's fixtures, shared


def tree(*folders: Path) -> dict[str, bytes]:
    return {f"{folder.name}/{name}": data for folder in folders for name, data in snapshot(folder).items()}


def one_error(capsys, argv: list[str], needles: tuple[str, ...], *unchanged: Path) -> str:
    """Like ``assert_bad_input`` for commands other than ``bench run``: every folder in ``unchanged`` kept."""
    before = tree(*unchanged)
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)
    assert lines[0].startswith("bench: error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert tree(*unchanged) == before
    return lines[0]


# ---- 1. stored predictions are verified against their record ----------------------------------------------------


@pytest.fixture(scope="module")
def ran(tmp_path_factory, pristine_model) -> Path:
    """A folder holding one real smoke run (record, predictions sidecar, checkpoint) of the tiny model."""
    folder = tmp_path_factory.mktemp("ran")
    rows = "text,label\n" + "".join(f"review number {i},{'positive' if i % 2 else 'negative'}\n" for i in range(16))
    (folder / "train.csv").write_text(rows)
    task = folder / "task.toml"
    task.write_text('name = "t"\nversion = "1"\nkind = "classification"\ntext_fields = ["text"]\nlabel_field = '
                    '"label"\nlabels = ["negative", "positive"]\nmetrics = ["accuracy"]\nprimary_metric = "accuracy"\n'
                    '[data]\nformat = "csv"\n[data.files]\ntrain = "train.csv"\nvalidation = "train.csv"\n')
    out = folder / "base"
    assert main(["run", "--variants", "head", "--task", str(task), "--model", str(pristine_model), "--profile",
                 "smoke", "--out", str(out), "--in-process", "--no-answer"]) == 0
    return out


def tampered(ran: Path, tmp: Path) -> tuple[Path, Path]:
    """A copy of ``ran`` whose sidecar says every prediction was right (the record still says what it was)."""
    copy = tmp / "current"
    shutil.copytree(ran, copy)
    (record_file,) = copy.glob("*.json")
    side = copy / json.loads(record_file.read_text())["predictions"]["file"]
    data = json.loads(gzip.decompress(side.read_bytes()))
    for part in data["splits"].values():
        part["predictions"] = {k: list(part["references"]) for k in part["predictions"]}
    side.write_bytes(gzip.compress(json.dumps(data).encode(), mtime=0))
    return copy, side


def test_compare_refuses_a_sidecar_that_disagrees_with_its_record(ran, tmp_path, capsys):
    current, side = tampered(ran, tmp_path)
    capsys.readouterr()
    one_error(capsys, ["compare", str(ran), str(current)],
              (str(side), "sha256", "its record names", "restore it or rerun"), ran, current)


def test_the_report_skips_such_a_sidecar_and_says_why(ran, tmp_path, capsys):
    current, side = tampered(ran, tmp_path)
    capsys.readouterr()
    before = tree(current)
    assert main(["report", str(current), "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    skipped = [line for line in printed.splitlines() if line.startswith("skipped predictions")]
    assert len(skipped) == 1 and str(side) in skipped[0] and "sha256" in skipped[0], printed
    assert "1 file(s) skipped" in printed and tree(current) == before
    assert "changed after the run" in (tmp_path / "report" / "report.md").read_text()


def test_an_intact_sidecar_is_read(ran):
    from adapterbench.harness.records import read_predictions

    (record_file,) = ran.glob("*.json")
    assert read_predictions(record_file)["splits"]  # the check passes on what the harness wrote


# ---- 2. settings against the model; absurd budgets ---------------------------------------------------------------


def head_of(labels: int) -> object:
    def save(model: Path) -> None:
        from adapterbench.testing import tiny_model

        tiny_model("bert", num_labels=labels).save_pretrained(model)  # replaces the weights, keeps the tokenizer

    return save


SETTINGS = [
    ("max-length-positions", ("--set", "max_length=1000"), None,
     ("max_length=1000 is not allowed for model", "cover 128 tokens", "max_length <= 128")),
    ("max-length-absurd", ("--set", "max_length=100000000"), None, ("max_length=100000000", "at most 1,048,576")),
    ("epochs-absurd", ("--set", "epochs=1000000000000"), None, ("epochs=1000000000000", "at most 10,000")),
    ("head-size", (), head_of(3), ("classifier.weight has shape [3, 32]", "task 't' (2 label(s)) needs [2, 32]")),
    ("vocabulary", (), lambda m: (m / "config.json").write_text(json.dumps(
        {**json.loads((m / "config.json").read_text()), "vocab_size": 1000})),
     ("its tokenizer has 30522 tokens but the model's embedding only 1000",)),
]


@pytest.mark.parametrize("extra,breaks,needles", [pytest.param(*c[1:], id=c[0]) for c in SETTINGS])
def test_settings_against_the_model(env: Env, capsys, extra, breaks, needles):
    if breaks is not None:
        breaks(env.model)
        capsys.readouterr()  # saving a model prints a progress bar
    assert_bad_input(env, capsys, env.run(*extra), needles)


def test_total_steps_beyond_any_budget(env: Env, capsys):
    rows = "text,label\n" + "".join(f"r {i},positive\n" for i in range(1001))
    task = env.task_file("big.toml", train=rows)
    assert_bad_input(env, capsys, env.run("--set", "epochs=10000", "--set", "batch_size=1", "--set",
                                          "max_train_samples=2000", task=task),
                     ("epochs=10000", "10,010,000 optimizer steps", "at most 10,000,000"))


# ---- 3. inputs checked by loading them -------------------------------------------------------------------------


@pytest.fixture()
def no_hub(monkeypatch, tmp_path):
    """An empty hub cache; no data folder from the environment."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "ds-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.delenv("ADAPTERBENCH_DATA_DIR", raising=False)
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


@pytest.mark.parametrize("variable,reason", [("HF_HUB_OFFLINE", "HF_HUB_OFFLINE is set"),
                                             ("HF_DATASETS_OFFLINE", "HF_DATASETS_OFFLINE is set"),
                                             ("HF_ENDPOINT", "127.0.0.1:9 cannot be reached")])
def test_hub_data_while_offline_fails_up_front(env: Env, capsys, monkeypatch, no_hub, variable, reason):
    monkeypatch.setenv(variable, "http://127.0.0.1:9" if variable == "HF_ENDPOINT" else "1")
    assert_bad_input(env, capsys, env.run(task="rte"),
                     ("task 'rte' reads the hub dataset nyu-mll/glue (rte)", reason, "--data-dir"))


def test_cached_hub_data_is_let_through(monkeypatch, no_hub):
    from adapterbench.tasks import get_task
    from adapterbench.tasks.data import check_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (no_hub / "ds-cache" / "nyu-mll___glue").mkdir(parents=True)
    check_hub(get_task("rte"))  # the cache may serve it: the run decides


class Payload:
    """Unpickling this runs ``touch``: weights must be read with a loader that never builds it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def pickled(payload: object) -> object:
    def save(model: Path) -> None:
        (model / "model.safetensors").unlink()
        (model / "pytorch_model.bin").write_bytes(pickle.dumps(payload))

    return save


def test_pickled_weights_are_read_safely(env: Env, capsys):
    marker = env.tmp / "pwned"
    pickled({"weight": Payload(marker)})(env.model)
    assert_bad_input(env, capsys, env.run(), ("pytorch_model.bin is not a readable weights file",
                                              "weights_only"))
    assert not marker.exists()


def test_plain_pickled_weights_pass(env: Env, capsys):
    import torch
    from safetensors.torch import load_file

    state = load_file(env.model / "model.safetensors")
    (env.model / "model.safetensors").unlink()
    torch.save(state, env.model / "pytorch_model.bin")
    assert_bad_input(env, capsys, env.run("--set", "lr=inf"), ("lr=inf",))  # the weights passed; lr did not


def test_an_index_naming_a_missing_shard(env: Env, capsys):
    (env.model / "model.safetensors").rename(env.model / "model-00001-of-00002.safetensors")
    shards = {"embeddings.word_embeddings.weight": "model-00001-of-00002.safetensors",
              "pooler.dense.weight": "model-00002-of-00002.safetensors"}
    (env.model / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": shards}))
    assert_bad_input(env, capsys, env.run(), ("names the shard 'model-00002-of-00002.safetensors'",
                                              "not in the folder", "download every shard"))


# ---- 4. data that cannot train ------------------------------------------------------------------------------------


def token_task(env: Env, lines: str) -> Path:
    env.write("tok.jsonl", lines)
    return env.write("tok.json", json.dumps({
        "name": "tok", "version": "1", "kind": "token_classification", "text_fields": ["tokens"],
        "label_field": "tags", "labels": ["O", "B-X"], "metrics": ["f1"], "primary_metric": "f1",
        "data": {"format": "jsonl", "files": {"train": "tok.jsonl", "validation": "tok.jsonl"}}}))


@pytest.mark.parametrize("words", [[], ["", " "]], ids=["empty", "blank"])
def test_token_example_without_words(env: Env, capsys, words):
    lines = json.dumps({"tokens": ["EU"], "tags": ["B-X"]}) + "\n" + json.dumps(
        {"tokens": words, "tags": ["O"] * len(words)}) + "\n"
    assert_bad_input(env, capsys, env.run(task=token_task(env, lines)),
                     ("tok.jsonl:2", "field 'tokens' has no words", "at least one word"))


def test_a_long_quoted_field_is_read(env: Env):
    from adapterbench.tasks import load_task_file
    from adapterbench.tasks.data import load_examples

    long = "word " * 40000  # 200,000 characters, over csv's default limit of 131,072
    task = env.task_file("long.toml", train=f'text,label\n"{long}",positive\nshort,negative\n')
    examples = load_examples(load_task_file(str(task)), "train")
    assert [len(e["text"]) for e in examples] == [len(long), 5]
    import csv

    assert csv.field_size_limit() == 131072  # the csv module's limit is restored after reading


# ---- 5. no tracebacks ----------------------------------------------------------------------------------------


def test_matrix_nested_too_deep(env: Env, capsys):
    path = env.write("deep.toml", "variants = " + "[" * 100000)
    assert_bad_input(env, capsys, ["run", "--matrix", str(path), "--out", str(env.out)],
                     ("deep.toml", "nested too deeply", "flat table"))


def test_export_out_is_a_file(ran, tmp_path, capsys):
    target = tmp_path / "tables.csv"
    target.write_text("keep me")
    one_error(capsys, ["export", str(ran), "--out", str(target)], ("tables.csv", "is a file", "give a folder"),
              ran, tmp_path)
    assert target.read_text() == "keep me"


def test_results_load_of_a_missing_path(tmp_path):
    import adapterbench.results as ab

    with pytest.raises(FileNotFoundError, match="results path .*nowhere.* does not exist"):
        ab.load(tmp_path / "nowhere")


# ---- 6. file modes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_records_and_sidecars_follow_the_umask(tmp_path, umask, mode):
    from adapterbench.harness.records import write_predictions, write_record

    old = os.umask(umask)
    try:
        write_record(tmp_path / "r.json", {"run_id": "r"})
        write_predictions(tmp_path, "r", {"validation": [0]}, {"validation": [1]}, {"final": {"validation": [1]}})
    finally:
        os.umask(old)
    for path in (tmp_path / "r.json", tmp_path / "predictions" / "r.json.gz"):
        assert path.stat().st_mode & 0o777 == mode, (path, oct(path.stat().st_mode))


# ---- 7. words ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code,before,after,status,words", [
    (-9, 0, 0, "failed", "killed by signal 9 (SIGKILL; often the out-of-memory killer, or a kill -9)"),
    (-9, None, None, "failed", "often the out-of-memory killer"),
    (-9, 3, 4, "oom", "from the out-of-memory killer (the kernel counted 1 out-of-memory kill(s) while it ran)"),
    (-15, 0, 1, "failed", "killed by signal 15 (SIGTERM)"),
    (1, 0, 0, "failed", "worker exited with status 1 without writing its record"),
])
def test_one_place_turns_an_exit_into_a_status(code, before, after, status, words):
    from adapterbench.harness.worker import ending

    assert ending(code, before, after)[0] == status and words in ending(code, before, after)[1]


def test_a_matrix_file_with_a_byte_order_mark(env: Env, capsys):
    path = env.write("bom.toml", b'\xef\xbb\xbfvariants = ["head"]\n[set]\nlr = "inf"\n')
    argv = ["run", "--matrix", str(path), "--model", str(env.model), "--task", str(env.task), "--profile", "smoke",
            "--out", str(env.out)]
    assert_bad_input(env, capsys, argv, ("lr=inf",), ("Invalid statement",))  # read past the mark to the bad lr


def test_other_libraries_warnings_stay_off_the_terminal(monkeypatch, capsys):
    import adapterbench.cli as cli

    def handler(args) -> int:
        exec("import warnings\nwarnings.warn('a torch deprecation', FutureWarning)", {"__name__": "torch.fake"})
        exec("import warnings\nwarnings.warn('our own note')", {"__name__": "adapterbench.fake"})
        return 0

    monkeypatch.setattr(cli, "_cmd_list", handler)
    with warnings.catch_warnings(record=True) as shown:  # what would be displayed (on the terminal: stderr)
        warnings.simplefilter("always")
        assert main(["list", "variants"]) == 0
    assert [str(w.message) for w in shown] == ["our own note"]
    assert capsys.readouterr().err == ""


def test_the_worker_keeps_library_warnings_for_the_record():
    from adapterbench.harness.worker import quiet_warnings

    kept: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        quiet_warnings(kept)
        for _ in range(2):
            exec("import warnings\nwarnings.warn('UndefinedMetric: no positive predictions')",
                 {"__name__": "sklearn.metrics"})
    assert kept == ["UserWarning: UndefinedMetric: no positive predictions"]  # once, however often raised


# ---- 8. defaults ---------------------------------------------------------------------------------------------


def test_the_default_output_folder_is_runs(env: Env, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    argv = [a for a in env.run("--in-process", "--no-answer") if a not in ("--out", str(env.out))]
    assert main(argv) == 0
    assert len(list((tmp_path / "runs").glob("*.json"))) == 1 and not (tmp_path / "results").exists()
    ignored = (Path(__file__).parents[1] / ".gitignore").read_text().split()
    assert "/runs/" in ignored


def test_the_report_hint_is_filtered_in_a_shared_folder(env: Env):
    from adapterbench.harness.matrix import expand
    from adapterbench.reports.cli import report_hint

    specs = expand(["head", "full"], [str(env.task)], [0], str(env.model), "smoke", {}, None, str(env.out))
    assert report_hint(specs) == (f"bench report {env.out} --out reports/out --task t --variant head,full  "
                                  f"# {env.out}/ holds 1 other record(s)")
    (env.out / "t__head__tinybert__smoke__seed0__00000000.json").unlink()
    assert report_hint(specs) == f"bench report {env.out} --out reports/out"  # only this matrix's: no filter
