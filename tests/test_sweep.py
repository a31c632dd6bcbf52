"""``bench sweep`` and the record fields a fair protocol needs (data identity, predictions, deployed params).

Runs the real harness in this process on a tiny BERT and a tiny GLUE-layout SST-2 folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import adapterbench.harness.run as run_module
from adapterbench.harness.matrix import expand
from adapterbench.harness.records import iter_records, read_predictions
from adapterbench.harness.run import RunSpec
from adapterbench.harness.sweep import (
    final_train_loss,
    grid_points,
    parse_grid,
    resolve_point,
    run_sweep,
    select,
    trial_value,
)
from adapterbench.testing import save_tiny_model

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> str:
    return str(save_tiny_model(tmp_path_factory.mktemp("m") / "tinybert", "bert"))


def make_sst2(folder: Path, n_train: int = 40, n_dev: int = 10) -> Path:
    glue = folder / "glue" / "SST-2"
    glue.mkdir(parents=True, exist_ok=True)
    words = ["good", "bad"]
    train = ["sentence\tlabel"] + [f"a {words[i % 2]} film {i}\t{1 - i % 2}" for i in range(n_train)]
    dev = ["sentence\tlabel"] + [f"the {words[i % 2]} movie {i}\t{1 - i % 2}" for i in range(n_dev)]
    (glue / "train.tsv").write_text("\n".join(train) + "\n")
    (glue / "dev.tsv").write_text("\n".join(dev) + "\n")
    return folder


def test_grid_parsing_and_multipliers():
    grid = parse_grid(["lr=1x,3x", "r=4,8"])
    assert grid == {"lr": ["1x", "3x"], "r": [4, 8]}
    assert [resolve_point(p, 1e-3) for p in grid_points(grid)] == [
        {"lr": 1e-3, "r": 4}, {"lr": 1e-3, "r": 8}, {"lr": 3e-3, "r": 4}, {"lr": 3e-3, "r": 8}]
    assert parse_grid([]) == {"lr": ["1x", "3x", "10x"]}


def test_selection_is_direction_aware_and_failed_trials_never_win():
    def rec(value, status="ok"):
        return {"status": status, "metrics": {"primary": {"value": value}}}
    trials = [("a", rec(0.5)), ("b", rec(0.9, status="diverged")), ("c", rec(0.7)), ("d", rec(0.7))]
    assert select(trials, greater_is_better=True)[0] == "c"  # a tie without losses keeps the earlier grid point
    assert select(trials, greater_is_better=False)[0] == "a"
    assert trial_value(None, True) == float("-inf")


def test_an_exact_tie_goes_to_the_lower_training_loss_then_the_earlier_grid_point():
    """MRPC's BitFit trials: four rates, all at the all-"paraphrase" answer (held-out F1 0.8017), final training
    losses 0.6255 (1e-3), 0.6103 (3e-3), 0.6309 (1e-2), 0.6313 (3e-2): the lower loss wins the tie."""
    def rec(value, loss):
        return {"status": "ok", "metrics": {"primary": {"value": value}},
                "history": [{"epoch": 1, "train_loss": 0.7}, {"epoch": 2, "train_loss": loss}]}
    trials = [("1e-3", rec(0.8017, 0.6255)), ("3e-3", rec(0.8017, 0.6103)), ("1e-2", rec(0.8017, 0.6309)),
              ("3e-2", rec(0.8017, 0.6313))]
    assert select(trials, greater_is_better=True)[0] == "3e-3"
    assert select([*trials, ("better", rec(0.81, 0.9))], greater_is_better=True)[0] == "better"  # value first
    assert select([("a", rec(0.5, None)), ("b", rec(0.5, None))], greater_is_better=True)[0] == "a"
    assert final_train_loss(rec(0.5, 0.61)) == 0.61 and final_train_loss(None) == float("inf")


def test_a_choice_whose_grid_neighbour_did_not_learn_is_flagged():
    from adapterbench.harness.sweep import selection_warning

    def trial(lr, learned, status="ok"):
        spec = RunSpec(variant="lora", task="sst2", model="m", seed=0, profile="smoke", tags={"grid_point": {"lr": lr}})
        return spec, {"status": status, "learned": {"learned": learned}}

    assert selection_warning([trial(1, True), trial(3, True), trial(10, True)], 1) is None
    assert selection_warning([trial(1, True), trial(3, True), trial(10, False)], 1) == (
        "the chosen setting's grid neighbour lr=10 did not learn")
    assert "lr=1 and lr=10" in selection_warning([trial(1, True, "diverged"), trial(3, True), trial(10, False)], 1)
    assert selection_warning([trial(1, False), trial(3, False)], 0).startswith("no trial learned")
    assert selection_warning([trial(1, None), trial(3, True)], 1) is None  # older records: nothing said


def test_data_fingerprint_is_part_of_the_run_identity(tmp_path):
    data = make_sst2(tmp_path / "d")
    before = expand(["lora"], ["sst2"], [0], "m", "smoke", {}, str(data), str(tmp_path / "o"))[0]
    again = expand(["lora"], ["sst2"], [0], "m", "smoke", {}, str(data), str(tmp_path / "o"))[0]
    assert before.run_id == again.run_id
    dev = data / "glue" / "SST-2" / "dev.tsv"
    dev.write_text(dev.read_text().replace("movie 3", "movie three"))
    after = expand(["lora"], ["sst2"], [0], "m", "smoke", {}, str(data), str(tmp_path / "o"))[0]
    assert after.data_fingerprint != before.data_fingerprint and after.run_id != before.run_id


def test_sweep_selects_on_held_out_training_data_with_equal_budgets(tmp_path, tiny_model_dir, monkeypatch):
    data = make_sst2(tmp_path / "d")
    out = tmp_path / "sweep"
    read_splits: list[tuple[str, bool]] = []
    real_encode = run_module.encode_split

    def spy(task, split, tokenizer, max_length, data_dir, *args, **kwargs):
        holdout = spy.current_holdout
        read_splits.append((split, holdout))
        return real_encode(task, split, tokenizer, max_length, data_dir, *args, **kwargs)

    real_run = run_module._run

    def spying_run(run, record, *args):
        spy.current_holdout = bool(run.settings.holdout_samples)
        return real_run(run, record, *args)

    monkeypatch.setattr(run_module, "encode_split", spy)
    monkeypatch.setattr(run_module, "_run", spying_run)
    code = run_sweep(["lora", "bitfit"], ["sst2"], {"lr": ["1x", "30x"]}, [0, 1], tiny_model_dir, "smoke",
                     {"max_train_samples": 40}, str(data), str(out), holdout=8, isolate=False)
    assert code == 0
    # Trials never read the reported (dev) split; finals do.
    assert {split for split, holdout in read_splits if holdout} == {"train"}
    assert ("validation", False) in read_splits

    summary = json.loads((out / "sweep.json").read_text())
    trials = {r["run_id"]: r for _, r in iter_records([out / "trials"])}
    assert len(trials) == 4
    steps = {r["training"]["total_steps"] for r in trials.values()}
    assert len(steps) == 1  # the same budget for every trial of every variant
    for record in trials.values():
        assert record["tags"]["role"] == "trial" and record["metrics"]["primary"]["split"] == "train_holdout"
        assert record["training"]["eval_examples"] == {"train_holdout": 8}
        assert record["training"]["train_examples"] == 32  # 40 minus the 8 held out
    for variant, info in summary["tasks"]["sst2"]["variants"].items():
        assert len(info["trials"]) == 2
        values = [t["value"] for t in info["trials"]]
        best = [t["setting"] for t in info["trials"] if t["value"] == max(values)]  # ties: the lower loss
        assert info["chosen"] in best, variant
    finals = [r for _, r in iter_records([out / "final"])]
    assert len(finals) == 4 and {r["seed"] for r in finals} == {0, 1}
    # the held-out examples leave the trials' data, not their budget: trials train as many steps as the finals
    assert {r["training"]["total_steps"] for r in finals} == steps == {5}
    assert all("warning" in info for info in summary["tasks"]["sst2"]["variants"].values())
    for record in finals:
        chosen = summary["tasks"]["sst2"]["variants"][record["variant"]["name"]]["chosen"]
        assert record["training"]["lr"] == pytest.approx(chosen["lr"])
        assert record["metrics"]["primary"]["split"] == "validation"
        assert record["tags"]["selected_on"] == "train_holdout"
    assert "Selection did not see the reported split" in (out / "sweep.md").read_text()

    # Resume: a second call runs nothing new; an interrupted sweep (a lost trial record) reruns only that trial.
    first_trial = sorted((out / "trials").glob("*.json"))[0]
    first_trial.unlink()
    read_splits.clear()
    assert run_sweep(["lora", "bitfit"], ["sst2"], {"lr": ["1x", "30x"]}, [0, 1], tiny_model_dir, "smoke",
                     {"max_train_samples": 40}, str(data), str(out), holdout=8, isolate=False) == 0
    assert [s for s, _ in read_splits] == ["train"]  # one trial rerun, no final rerun
    assert first_trial.exists()


def test_record_has_predictions_data_and_deployed_parameters(tmp_path, tiny_model_dir):
    from adapterbench.cli import main

    data = make_sst2(tmp_path / "d")
    out = tmp_path / "out"
    code = main(["run", "--variants", "dylora", "--task", "sst2", "--model", tiny_model_dir, "--profile", "smoke",
                 "--data-dir", str(data), "--out", str(out), "--set", "dylora.eval_ranks=1,4", "--in-process"])
    assert code == 0
    [(path, record)] = list(iter_records([out]))
    assert record["schema_version"] == 2
    assert record["data"]["source"] == "local" and len(record["data"]["fingerprint"]) == 16
    assert set(record["data"]["splits"]) == {"train", "validation"}
    assert record["environment"]["fingerprint"]["precision"] == "fp32"
    assert len(record["steps"]["loss"]) == len(record["steps"]["time_s"]) == record["training"]["total_steps"]
    sidecar = read_predictions(path, record)
    split = sidecar["splits"]["validation"]
    assert split["example_ids"] == list(range(10))
    assert set(split["predictions"]) == {"final", "1", "4"}
    assert all(len(p) == 10 for p in split["predictions"].values())
    assert split["references"] == [1 - i % 2 for i in range(10)]
    accuracy = sum(p == r for p, r in zip(split["predictions"]["4"], split["references"])) / 10
    point4 = next(p for p in record["metrics"]["points"] if p["point"] == 4)
    assert point4["validation/accuracy"] == pytest.approx(accuracy)
    # DyLoRA at rank b deploys b/r_max of its r_max parameters; the record's headline is merge_rank (r_max).
    point1 = next(p for p in record["metrics"]["points"] if p["point"] == 1)
    assert point4["params/deployed_adapter"] == 4 * point1["params/deployed_adapter"]
    r_max = record["variant"]["config"]["r"]
    assert record["measurements"]["params/deployed_adapter"] == record["measurements"]["params/trainable_adapter"]
    assert point1["params/deployed_adapter"] * r_max == record["measurements"]["params/trainable_adapter"]


def test_a_final_at_the_profiles_learning_rate_is_the_plain_run(monkeypatch):
    from adapterbench.harness import settings
    from adapterbench.harness.sweep import final_overrides

    assert final_overrides("lora", {"lr": 3e-3}, "quick") == {"lora.lr": 3e-3}
    monkeypatch.setitem(settings.PROFILE_LR, "quick", {"lora": 3e-3})
    assert final_overrides("lora", {"lr": 3e-3}, "quick") == {}  # same identity as `bench run --variants lora`
    assert final_overrides("lora", {"lr": 3e-3, "r": 4}, "quick") == {"lora.r": 4}


def test_a_task_swept_apart_gets_its_own_learning_rate(monkeypatch):
    from adapterbench.harness import settings
    from adapterbench.harness.sweep import final_overrides

    monkeypatch.setitem(settings.PROFILE_LR, "quick", {"lora": 3e-3})
    monkeypatch.setitem(settings.PROFILE_TASK_LR, "quick", {"stsb": {"lora": 1e-2}})
    plain = settings.TrainSettings()
    assert settings.resolve_lr("quick", "lora", 1e-4, plain, "stsb") == 1e-2
    assert settings.resolve_lr("quick", "lora", 1e-4, plain, "sst2") == 3e-3  # other tasks keep the profile's
    assert settings.resolve_lr("quick", "bitfit", 1e-4, plain, "stsb") == 1e-4  # unlisted: the paper's
    assert settings.resolve_lr("quick", "lora", 1e-4, settings.TrainSettings(lr=5e-5), "stsb") == 5e-5  # --set wins
    assert final_overrides("lora", {"lr": 1e-2}, "quick", "stsb") == {}
    assert final_overrides("lora", {"lr": 1e-2}, "quick", "sst2") == {"lora.lr": 1e-2}


def one_run_done(tmp_path: Path, tiny_model_dir: str):
    """(spec, record path) of one smoke run of the head baseline on a tiny SST-2, run and counted done."""
    from adapterbench.harness.matrix import is_done

    data = make_sst2(tmp_path / "d")
    spec = expand(["head"], ["sst2"], [0], tiny_model_dir, "smoke", {}, str(data), str(tmp_path / "o"))[0]
    assert rerun(spec) == "0 already done, 1 to run"
    assert is_done(spec)
    return spec, tmp_path / "o" / f"{spec.run_id}.json"


def rerun(spec) -> str:
    """Run the one-spec matrix again; its "N already done, M to run" part."""
    import io
    import re

    from adapterbench.harness.matrix import run_matrix

    stream = io.StringIO()
    assert run_matrix([spec], isolate=False, stream=stream) == 0
    return re.search(r"\d+ already done, \d+ to run", stream.getvalue()).group(0)


def superseded(path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (path.parent / "superseded").glob(f"{path.stem}*.json")]


def test_a_record_made_stale_by_a_new_profile_rate_is_rerun_and_the_old_one_kept(tmp_path, tiny_model_dir,
                                                                                 monkeypatch):
    from adapterbench.harness import settings
    from adapterbench.harness.matrix import is_done

    spec, path = one_run_done(tmp_path, tiny_model_dir)
    first = json.loads(path.read_text())
    assert rerun(spec) == "1 already done, 0 to run"  # unchanged rate: skipped

    new_lr = first["training"]["lr"] * 3
    monkeypatch.setitem(settings.PROFILE_LR, "smoke", {"head": new_lr})
    assert not is_done(spec)  # same run id, other rate: not done
    assert rerun(spec) == "0 already done, 1 to run"
    assert json.loads(path.read_text())["training"]["lr"] == pytest.approx(new_lr)
    assert [r["training"]["lr"] for r in superseded(path)] == [first["training"]["lr"]]


def test_a_record_made_stale_by_a_new_profile_size_is_rerun_but_not_by_where_it_ran(tmp_path, tiny_model_dir,
                                                                                      monkeypatch):
    import dataclasses

    from adapterbench.harness import settings
    from adapterbench.harness.matrix import is_done

    spec, path = one_run_done(tmp_path, tiny_model_dir)
    record = json.loads(path.read_text())
    assert record["training"]["epochs"] == 1

    # Where it ran is not what it is: a record from a GPU (device and precision resolved there) still counts.
    record["training"].update(device="cuda:1", precision="bf16")
    path.write_text(json.dumps(record))
    assert is_done(spec)

    smoke = settings.PROFILES["smoke"]
    monkeypatch.setitem(settings.PROFILES, "smoke", dataclasses.replace(smoke, epochs=2))
    assert not is_done(spec)  # same run id, the profile trains twice as long now
    assert rerun(spec) == "0 already done, 1 to run"
    assert json.loads(path.read_text())["training"]["epochs"] == 2
    assert [r["training"]["epochs"] for r in superseded(path)] == [1]


def test_trials_only_writes_the_selection_once_every_trial_is_done_and_runs_no_final(tmp_path, tiny_model_dir):
    data = make_sst2(tmp_path / "d")
    out = tmp_path / "sweep"
    args = (["head"], ["sst2"], {"lr": ["1x", "3x"]}, [0, 1], tiny_model_dir, "smoke", {"max_train_samples": 24},
            str(data), str(out))
    assert run_sweep(*args, holdout=8, isolate=False, trials_only=True, final_out=str(tmp_path / "board")) == 0
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["finals"] == str(tmp_path / "board")
    trials = summary["tasks"]["sst2"]["variants"]["head"]["trials"]
    assert len(trials) == 2 and all(t["status"] == "ok" for t in trials)
    assert "head" in (out / "sweep.md").read_text()
    assert not (tmp_path / "board").exists() and not (out / "final").exists()  # the finals run elsewhere

    import io

    (out / "sweep.json").unlink()
    next(iter((out / "trials").glob("*.json"))).unlink()  # an interrupted sweep resumes: the missing trial reruns
    stream = io.StringIO()
    assert run_sweep(*args, holdout=8, isolate=False, trials_only=True, stream=stream) == 0
    assert "1 already done, 1 to run" in stream.getvalue() and (out / "sweep.json").exists()
