"""``bench`` through its command line: bad input, listing, and end-to-end runs on the real MiniLM and real data.

Bad input must give one line naming the bad value, exit status 2, no traceback, and no record written as ok.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapterbench.cli import main
from adapterbench.testing import save_tiny_model

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared_data = pytest.mark.skipif(not (SHARED_DATA / "glue").is_dir(),
                                       reason=f"real data folder {SHARED_DATA} is absent")
TASK_FILE = Path(__file__).parent / "data" / "tasks" / "sentiment.toml"



def _head_commit() -> str | None:
    """HEAD of the checkout the package was imported from, asked of git directly (None when not a git checkout)."""
    import adapterbench

    found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(adapterbench.__file__).resolve().parents[1],
                           capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None

def bench(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "ADAPTERBENCH_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-m", "adapterbench.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def run_main(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("bench: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tinybert", "bert")


@pytest.fixture()
def glue_copy(tmp_path) -> Path:
    """A small data folder in the GLUE layout whose files the test may break."""
    folder = tmp_path / "data" / "glue" / "SST-2"
    folder.mkdir(parents=True)
    rows = ["sentence\tlabel"] + [f"a {'good' if i % 2 else 'bad'} film number {i} \t{i % 2}" for i in range(12)]
    (folder / "train.tsv").write_text("\n".join(rows) + "\n")
    (folder / "dev.tsv").write_text("\n".join(rows[:7]) + "\n")
    return tmp_path / "data"


@pytest.mark.parametrize("args,needles", [
    (["--variants", "lroa", "--task", "sst2"], ["unknown variant 'lroa'", "Did you mean 'lora'"]),
    (["--variants", "lora", "--task", "sst3"], ["unknown task 'sst3'", "Did you mean 'sst2'"]),
    (["--variants", "lora", "--task", "sst2", "--set", "lr"], ["malformed --set 'lr'"]),
    (["--variants", "lora", "--task", "sst2", "--set", "lr=-1e-4"], ["lr=-0.0001 is not allowed"]),
    (["--variants", "lora", "--task", "sst2", "--set", "rank=4"], ["--set rank: unknown setting"]),
    (["--variants", "lora", "--task", "sst2", "--seeds", "a,b"], ["--seeds 'a,b' is not allowed"]),
    (["--variants", "lora", "--task", "sst2", "--profile", "fast"], ["unknown profile 'fast'"]),
    (["--variants", "lora", "--task", "sst2", "--data-dir", "/no/such/folder"], ["/no/such/folder",
                                                                               "does not exist"]),
])
def test_bad_arguments_give_one_line_errors(args, needles, capsys, tmp_path):
    code, err = run_main(capsys, "run", *args, "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "out").exists()  # rejected before the matrix starts: no folder, no record


@pytest.mark.parametrize("breakage,needles", [
    (lambda f: f.write_text("sentence\tlabel\nonly one column\n"), ["train.tsv:2", "expected 2"]),
    (lambda f: f.write_text("sentence\tlabel\na fine film\t7\n"), ["train.tsv:2", "'7'"]),
    (lambda f: f.write_text("sentence\tlabel\n"), ["empty"]),
    (lambda f: f.unlink(), ["train.tsv"]),
])
def test_bad_data_files_are_reported_before_any_run(breakage, needles, glue_copy, tiny_folder, capsys, tmp_path):
    breakage(glue_copy / "glue" / "SST-2" / "train.tsv")
    code, err = run_main(capsys, "run", "--variants", "head", "--task", "sst2", "--profile", "smoke",
                         "--model", str(tiny_folder), "--data-dir", str(glue_copy), "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "out").exists()


def test_model_folder_without_weights(capsys, tmp_path, glue_copy):
    folder = tmp_path / "noweights"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    code, err = run_main(capsys, "run", "--variants", "head", "--task", "sst2", "--model", str(folder),
                         "--data-dir", str(glue_copy), "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, str(folder), "has no weights")


def test_task_file_with_a_missing_field(capsys, tmp_path, tiny_folder):
    broken = tmp_path / "broken.toml"
    broken.write_text(TASK_FILE.read_text().replace('primary_metric = "f1"\n', ""))
    shutil.copy(TASK_FILE.parent / "sentiment_train.csv", tmp_path)
    shutil.copy(TASK_FILE.parent / "sentiment_dev.csv", tmp_path)
    code, err = run_main(capsys, "run", "--variants", "head", "--task", str(broken), "--model", str(tiny_folder),
                         "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, "broken.toml", "primary_metric")


def test_bad_input_through_the_real_command_has_no_traceback(tmp_path):
    result = bench("run", "--variants", "lora", "--task", "sst2", "--set", "lr=-1", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("bench: error: lr=-1.0 is not allowed; the learning rate must be a finite positive "
                                     "number")
    assert not (tmp_path / "runs").exists()  # the default --out


def test_list_variants_and_tasks(capsys):
    assert main(["list", "variants"]) == 0
    out = capsys.readouterr().out
    for name in ("full", "head", "lora", "bitfit", "dylora", "adalora", "loraplus", "houlsby", "peft:<method>"):
        assert f"\n{name} " in out or out.startswith(name), name
    assert "built-in" in out and "lr=2e-05" in out
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    for name in ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "conll2003"):
        assert f"\n{name} " in out, name


def test_list_reads_variants_without_importing_torch():
    code = ("import sys; from adapterbench.cli import main; main(['list', 'variants']); main(['list', 'tasks']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "lora " in result.stdout and "sst2 " in result.stdout


def test_static_variant_summaries_match_the_classes():
    from adapterbench.cli import variant_summary
    from adapterbench.listing import static_summary
    from adapterbench.variants import VARIANTS

    for entry in VARIANTS.entries():
        cls = entry.load()  # the entry's target is now the class (other tests may have loaded it already)
        static = static_summary(f"{cls.__module__}:{cls.__name__}")
        assert static is not None, f"{entry.name}: read by import, so bench list would import torch"
        assert (static.paper, static.default_lr, static.defaults) == (
            cls.paper, cls.default_lr, dict(vars(cls.Config()))), entry.name
        assert variant_summary(entry) == static


def test_bench_without_a_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == ("bench: error: give a subcommand: run, sweep, list, report, compare, "
                                               "export or history (see bench --help)")


def test_a_failing_run_is_recorded_and_the_matrix_goes_on(tmp_path, tiny_folder, capsys):
    # full runs first (the order given) at lr=1e30: the first step's update makes the weights overflow, so the
    # second step's loss is NaN and the run is recorded as diverged; head still runs after it.
    out = tmp_path / "out"
    code = main(["run", "--variants", "full,head", "--task", str(TASK_FILE), "--model", str(tiny_folder),
                 "--profile", "smoke", "--set", "full.lr=1e30", "--set", "batch_size=2", "--set", "max_steps=3",
                 "--out", str(out), "--in-process"])
    records = {json.loads(p.read_text())["variant"]["name"]: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert code == 1
    assert records["head"]["status"] == "ok"
    assert records["full"]["status"] == "diverged"
    assert records["full"]["error"]["message"].startswith("loss became nan at step 2")


def test_a_matrix_of_several_variants_ends_with_the_answer(tmp_path, tiny_folder, capsys):
    out = tmp_path / "out"
    common = ["--task", str(TASK_FILE), "--model", str(tiny_folder), "--profile", "smoke", "--out", str(out),
              "--in-process"]
    assert main(["run", "--variants", "head", *common]) == 0
    assert "answer (" not in capsys.readouterr().out  # one variant: nothing to compare
    assert main(["run", "--variants", "head,lora", *common]) == 0  # head's run is done: skipped, still answered
    printed = capsys.readouterr().out
    assert "1 already done, 1 to run" in printed
    answer = printed[printed.index("answer ("):]
    values = {json.loads(p.read_text())["variant"]["name"]: json.loads(p.read_text())["metrics"]["primary"]["value"]
              for p in out.glob("*.json")}
    learned = {json.loads(p.read_text())["variant"]["name"]: json.loads(p.read_text())["learned"]["learned"]
               for p in out.glob("*.json")}
    best = [name for name, value in values.items() if learned[name]
            and value == max(v for n, v in values.items() if learned[n])]
    if best:  # the best of the runs that learned
        assert any(f"Best: {name};" in answer for name in best), answer
    else:  # two smoke runs on a tiny model may both fail to learn: then nothing is compared, and it says so
        assert "No configuration learned" in answer and "did not learn (0 of 1 seed)" in answer, answer
    rows = [line.split() for line in answer.splitlines() if line.split()[1:2] in (["head"], ["lora"])]
    assert sorted(r[1] for r in rows) == ["head", "lora"]
    assert answer.rstrip().endswith(f"every table and chart: bench report {out} --out reports/out")
    assert main(["run", "--variants", "head,lora", "--no-answer", *common]) == 0
    assert "answer (" not in capsys.readouterr().out


@pytest.mark.e2e
@needs_shared_data
def test_end_to_end_on_real_minilm_and_real_data(tmp_path):
    result = bench("run", "--variants", "lora,head", "--task", "sst2,conll2003", "--profile", "smoke",
                   "--data-dir", str(SHARED_DATA), "--out", str(tmp_path / "results"), cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "matrix: 4 runs (2 variants x 2 tasks x 1 seeds)" in result.stdout
    assert result.stdout.count("ok: ") == 4
    records = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("*.json")]
    assert {(r["task"]["name"], r["variant"]["name"]) for r in records} == {
        ("sst2", "lora"), ("sst2", "head"), ("conll2003", "lora"), ("conll2003", "head")}
    for r in records:
        assert r["status"] == "ok"
        assert r["model"]["weights_sha256"] == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
        assert r["environment"]["git_commit"] == _head_commit()  # the checkout's HEAD (None outside git)
        if r["task"]["name"] == "conll2003":
            assert {"validation/f1", "test/f1"} <= set(r["metrics"]["final"])
        if r["variant"]["name"] == "lora":
            assert r["measurements"]["params/trainable_adapter"] == 73_728


@pytest.mark.e2e
@needs_shared_data
def test_an_interrupted_matrix_resumes_and_keeps_finished_runs(tmp_path, tiny_folder):
    out = tmp_path / "results"
    args = [sys.executable, "-m", "adapterbench.cli", "run", "--variants", "head", "--task", "sst2",
            "--seeds", "0,1,2", "--profile", "smoke", "--model", str(tiny_folder), "--data-dir", str(SHARED_DATA),
            "--out", str(out)]
    process = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "ADAPTERBENCH_PROGRESS": "0"})
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob("*.json")):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    finished = {p.name: p.read_bytes() for p in out.glob("*.json")}
    assert 1 <= len(finished) < 3

    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "ADAPTERBENCH_PROGRESS": "0"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{len(finished)} already done, {3 - len(finished)} to run" in result.stdout
    assert len(list(out.glob("*.json"))) == 3
    for name, content in finished.items():
        assert (out / name).read_bytes() == content  # skipped and kept, byte for byte
