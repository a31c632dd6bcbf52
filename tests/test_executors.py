"""Executors: the local one, one run per GPU, and Ray, on a small smoke matrix of tiny models.

The Ray tests start a local Ray instance with 2 CPUs; they skip, saying so, where Ray is not installed.
GPU pinning is exercised with made-up device ids on the CPU (the workers run on the CPU whatever
CUDA_VISIBLE_DEVICES says there); the CUDA path itself runs in benchmarks/gpu_check.sh.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adapterbench.cli import main
from adapterbench.errors import UserError
from adapterbench.harness import matrix
from adapterbench.harness.executors import DevicePoolExecutor, LocalExecutor, make_executor, parse_devices
from adapterbench.harness.matrix import expand, run_matrix
from adapterbench.harness.records import checkpoint_path, read_record
from adapterbench.reports.aggregate import aggregate_group
from adapterbench.reports.collect import Collection, load_records
from adapterbench.testing import save_tiny_model

TASK_FILE = Path(__file__).parent / "data" / "tasks" / "sentiment.toml"
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason='Ray is not installed (pip install "adapterbench[ray]")')
# Fields that must not depend on where a run executed (placement, times and versions may).
SAME_FIELDS = ("run_id", "status", "seed", "profile", "variant", "task", "model", "training", "metrics",
               "variant_info")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tinybert", "bert")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    # Ray gives a 1-CPU task OMP_NUM_THREADS=1; local workers get the same so that the numbers can be equal.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def smoke_specs(tiny_folder: Path, out: Path, variants=("head", "lora"), seeds=(0, 1)):
    return expand(list(variants), [str(TASK_FILE)], list(seeds), str(tiny_folder), "smoke", {"max_steps": 2},
                  None, str(out))


def records(out: Path) -> dict[str, dict]:
    return {p.name: read_record(p) for p in sorted(out.glob("*.json"))}


def worker_pids(record_file: Path) -> list[int]:
    """Worker processes running the run whose record goes to ``record_file``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"adapterbench.harness.worker" in cmdline and str(record_file).encode() in cmdline:
                pids.append(int(entry.name))
    return pids


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def history_without_times(record: dict) -> list[dict]:
    return [{k: v for k, v in entry.items() if "time" not in k} for entry in record["history"]]


def assert_same_runs(a: Path, b: Path) -> None:
    ra, rb = records(a), records(b)
    assert ra.keys() == rb.keys() and ra  # same file names
    for name in ra:
        for key in SAME_FIELDS:
            assert ra[name][key] == rb[name][key], (name, key)
        assert history_without_times(ra[name]) == history_without_times(rb[name]), name
        for key, value in ra[name]["measurements"].items():
            if key.startswith("params/") or key in ("memory/trainable_weights_bytes", "memory/gradients_bytes",
                                                    "memory/optimizer_state_bytes", "checkpoint/bytes",
                                                    "inference/merge_max_abs_logit_diff"):
                assert rb[name]["measurements"][key] == value, (name, key)
        run_id = ra[name]["run_id"]  # the trained weights, bit for bit
        wa, wb = (load_file(str(checkpoint_path(out, run_id))) for out in (a, b))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name


# ---- local: the first worker starts before the preflight -----------------------------------------------------
def spy_on_workers(monkeypatch) -> list:
    started = []
    real = matrix.start_worker

    def spy(env=None, path=None):
        worker = real(env, path)
        started.append((path, worker))
        return worker

    monkeypatch.setattr(matrix, "start_worker", spy)
    return started


def test_bench_run_hands_its_first_run_to_the_worker_it_started_before_the_preflight(monkeypatch, tmp_path,
                                                                                      tiny_folder):
    started = spy_on_workers(monkeypatch)
    out = tmp_path / "out"
    code = main(["run", "--variants", "head", "--task", str(TASK_FILE), "--model", str(tiny_folder), "--profile",
                 "smoke", "--seeds", "0,1", "--set", "max_steps=2", "--out", str(out)])
    assert code == 0
    # One worker started ahead (no record known yet), then one for the second run (its record on its command line).
    assert [path is None for path, _ in started] == [True, False]
    assert all(worker.process.returncode == 0 for _, worker in started)
    by_seed = {r["seed"]: r["measurements"] for r in records(out).values()}
    # the worker started ahead waited (imports done) while the preflight ran: a wait, and not part of its run
    assert by_seed[0]["time/worker_wait_s"] > 0
    for m in by_seed.values():  # the wait is no part of the run's process time, which still holds the run
        assert m["time/process_s"] > m["time/wall_s"] > 0


def test_a_failed_preflight_stops_the_worker_started_ahead_and_writes_nothing(monkeypatch, capsys, tmp_path,
                                                                               tiny_folder):
    started = spy_on_workers(monkeypatch)
    code = main(["run", "--variants", "head", "--task", str(TASK_FILE), "--model", str(tiny_folder), "--profile",
                 "smoke", "--seeds", "-1", "--out", str(tmp_path / "out")])
    assert code == 2 and "seed" in capsys.readouterr().err
    assert len(started) == 1 and started[0][1].process.returncode is not None  # stopped, not left waiting
    assert not (tmp_path / "out").exists()


def test_a_matrix_already_done_dismisses_the_worker_started_ahead(monkeypatch, tmp_path, tiny_folder):
    argv = ["run", "--variants", "head", "--task", str(TASK_FILE), "--model", str(tiny_folder), "--profile",
            "smoke", "--set", "max_steps=2", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    before = records(tmp_path / "out")
    started = spy_on_workers(monkeypatch)
    assert main(argv) == 0
    assert len(started) == 1 and started[0][1].process.returncode is not None
    assert records(tmp_path / "out") == before  # nothing rerun, nothing rewritten


def test_a_worker_given_no_run_exits_quietly_without_writing():
    done = subprocess.run([sys.executable, "-m", "adapterbench.harness.worker"], input="", text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""


# ---- device pool -----------------------------------------------------------------------------------------
def test_device_pool_runs_one_run_per_device_at_a_time(monkeypatch, tmp_path, tiny_folder):
    spans: list[tuple[str, float, float]] = []
    lock = threading.Lock()

    def fake_run(spec, path, argv=None, on_start=None, env=None, placement=None, worker=None):
        start = time.perf_counter()
        time.sleep(0.05)
        with lock:
            spans.append((env["CUDA_VISIBLE_DEVICES"], start, time.perf_counter()))
        return {"status": "ok", "run_id": spec.run_id}

    monkeypatch.setattr(matrix, "run_isolated", fake_run)
    specs = smoke_specs(tiny_folder, tmp_path / "out", seeds=range(5))
    assert run_matrix(specs, executor=DevicePoolExecutor(["3", "5"]), stream=io.StringIO()) == 0
    assert len(spans) == len(specs) == 10
    assert {d for d, _, _ in spans} == {"3", "5"}
    for device in ("3", "5"):
        mine = sorted((s, e) for d, s, e in spans if d == device)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(mine, mine[1:])), device


def test_an_error_on_one_device_stops_the_pool_and_reaches_the_caller(monkeypatch, tmp_path, tiny_folder):
    calls = []

    def full_disk(spec, path, argv=None, on_start=None, env=None, placement=None, worker=None):
        calls.append(spec.run_id)
        raise UserError(f"cannot write the record {str(path)!r} (No space left on device)")

    monkeypatch.setattr(matrix, "run_isolated", full_disk)
    specs = smoke_specs(tiny_folder, tmp_path / "out", seeds=range(4))
    with pytest.raises(UserError, match="No space left on device"):
        run_matrix(specs, executor=DevicePoolExecutor(["0", "1"]), stream=io.StringIO())
    assert 1 <= len(calls) <= 2  # each device stopped after its first failure; the rest never started
    assert not list((tmp_path / "out" / ".claims").glob("*.lock"))  # claims released


def test_device_pool_records_the_device_and_keeps_the_run_ids(tmp_path, tiny_folder):
    local, spread = tmp_path / "local", tmp_path / "spread"
    assert run_matrix(smoke_specs(tiny_folder, local), executor=LocalExecutor(), stream=io.StringIO()) == 0
    out = io.StringIO()
    assert run_matrix(smoke_specs(tiny_folder, spread), executor=DevicePoolExecutor(["0", "1"]), stream=out) == 0
    assert_same_runs(local, spread)
    placed = {r["environment"]["placement"]["cuda_visible_devices"] for r in records(spread).values()}
    assert placed <= {"0", "1"} and placed
    assert "on GPU" in out.getvalue()
    # A report of the spread matrix counts each seed once, also when read together with the local folder.
    collection = Collection.of(*load_records([spread, local]))
    assert len(collection.latest) == 4 and len(collection.older) == 4
    table = aggregate_group(collection.ok_points, collection.ok)
    assert sorted(row.stats["primary"].n for row in table.rows) == [2, 2]
    assert sorted(sorted(row.seeds) for row in table.rows) == [[0, 1], [0, 1]]


def test_device_pool_refuses_a_device_setting(tmp_path, tiny_folder):
    specs = expand(["head"], [str(TASK_FILE)], [0], str(tiny_folder), "smoke", {"device": "cpu"}, None,
                   str(tmp_path))
    with pytest.raises(UserError, match="--devices with device='cpu' is not allowed"):
        run_matrix(specs, executor=DevicePoolExecutor(["0"]), stream=io.StringIO())


def test_parse_devices(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert parse_devices("all") == ["4", "5", "6", "7"]
    assert parse_devices("1,3") == ["5", "7"]  # indices count the visible GPUs
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert parse_devices(" 0, 2 ") == ["0", "2"]
    for text, needle in (("4", "GPU 4 does not exist; this machine shows 4 CUDA devices (0-3)"),
                         ("0,0", "lists a GPU twice"), ("cuda:1", "is not allowed"), ("", "is not allowed")):
        with pytest.raises(UserError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            parse_devices(text)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(UserError, match="no CUDA device is visible"):
        parse_devices("all")


@pytest.mark.parametrize("kwargs,needle", [
    ({"executor": "dask"}, "--executor 'dask' is not allowed; choose local or ray"),
    ({"executor": "local", "address": "auto"}, "--address needs --executor ray"),
    ({"executor": "local", "retries": 2}, "--retries needs --executor ray"),
    ({"executor": "ray", "devices": "0"}, "--devices is for the local executor"),
    ({"executor": "local", "devices": "0", "in_process": True}, "cannot be combined"),
])
def test_executor_options_that_do_not_fit(kwargs, needle):
    with pytest.raises(UserError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        make_executor(**kwargs)


def test_ray_missing_gives_one_line_with_the_install_command(monkeypatch, capsys, tmp_path, tiny_folder):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    code = main(["run", "--variants", "head", "--task", str(TASK_FILE), "--model", str(tiny_folder),
                 "--profile", "smoke", "--out", str(tmp_path / "out"), "--executor", "ray"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err == ('bench: error: --executor ray needs Ray, which is not installed; install it with: '
                   'pip install "adapterbench[ray]"')
    assert not (tmp_path / "out").exists()


# ---- Ray ---------------------------------------------------------------------------------------------------
def ray_executor(**kwargs):
    from adapterbench.harness.ray_executor import RayExecutor

    return RayExecutor(num_cpus=2, **kwargs)


@needs_ray
def test_ray_gives_the_local_executors_records(tmp_path, tiny_folder):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert run_matrix(smoke_specs(tiny_folder, local), executor=LocalExecutor(), stream=io.StringIO()) == 0
    out = io.StringIO()
    assert run_matrix(smoke_specs(tiny_folder, on_ray), executor=ray_executor(), stream=out) == 0
    assert_same_runs(local, on_ray)
    assert {r["environment"]["placement"]["executor"] for r in records(on_ray).values()} == {"ray"}
    assert out.getvalue().count("(done ") == 4 and out.getvalue().count("  ok: ") == 4


def kill_supervisor_of(record_file: Path, killed: list[int], timeout: float = 240) -> None:
    """SIGKILL the Ray task process that supervises the run writing ``record_file``, once it is running."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pids = worker_pids(record_file)
        if pids:
            time.sleep(0.3)  # mid-run: the worker is importing torch or training
            killed.extend([pids[0], parent_pid(pids[0])])
            os.kill(killed[1], signal.SIGKILL)
            return
        time.sleep(0.05)


@needs_ray
def test_a_killed_ray_worker_is_recorded_failed_the_rest_complete_and_a_rerun_resumes(tmp_path, tiny_folder):
    out = tmp_path / "out"
    specs = smoke_specs(tiny_folder, out, variants=("head",), seeds=(0, 1, 2))
    victim = (out / f"{specs[1].run_id}.json").resolve()
    killed: list[int] = []
    killer = threading.Thread(target=kill_supervisor_of, args=(victim, killed), daemon=True)
    killer.start()
    assert run_matrix(specs, executor=ray_executor(), stream=io.StringIO()) == 1
    killer.join()
    assert killed, "the victim's worker never started"
    time.sleep(1.0)
    assert not Path(f"/proc/{killed[0]}").exists() or "Z" in Path(f"/proc/{killed[0]}/stat").read_text().split()[2]
    found = {r["run_id"]: r for r in records(out).values()}
    assert len(found) == 3
    failed = found[specs[1].run_id]
    assert failed["status"] == "failed" and failed["error"]["type"] == "WorkerDied"
    assert failed["error"]["message"].startswith("Ray worker died: ")
    assert failed["variant"]["config"] == found[specs[0].run_id]["variant"]["config"]  # grouped with siblings
    assert [found[s.run_id]["status"] for s in (specs[0], specs[2])] == ["ok", "ok"]
    kept = {s.run_id: (out / f"{s.run_id}.json").read_bytes() for s in (specs[0], specs[2])}

    stream = io.StringIO()
    assert run_matrix(specs, executor=ray_executor(), stream=stream) == 0
    assert "3 runs (1 variants x 1 tasks x 3 seeds), 2 already done, 1 to run" in stream.getvalue()
    assert read_record(victim)["status"] == "ok"
    assert len(list((out / "superseded").glob(f"{specs[1].run_id}.*.json"))) == 1  # the failed record kept
    for run_id, content in kept.items():
        assert (out / f"{run_id}.json").read_bytes() == content


@needs_ray
def test_ray_retries_a_run_whose_worker_died_and_notes_it(tmp_path, tiny_folder):
    out = tmp_path / "out"
    specs = smoke_specs(tiny_folder, out, variants=("head",), seeds=(0,))
    killed: list[int] = []
    killer = threading.Thread(target=kill_supervisor_of, args=((out / f"{specs[0].run_id}.json").resolve(),
                                                                killed), daemon=True)
    killer.start()
    assert run_matrix(specs, executor=ray_executor(retries=1), stream=io.StringIO()) == 0
    killer.join()
    record = read_record(out / f"{specs[0].run_id}.json")
    assert killed and record["status"] == "ok"
    assert len(record["notes"]) == 1 and record["notes"][0].startswith("attempt 1 ended: ")
    assert record["notes"][0].endswith("; resubmitted")


@needs_ray
def test_ctrl_c_cancels_a_ray_matrix_and_a_rerun_resumes(tmp_path, tiny_folder):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "adapterbench.cli", "run", "--variants", "head", "--task", str(TASK_FILE),
            "--seeds", "0,1,2,3", "--profile", "smoke", "--set", "max_steps=2", "--model", str(tiny_folder),
            "--out", str(out), "--executor", "ray"]
    env = {**os.environ, "ADAPTERBENCH_PROGRESS": "0"}
    process = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
    specs = smoke_specs(tiny_folder, out, variants=("head",), seeds=(0, 1, 2, 3))
    files = [(out / f"{s.run_id}.json").resolve() for s in specs]
    deadline = time.time() + 240
    while time.time() < deadline and not any(worker_pids(f) for f in files):
        time.sleep(0.05)
    running = [pid for f in files for pid in worker_pids(f)]
    assert running, "no run started"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "rerun the same command to resume" in err and "Traceback" not in err
    time.sleep(1.0)
    assert not any(worker_pids(f) for f in files)  # cancelled runs leave no process behind
    finished = {p.name: json.loads(p.read_text())["status"] for p in out.glob("*.json")}
    assert set(finished.values()) <= {"ok"}  # an interrupted run leaves no record, in particular no 'failed'

    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{len(finished)} already done, {4 - len(finished)} to run" in result.stdout
    assert len(list(out.glob("*.json"))) == 4
