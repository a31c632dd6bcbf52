"""``--shard i/n``: disjoint shards that together are the matrix, balanced, independent of the listing order."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from adapterbench.cli import main
from adapterbench.errors import UserError
from adapterbench.harness.matrix import expand
from adapterbench.harness.records import read_record
from adapterbench.harness.shards import parse_shard, select_shard, shard_order
from adapterbench.reports.collect import Collection, load_records
from adapterbench.testing import save_tiny_model

TASK_FILE = Path(__file__).parent / "data" / "tasks" / "sentiment.toml"


def nightly_like_ids() -> list[str]:
    """The run ids of a 9 variants x 4 tasks x 3 seeds matrix (108 runs)."""
    variants = ["full", "head", "lora", "bitfit", "dylora", "adalora", "loraplus", "houlsby", "peft:lora"]
    specs = expand(variants, ["sst2", "mrpc", "rte", "conll2003"], [0, 1, 2], "minilm", "quick", {"r": 8},
                   None, "results")
    return [s.run_id for s in specs]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 12, 108, 200])
def test_shards_partition_the_matrix_and_are_balanced(count):
    ids = nightly_like_ids()
    shards = [select_shard(ids, i, count, run_id=str) for i in range(1, count + 1)]
    together = [run_id for shard in shards for run_id in shard]
    assert sorted(together) == sorted(ids)  # the union is the matrix and no run is in two shards
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(ids)
    for shard in shards:  # each shard keeps the matrix's order
        assert shard == [run_id for run_id in ids if run_id in set(shard)]


def test_shards_depend_only_on_the_run_ids():
    ids = nightly_like_ids()
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    for i in (1, 2, 3):
        assert set(select_shard(ids, i, 3, run_id=str)) == set(select_shard(shuffled, i, 3, run_id=str))
    # A fixed split (a change would move runs between the CI jobs of an existing matrix): SHA-256 of
    # a, b, c, d begins ca97.., 3e23.., 2e7d.., 18ac.., so the order is d, c, b, a.
    assert shard_order(["a", "b", "c", "d"]) == [3, 2, 1, 0]


def test_shards_of_specs_use_their_run_ids():
    specs = expand(["lora", "head"], ["sst2"], [0, 1, 2], "minilm", "smoke", {}, None, "results")
    by_spec = [s.run_id for s in select_shard(specs, 2, 4)]
    assert by_spec == select_shard([s.run_id for s in specs], 2, 4, run_id=str)


@pytest.mark.parametrize("text,needle", [
    ("0/4", "i must be between 1 and n"), ("5/4", "i must be between 1 and n"), ("1/0", "between 1 and n"),
    ("2", "give i/n"), ("a/b", "give i/n"), ("1/2/3", "give i/n"), ("-1/2", "give i/n"),
])
def test_bad_shards_are_one_line_errors(text, needle):
    with pytest.raises(UserError, match=needle) as info:
        parse_shard(text)
    assert str(info.value).startswith(f"--shard {text!r} is not allowed")
    assert parse_shard(" 3/4 ") == (3, 4)


def test_shards_through_the_command_line_merge_into_the_whole_matrix(tmp_path, capsys):
    model = save_tiny_model(tmp_path / "tinybert", "bert")
    args = ["run", "--variants", "head,bitfit", "--task", str(TASK_FILE), "--seeds", "0,1,2", "--profile",
            "smoke", "--set", "max_steps=1", "--set", "latency_batches=0", "--model", str(model), "--in-process"]
    folders = []
    for i in (1, 2, 3):
        folders.append(tmp_path / f"shard{i}")
        assert main([*args, "--shard", f"{i}/3", "--out", str(folders[-1])]) == 0
        assert f"shard {i}/3: 2 of the matrix's 6 runs" in capsys.readouterr().out
    ids = [{read_record(p)["run_id"] for p in folder.glob("*.json")} for folder in folders]
    whole = {s.run_id for s in expand(["head", "bitfit"], [str(TASK_FILE)], [0, 1, 2], str(model), "smoke",
                                      {"max_steps": 1, "latency_batches": 0}, None, "x")}
    assert set().union(*ids) == whole and sum(map(len, ids)) == 6
    collection = Collection.of(*load_records(folders))  # the report reads the shards' folders together
    assert len(collection.ok) == 6 and collection.older.empty
    capsys.readouterr()
    assert main([*args, "--shard", "4/3", "--out", str(tmp_path / "bad")]) == 2
    assert "--shard '4/3' is not allowed" in capsys.readouterr().err
