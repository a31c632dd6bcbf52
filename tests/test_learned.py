"""Did the run learn: the trivial predictors, the paired one-sided tests, the learned rate's exact interval, and
the record the real harness writes for a run that learns, one that cannot, and a regression head's start."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from adapterbench.stats.learned import (
    check,
    check_regression,
    learned_rate,
    sign_flip_p,
    trivial_predictions,
    trivial_predictor,
)
from adapterbench.stats.metrics import task_metric


# ---- trivial predictors ------------------------------------------------------------------------------------
def test_trivial_predictors_are_fitted_on_the_training_labels():
    assert trivial_predictor("classification", [1, 0, 1, 1], ["neg", "pos"]).value == 1
    assert trivial_predictor("classification", [0, 1, 1, 0], ["neg", "pos"]).value == 0  # a tie: the lower id
    assert "'pos'" in trivial_predictor("classification", [1, 1, 0], ["neg", "pos"]).description
    assert trivial_predictor("regression", [1.0, 2.0, 4.5]).value == pytest.approx(2.5)
    token = trivial_predictor("token_classification", [[0, 0, 3], [0, 1]], ["O", "B-PER", "I-PER", "B-LOC"])
    assert token.value == 0 and "'O'" in token.description
    assert trivial_predictions(token, [[1, 2], [3]]) == [[0, 0], [0]]


# ---- the tests -----------------------------------------------------------------------------------------------
def test_sign_flip_p_matches_scipy_permutation_test():
    rng = np.random.default_rng(3)
    d = rng.normal(0.15, 1.0, size=60)
    ours = sign_flip_p(d, n_resamples=20_000)
    theirs = sps.permutation_test((d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                                  alternative="greater", n_resamples=20_000, random_state=1).pvalue
    assert abs(ours - theirs) < 4 * np.sqrt(theirs * (1 - theirs) / 20_000) + 1e-3
    assert sign_flip_p(np.zeros(10)) == 1.0


def test_a_run_that_answers_the_majority_class_did_not_learn():
    metric = task_metric("classification", "f1")
    references = [1] * 70 + [0] * 30
    trivial = trivial_predictor("classification", [1] * 7 + [0] * 3, ["no", "yes"])
    outcome = check(metric, "classification", [1] * 100, references, trivial)
    assert not outcome.learned and outcome.p_value == 1.0 and outcome.share == 1.0
    assert outcome.value == pytest.approx(outcome.trivial_value)
    assert outcome.detail.startswith("did not learn: predicts the majority class 'yes' for 100.0% of examples")


def test_a_run_that_separates_the_classes_learned_and_one_worse_than_the_majority_did_not():
    metric = task_metric("classification", "accuracy")
    rng = random.Random(0)
    references = [rng.randint(0, 1) for _ in range(200)]
    trivial = trivial_predictor("classification", [0, 0, 1], ["a", "b"])
    good = [r if rng.random() < 0.85 else 1 - r for r in references]
    assert check(metric, "classification", good, references, trivial).learned
    bad = [1 - r if rng.random() < 0.7 else r for r in references]  # mostly wrong: worse than the majority
    outcome = check(metric, "classification", bad, references, trivial)
    assert not outcome.learned and outcome.p_value > 0.5


def test_regression_constant_predictions_have_an_undefined_correlation_and_did_not_learn():
    y = np.linspace(0, 5, 50)
    trivial = trivial_predictor("regression", [2.5, 2.5, 2.5])
    constant = check_regression(np.full(50, 2.5), y, trivial)
    assert constant.value is None and constant.trivial_value is None and not constant.learned
    assert "Pearson undefined" in constant.detail
    noise = check_regression(2.5 + np.random.default_rng(7).normal(0, 0.1, 400), np.linspace(0, 5, 400), trivial)
    assert not noise.learned and abs(noise.value) < 0.1
    good = check_regression(y + np.random.default_rng(1).normal(0, 0.5, 50), y, trivial)
    assert good.learned and good.value > 0.9


def test_token_tasks_are_checked_against_every_word_o():
    labels = ["O", "B-PER", "I-PER"]
    metric = task_metric("token_classification", "f1", labels=labels)
    references = [[0, 1, 2, 0], [1, 0, 0], [0, 0, 1, 2]] * 10
    trivial = trivial_predictor("token_classification", references, labels)
    all_o = check(metric, "token_classification", trivial_predictions(trivial, references), references, trivial)
    assert not all_o.learned and "for 100.0% of words" in all_o.detail
    assert check(metric, "token_classification", references, references, trivial).learned


# ---- the learned rate ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,n", [(0, 3), (2, 3), (3, 3), (4, 5), (1, 5)])
def test_learned_rate_interval_is_clopper_pearson(k, n):
    rate = learned_rate(k, n)
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert (rate.low, rate.high) == pytest.approx((ci.low, ci.high))
    # and the beta-quantile form of Clopper & Pearson (1934), written out
    low = 0.0 if k == 0 else sps.beta.ppf(0.025, k, n - k + 1)
    high = 1.0 if k == n else sps.beta.ppf(0.975, k + 1, n - k)
    assert (rate.low, rate.high) == pytest.approx((low, high))
    assert rate.rate == k / n and rate.text() == f"{k}/{n}"
    with pytest.raises(ValueError):
        learned_rate(n + 1, n)


# ---- through the real harness on a tiny model ------------------------------------------------------------------
def _run(tmp_path: Path, task: str, data: Path, overrides: dict, variant: str = "lora") -> dict:
    from adapterbench.harness.run import RunSpec, execute
    from adapterbench.testing import save_tiny_model

    model = save_tiny_model(tmp_path / "model")
    spec = RunSpec(variant=variant, task=task, model=str(model), seed=0, profile="smoke", overrides=overrides,
                   data_dir=str(data), out_dir=str(tmp_path / "out"))
    record = execute(spec)
    assert record["status"] == "ok", record.get("error")
    return json.loads(json.dumps(record))  # as written: plain JSON


@pytest.fixture
def sst2_data(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "data" / "records"))
    from make_records import sst2_folder

    return sst2_folder(tmp_path / "data")


def test_a_run_forced_not_to_learn_is_recorded_so(tmp_path, sst2_data):
    from adapterbench.reports.units import summary_line
    from adapterbench.results import runs_frame

    smoke = {"max_train_samples": 64, "max_eval_samples": 25, "epochs": 2}
    frozen = _run(tmp_path, "sst2", sst2_data, {**smoke, "lr": 1e-12})
    learns = _run(tmp_path, "sst2", sst2_data, {**smoke, "lr": 0.1})
    assert frozen["learned"]["learned"] is False and learns["learned"]["learned"] is True
    assert set(frozen["learned"]["points"]["final"]) == {"validation"}
    assert "did not learn" in summary_line(frozen) and "| learned:" in summary_line(learns)
    frame = runs_frame([(Path("a.json"), frozen), (Path("b.json"), learns)]).set_index("run_id")["learned"]
    assert frame[frozen["run_id"]] == False  # noqa: E712 (a pandas boolean; NA would fail)
    assert frame[learns["run_id"]] == True  # noqa: E712


def test_regression_head_starts_at_the_training_mean_and_reports_on_the_original_scale(tmp_path):
    rng = random.Random(0)
    folder = tmp_path / "reg"
    folder.mkdir()
    words = ("alpha", "beta", "gamma", "delta")
    for name, n in (("train.csv", 48), ("dev.csv", 20)):
        rows = [f"{' '.join(rng.choice(words) for _ in range(4))},{3 + rng.random():.3f}" for _ in range(n)]
        (folder / name).write_text("text,score\n" + "\n".join(rows) + "\n")
    (folder / "task.toml").write_text(
        'name = "tiny-score"\nversion = "1"\nkind = "regression"\ntext_fields = ["text"]\nlabel_field = "score"\n'
        'metrics = ["pearson"]\nprimary_metric = "pearson"\n[data]\nformat = "csv"\nheader = true\n'
        '[data.files]\ntrain = "train.csv"\nvalidation = "dev.csv"\n')
    train = [float(line.split(",")[1]) for line in (folder / "train.csv").read_text().splitlines()[1:]]
    record = _run(tmp_path, str(folder / "task.toml"), folder, {"lr": 1e-12, "train_steps": 2, "max_train_samples": 100})
    assert record["training"]["head_bias_init"] == pytest.approx(np.mean(train))
    assert record["training"]["total_steps"] == 2
    predictions = record["learned"]["points"]["final"]["validation"]
    # at lr ~ 0 the head still answers about the mean: the original scale (3-4), not 0
    assert predictions["learned"] is False
    assert "training mean 3." in predictions["trivial"]


def test_train_steps_sets_the_schedule_and_epochs_drop_a_profile_step_budget(monkeypatch):
    from adapterbench.harness import settings as settings_module
    from adapterbench.harness.loop import schedule_steps
    from adapterbench.harness.settings import TrainSettings, resolve_settings

    assert schedule_steps(100, TrainSettings(batch_size=32, epochs=2, train_steps=10)) == (4, 10)
    assert schedule_steps(100, TrainSettings(batch_size=32, epochs=2)) == (4, 8)
    monkeypatch.setitem(settings_module.PROFILE_TASK_SETTINGS, "quick", {"rte": {"train_steps": 700}})
    assert resolve_settings("quick", {}, "rte").train_steps == 700
    assert resolve_settings("quick", {}, "sst2").train_steps is None
    assert resolve_settings("quick", {"epochs": 3}, "rte").train_steps is None
    assert resolve_settings("quick", {"epochs": 3, "train_steps": 50}, "rte").train_steps == 50


def test_eval_holdout_evaluates_a_held_out_training_slice_first_and_the_dev_split_too(tmp_path, sst2_data):
    record = _run(tmp_path, "sst2", sst2_data, {"max_train_samples": 64, "max_eval_samples": 25, "epochs": 1,
                                                "lr": 0.1, "eval_holdout": 16})
    assert record["metrics"]["primary"]["split"] == "train_holdout"
    assert record["training"]["eval_examples"] == {"train_holdout": 16, "validation": 25}
    assert record["training"]["train_examples"] == 64 - 16  # the slice is never trained on
    assert set(record["learned"]["points"]["final"]) == {"train_holdout", "validation"}
    assert record["learned"]["split"] == "train_holdout"
    from adapterbench.errors import UserError
    from adapterbench.harness.settings import TrainSettings

    with pytest.raises(UserError, match="eval_holdout=8 is not allowed with holdout_samples=8"):
        TrainSettings(eval_holdout=8, holdout_samples=8).validate()


def test_backfill_reproduces_the_check_the_run_made(tmp_path, sst2_data):
    """A record's learned part, computed again later from its sidecar and its data, is the one the run wrote."""
    from adapterbench.harness.learning import backfill
    from adapterbench.harness.records import read_predictions, record_path
    from adapterbench.tasks import get_task

    for lr in (1e-12, 0.1):
        record = _run(tmp_path, "sst2", sst2_data, {"max_train_samples": 40, "max_eval_samples": 25, "epochs": 2,
                                                    "lr": lr})
        sidecar = read_predictions(record_path(tmp_path / "out", record["run_id"]), record)
        again = backfill(record, sidecar, get_task("sst2"), str(sst2_data), "2026-12-03")
        assert again.pop("backfilled") == "2026-12-03"
        assert again == record["learned"]
