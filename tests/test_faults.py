"""Faults during a matrix: every one a recorded status or a clean stop, nothing lost, nothing run twice.

Covered: ``kill -9`` of the parent (its worker dies with it and writes nothing) and of the worker (a ``failed``
record that says signal 9; ``oom`` only when the kernel counted an out-of-memory kill), Ctrl-C (exit 130, one line, no traceback, no record), CPU out-of-memory under an address-space limit
(``oom``), divergence (``diverged``), a truncated record (rerun, the broken file kept), two ``bench run`` on one
folder (each run trained once), and the claims themselves. Subprocess cases use the tiny model on the smoke
profile; the rest run in this process.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from adapterbench.cli import main
from adapterbench.harness import claims
from adapterbench.harness.loop import Diverged
from adapterbench.harness.run import status_of
from adapterbench.testing import save_tiny_model

TASK_FILE = Path(__file__).parent / "data" / "tasks" / "sentiment.toml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tinybert", "bert")


def bench_args(tiny: Path, out: Path, *extra: str, variants: str = "head", task: Path = TASK_FILE) -> list[str]:
    return ["run", "--variants", variants, "--task", str(task), "--model", str(tiny), "--profile", "smoke",
            "--out", str(out), *extra]


def start(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "ADAPTERBENCH_PROGRESS": "0", "OMP_NUM_THREADS": "1", **kwargs.pop("env", {})}
    return subprocess.Popen([sys.executable, "-m", "adapterbench.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kwargs)


def records(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in out.glob("*.json")}


def wait_for_worker(out: Path, timeout: float = 120) -> int:
    """The pid of the worker once it is running the run (torch loaded, so past its start-up)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for lock in (out / ".claims").glob("*.lock"):
            info = claims.holder(out, lock.stem) or {}
            pid = info.get("worker_pid")
            if pid and "libtorch" in _maps(pid):
                return pid
        time.sleep(0.2)
    raise AssertionError("no worker started")


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


def gone(pid: int, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if claims._proc_start(pid) == "zombie":
            return True
        time.sleep(0.1)
    return False


# ---- statuses -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exc,status", [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                  "tried to allocate 33554432 bytes. Error code 12 (Cannot allocate memory)"), "oom"),
    (RuntimeError("MPS backend out of memory (MPS allocated: 1.2 GB)"), "oom"),
    (MemoryError(), "oom"),
    (Diverged("loss is nan at step 3"), "diverged"),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), "failed"),
    (ValueError("boom"), "failed"),
])
def test_one_place_classifies_errors(exc, status):
    assert status_of(exc) == status


def test_divergence_is_recorded(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(bench_args(tiny, out, "--set", "lr=1e6", "--set", "epochs=3", variants="full")
                + ["--in-process"]) == 1
    (record,) = records(out).values()
    assert record["status"] == "diverged" and "Traceback" not in capsys.readouterr().err


# ---- claims ---------------------------------------------------------------------------------------------------


def test_claims_exclude_release_and_expire(tmp_path):
    first = claims.try_claim(tmp_path, "run-a")
    assert first is not None and claims.try_claim(tmp_path, "run-a") is None  # held by a live process (us)
    first.set_worker(os.getpid())
    assert claims.holder(tmp_path, "run-a")["worker_pid"] == os.getpid()
    first.release()
    assert not claims.claim_path(tmp_path, "run-a").exists()

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = {"pid": int(dead.stdout), "host": socket.gethostname(), "proc_start": None, "token": "x",
             "worker_pid": None, "started_at": "then"}
    claims.claim_path(tmp_path, "run-b").write_text(json.dumps(stale))
    taken = claims.try_claim(tmp_path, "run-b")
    assert taken is not None and claims.holder(tmp_path, "run-b")["pid"] == os.getpid()

    reused = {**stale, "pid": os.getpid(), "proc_start": "1"}  # our pid, but a process that started at tick 1
    claims.claim_path(tmp_path, "run-c").write_text(json.dumps(reused))
    assert claims.try_claim(tmp_path, "run-c") is not None

    foreign = {**stale, "host": "another-host"}
    claims.claim_path(tmp_path, "run-d").write_text(json.dumps(foreign))
    assert claims.try_claim(tmp_path, "run-d") is None
    assert "delete" in claims.describe(foreign, claims.claim_path(tmp_path, "run-d"))

    claims.claim_path(tmp_path, "run-e").write_text("")  # being written right now
    assert claims.try_claim(tmp_path, "run-e") is None
    old = time.time() - claims.UNREADABLE_GRACE_S - 1
    os.utime(claims.claim_path(tmp_path, "run-e"), (old, old))
    assert claims.try_claim(tmp_path, "run-e") is not None


def test_a_stale_claim_is_taken_over_once(tmp_path):
    stale = {"pid": 2**22 + 12345, "host": socket.gethostname(), "token": "x"}  # above pid_max: never alive
    claims.claim_path(tmp_path, "run").parent.mkdir(parents=True)
    claims.claim_path(tmp_path, "run").write_text(json.dumps(stale))
    won: list[claims.Claim] = []
    barrier = threading.Barrier(8)

    def contend() -> None:
        barrier.wait()
        claim = claims.try_claim(tmp_path, "run")
        if claim is not None:
            won.append(claim)

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


def test_a_run_claimed_by_a_live_process_is_left_alone(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    from adapterbench.harness.matrix import expand

    (spec,) = expand(["head"], [str(TASK_FILE)], [0], str(tiny), "smoke", {}, None, str(out))
    held = claims.try_claim(out, spec.run_id)  # this test process plays the other bench run
    assert main(bench_args(tiny, out) + ["--in-process"]) == 1
    printed = capsys.readouterr().out
    assert f"skipped: being run by pid {os.getpid()}" in printed and "1 run is still being run" in printed
    assert records(out) == {}
    held.release()
    assert main(bench_args(tiny, out) + ["--in-process"]) == 0  # released: now it runs
    (record,) = records(out).values()
    assert record["status"] == "ok"
    # cosmetic promises: the task's name in file name and progress line, the user's command line in the record
    assert record["run_id"].startswith("tiny-sentiment__head__")
    assert record["environment"]["argv"] == bench_args(tiny, out) + ["--in-process"]
    assert "[1/1] tiny-sentiment / head / seed 0" in capsys.readouterr().out


def test_a_truncated_record_is_rerun_and_kept(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(bench_args(tiny, out) + ["--in-process"]) == 0
    (name,) = records(out)
    broken = (out / name).read_bytes()[:200]
    (out / name).write_bytes(broken)
    assert main(bench_args(tiny, out) + ["--in-process"]) == 0
    assert "0 already done, 1 to run" in capsys.readouterr().out
    assert records(out)[name]["status"] == "ok"
    kept = list((out / "superseded").glob(f"{Path(name).stem}.*.json"))
    assert [p.read_bytes() for p in kept] == [broken]
    assert len(list((out / "checkpoints" / "superseded").glob("*.safetensors"))) == 1  # its checkpoint went along


# ---- processes: kill -9, Ctrl-C, out of memory, two matrices on one folder ------------------------------------


def test_kill_9_of_the_parent_takes_the_worker_with_it(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    parent = start(bench_args(tiny, out, variants="full"), tmp_path)
    worker = wait_for_worker(out)
    parent.kill()
    parent.communicate()
    assert gone(worker, timeout=10), "the worker outlived its parent"
    time.sleep(1)
    assert records(out) == {}  # an orphan would have written its record by now (smoke runs take seconds)
    # the claim the dead parent left is stale: a rerun takes it over and runs the run
    assert main(bench_args(tiny, out, variants="full") + ["--in-process"]) == 0
    assert [r["status"] for r in records(out).values()] == ["ok"]


def test_kill_9_of_the_worker_is_recorded(tiny, tmp_path):
    out = tmp_path / "out"
    parent = start(bench_args(tiny, out, variants="full"), tmp_path)
    os.kill(wait_for_worker(out), signal.SIGKILL)
    stdout, stderr = parent.communicate(timeout=120)
    assert parent.returncode == 1 and "Traceback" not in stderr
    (record,) = records(out).values()
    # a kill -9 is not an out-of-memory kill: the kernel counted none while it ran (worker.ending)
    assert record["status"] == "failed", record["error"]
    assert "killed by signal 9 (SIGKILL; often the out-of-memory killer, or a kill -9)" in record["error"]["message"]
    assert "killed by signal 9" in stdout and "OOM" not in stdout
    assert list((out / ".claims").glob("*.lock")) == []


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupts_stop_cleanly(tiny, tmp_path, how):
    out = tmp_path / "out"
    parent = start(bench_args(tiny, out, variants="full"), tmp_path)
    wait_for_worker(out)
    if how == "ctrl-c":
        os.killpg(parent.pid, signal.SIGINT)  # what a terminal does: the whole foreground process group
    else:
        parent.terminate()  # a scheduler stopping the job: only the parent is signalled
    _, stderr = parent.communicate(timeout=120)
    assert parent.returncode == 130
    assert stderr.strip() == "bench: interrupted; finished runs are kept, rerun the same command to resume"
    assert records(out) == {} and list((out / ".claims").glob("*.lock")) == []


def test_cpu_out_of_memory_is_recorded_as_oom(tiny, tmp_path):
    rows = "text,label\n" + "".join(" ".join(["good film bad plot"] * 40) + f",{['negative', 'positive'][i % 2]}\n"
                                    for i in range(2048))
    (tmp_path / "big.csv").write_text(rows)
    task = tmp_path / "big.toml"
    task.write_text(TASK_FILE.read_text().replace("sentiment_train.csv", "big.csv").replace(
        "sentiment_dev.csv", "big.csv").replace("columns = { text = \"review\", label = \"sentiment\" }", ""))
    probe = subprocess.run([sys.executable, "-c", "import adapterbench.harness.matrix, transformers, torch; "
                            "torch.zeros(1); import re; print(re.search(r'VmPeak:\\s+(\\d+)', "
                            "open('/proc/self/status').read()).group(1))"], capture_output=True, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    limit = int(probe.stdout) * 1024 + (900 << 20)  # room to start and to load; not for a 2048-example batch

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    out = tmp_path / "out"
    parent = start(bench_args(tiny, out, "--set", "batch_size=2048", "--set", "max_train_samples=2048",
                              "--set", "max_length=128", "--set", "max_eval_samples=16", variants="full", task=task),
                   tmp_path, preexec_fn=cap, env={"MALLOC_ARENA_MAX": "2"})
    stdout, stderr = parent.communicate(timeout=300)
    assert parent.returncode == 1, stderr[-3000:]
    (record,) = records(out).values()
    assert record["status"] == "oom", record["error"]
    assert "can't allocate memory" in record["error"]["message"] or "SIGKILL" in record["error"]["message"]


def test_two_matrices_on_one_folder_train_each_run_once(tiny, tmp_path):
    out = tmp_path / "out"
    args = bench_args(tiny, out, "--seeds", "0,1,2")
    first, second = start(args, tmp_path), start(args, tmp_path)
    results = [p.communicate(timeout=300) for p in (first, second)]
    printed = results[0][0] + results[1][0]
    # nothing failed, so neither exits 1: the one that finishes first waits for the other's runs (claims.py)
    assert [p.returncode for p in (first, second)] == [0, 0], printed
    assert printed.count("ok: ") == 3, printed  # three runs, each trained by exactly one of the two
    assert len(records(out)) == 3 and all(r["status"] == "ok" for r in records(out).values())
    assert not (out / "superseded").exists()  # no record was written twice
    assert all("Traceback" not in err for _, err in results)
    assert main(args) == 0  # and both left the folder complete: nothing to run


def test_waiting_for_another_process_claims(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdin.read(); time.sleep(0.5)"],
                              stdin=subprocess.PIPE, text=True)
    info = {"pid": holder.pid, "host": socket.gethostname(), "proc_start": claims._proc_start(holder.pid),
            "token": "x", "worker_pid": None}
    claims.claim_path(tmp_path, "theirs").parent.mkdir(parents=True)
    claims.claim_path(tmp_path, "theirs").write_text(json.dumps(info))
    claims.claim_path(tmp_path, "remote").write_text(json.dumps({**info, "host": "another-host"}))
    mine = claims.try_claim(tmp_path, "mine")
    told: list[dict] = []
    threading.Timer(0.5, holder.stdin.close).start()  # the holder exits (its claim goes stale) after 0.5 s + 0.5 s
    began = time.monotonic()
    left = claims.wait_for_holders(tmp_path, ["theirs", "remote", "mine"], told.append, poll_s=0.1)
    assert time.monotonic() - began >= 0.9 and holder.wait(timeout=5) == 0
    assert sorted(left) == ["mine", "remote"]  # this process's own claim, and one whose holder cannot be seen
    assert [sorted(t) for t in told] == [["theirs"]]
    mine.release()
