"""Many commands on one results folder: run claims (bench/claims.py), shards, signals and the
exit codes; the slow ones (`grid`) run the command line in subprocesses, on a real Dask cluster
among them."""
import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tqdm import tqdm

from disentbench.bench import backend, claims
from disentbench.bench import plan as planning
from disentbench.bench.cli import main
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import Status
from disentbench.bench.train import RunResult
from tests.test_runner import ROOT, TINY, child_env, complete_runs, snapshot, start_grid, statuses


def fake_claim(run_dir: Path, host: str, pid: int, age: float = 0.0, invocation: str = "x"):
    """A claim file as another process would leave it, last refreshed `age` seconds ago."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / claims.CLAIM
    path.write_text(json.dumps({"host": host, "pid": pid, "pid_start": "", "since":
                                "2026-01-01T00:00:00Z", "invocation": invocation,
                                "token": f"{host}-{pid}"}))
    os.utime(path, (time.time() - age, time.time() - age))


def test_a_claim_is_exclusive_refreshed_and_released(tmp_path, monkeypatch):
    monkeypatch.setenv(claims.STALE_ENV, "0.5")
    run = tmp_path / "run"
    with claims.Claims("a") as mine:
        assert mine.take(run) is None
        holder = claims.Claims("b").take(run)
        assert holder.host == socket.gethostname() and holder.pid == os.getpid()
        assert holder.describe().startswith(f"running elsewhere: {socket.gethostname()}/")
        time.sleep(1.0)                                  # twice the limit: refreshed meanwhile
        assert claims.read_holder(run).age < 0.5
        assert claims.Claims("b").take(run) is not None
    assert not (run / claims.CLAIM).exists()


def test_stale_or_dead_claims_are_taken_over_and_live_ones_are_not(tmp_path, monkeypatch):
    monkeypatch.setenv(claims.STALE_ENV, "60")
    live, stale, dead = tmp_path / "live", tmp_path / "stale", tmp_path / "dead"
    fake_claim(live, "otherhost", 123, age=30)
    fake_claim(stale, "otherhost", 123, age=61)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    fake_claim(dead, socket.gethostname(), child.pid)    # this host, a process that ended
    taker = claims.Claims("a")
    assert taker.take(live).host == "otherhost"
    assert taker.take(stale) is None and taker.take(dead) is None
    assert list(taker.notes) == [stale, dead]
    assert "took over the stale claim of otherhost/123" in taker.notes[stale]
    assert "last refreshed 61 s before" in taker.notes[stale]
    assert "its process had ended" in taker.notes[dead]
    taker.release_all()
    assert not any((p / claims.CLAIM).exists() for p in (stale, dead))
    assert (live / claims.CLAIM).exists()


def test_of_many_takers_at_once_exactly_one_gets_a_claim(tmp_path, monkeypatch):
    monkeypatch.setenv(claims.STALE_ENV, "60")
    for stale_first in (False, True):
        run = tmp_path / f"run{stale_first}"
        if stale_first:
            fake_claim(run, "otherhost", 1, age=120)
        takers = [claims.Claims(str(i)) for i in range(8)]
        got, start = [], threading.Barrier(len(takers))

        def take(taker):
            start.wait()
            got.append(taker.take(run))
        threads = [threading.Thread(target=take, args=(t,)) for t in takers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(g is None for g in got) == 1, got
        for taker in takers:
            taker.release_all()


def test_a_stale_claim_already_taken_over_is_not_taken_again(tmp_path, monkeypatch):
    monkeypatch.setenv(claims.STALE_ENV, "60")
    run = tmp_path / "run"
    fake_claim(run, "otherhost", 1, age=120)
    seen_stale = claims.read_holder(run)
    first = claims.Claims("first")
    assert first.take(run) is None                       # took it over
    real, calls = claims.read_holder, []

    def late_reader(run_dir):                            # the second read the stale claim first
        calls.append(run_dir)
        return seen_stale if len(calls) == 1 else real(run_dir)
    monkeypatch.setattr(claims, "read_holder", late_reader)
    assert claims.Claims("second").take(run).invocation == "first"
    assert real(run).invocation == "first"
    first.release_all()


def test_a_bad_stale_setting_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(claims.STALE_ENV, "soon")
    assert main([*TINY, "--methods", "vae", "--out", str(tmp_path)]) == 2
    assert "DISENTBENCH_CLAIM_STALE_S='soon' is not a number of seconds" in capsys.readouterr().err


def grid_specs(methods=("vae", "l-vae", "beta-vae"), seeds=5) -> list[RunSpec]:
    return [RunSpec(method, "tiny", seed, 10) for method in methods for seed in range(seeds)]


@pytest.mark.parametrize("count, group", [(1, 1), (3, 1), (3, 2), (4, 3), (20, 2)])
def test_shards_together_are_the_grid_with_seed_groups_whole(count, group):
    specs = grid_specs()
    shards = [planning.shard(specs, i, count, group) for i in range(1, count + 1)]
    names = [planning.key(s) for shard in shards for s in shard]
    assert sorted(names) == sorted(map(planning.key, specs)) and len(set(names)) == len(names)
    for shard in shards:
        assert shard == [s for s in specs if s in shard]            # in the grid's order
        for s in shard:                                              # its seed group with it
            assert all(t in shard for t in specs if planning.cell(t) == planning.cell(s)
                       and t.seed // group == s.seed // group)
    assert shards == [planning.shard(specs, i, count, group) for i in range(1, count + 1)]
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= group


@pytest.mark.parametrize("text", ["0/3", "4/3", "1", "a/b", "1/0", "1/-2"])
def test_bad_shards_are_refused(text, tmp_path, capsys):
    assert main([*TINY, "--methods", "vae", "--shard", text, "--out", str(tmp_path)]) == 2
    assert f"--shard {text!r}: expected I/N with 1 <= I <= N" in capsys.readouterr().err


def test_runs_claimed_elsewhere_are_left_reported_and_exit_75(tmp_path, capsys):
    args = [*TINY, "--methods", "vae,l-vae", "--steps", "2", "--metrics", "none",
            "--out", str(tmp_path)]
    fake_claim(tmp_path / "runs/tiny/l-vae/seed0", "otherhost", 4242)
    assert main(args) == backend.LEFT_TO_OTHERS == 75
    out = capsys.readouterr().out
    assert "running elsewhere: otherhost/4242, since 2026-01-01T00:00:00Z" in out
    assert ("3 runs: 1 trained or evaluated now, 0 already done, 0 failed, "
            "2 left to other processes") in out
    assert "tiny/beta-vae-fixed-beta-hat/seed0: with its L-VAE run, running elsewhere" in out
    assert not (tmp_path / "runs/tiny/l-vae/seed0/config.json").exists()
    assert not (tmp_path / "runs/tiny/vae/seed0" / claims.CLAIM).exists()     # released
    (tmp_path / "runs/tiny/l-vae/seed0" / claims.CLAIM).unlink()                # its holder ends
    assert main(args) == 0
    assert "2 trained or evaluated now, 1 already done" in capsys.readouterr().out


def test_jobs_far_above_the_cores_warn_and_are_capped_at_the_units(tmp_path, capsys):
    assert main([*TINY[:-2], "--jobs", "999", "--methods", "vae", "--steps", "2",
                 "--metrics", "none", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "warning: --jobs 999 is far above this machine's" in err
    assert "1 local worker processes" in out


def result(name_seed: int, status: Status, trained: int) -> RunResult:
    return RunResult("tiny", "vae", name_seed, status, step=trained, trained=trained)


def test_the_bar_counts_the_steps_trained_and_drops_those_that_will_not_be(tmp_path):
    specs = [RunSpec("vae", "tiny", seed, 4) for seed in range(3)]
    plan = planning.plan(specs, planning.Options(out=tmp_path, device="cpu"))
    bar = tqdm(total=plan.steps, file=io.StringIO())
    progress = backend.Progress(bar, plan)
    progress.steps(["tiny/vae/seed0"], 2)
    progress.finished(result(0, Status.FAILED, 2))               # failed at step 2 of 4
    assert (bar.n, bar.total) == (2, 10)
    progress.finished(result(1, Status.RUNNING, 0))              # left to another process
    progress.finished(result(2, Status.DONE, 4))                 # reported only at its end
    assert (bar.n, bar.total) == (6, 6)
    assert progress.postfix() == "runs 3/3, 1 failed, 1 running elsewhere"


def test_nothing_to_train_shows_no_steps_bar(tmp_path, capsys):
    args = [*TINY, "--methods", "vae", "--steps", "2", "--metrics", "none", "--out", str(tmp_path)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert "step" not in capsys.readouterr().err
    assert main([*args[:-4], "--metrics", "mig", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "evaluating" in err and "1/1" in err and "0step" not in err


# ------------------------------------------------------------------ many processes

SMOKE = ["--datasets", "tiny", "--device", "cpu", "--profile", "smoke", "--metrics", "none",
         "--log-every", "5", "--checkpoint-every", "5"]


def trained_lines(log: str) -> set[str]:
    """The runs a log says it trained now."""
    return {line.split()[1].rstrip(":") for line in log.splitlines()
            if line.startswith("done ") and ": trained " in line and "trained before" not in line}


def assert_each_step_once(out: Path, steps: int) -> None:
    for run in (out / "runs").glob("*/*/seed*"):
        with open(run / "history.csv") as f:
            logged = [int(float(row["step"])) for row in csv.DictReader(f)]
        assert logged == list(range(5, steps + 1, 5)), run
    for path in (out / "runs").rglob("*.json"):
        assert isinstance(json.loads(path.read_text()), dict), path


def grid_names(labels, seeds) -> list[str]:
    return sorted(f"tiny/{label}/seed{seed}" for label in labels for seed in range(seeds))


@pytest.mark.slow
@pytest.mark.grid
def test_two_commands_on_one_folder_train_every_run_once(tmp_path):
    args = [*SMOKE, "--methods", "vae,beta-vae", "--seeds", "4", "--steps", "10", "--jobs", "2",
            "--out", str(tmp_path)]
    started = time.perf_counter()
    first, second = start_grid(*args), start_grid(*args)
    logs = [p.communicate(timeout=300) for p in (first, second)]
    seconds = time.perf_counter() - started
    assert {first.returncode, second.returncode} <= {0, 75}, logs
    names = grid_names(("vae", "beta-vae"), 4)
    assert sorted(statuses(tmp_path)) == names
    assert all(s["status"] == "done" and s["step"] == 10 for s in statuses(tmp_path).values())
    trained = [trained_lines(out) for out, _ in logs]
    assert not trained[0] & trained[1] and sorted(trained[0] | trained[1]) == names, trained
    assert_each_step_once(tmp_path, 10)
    assert not list(tmp_path.rglob(claims.CLAIM))
    print(f"two commands on one folder: {seconds:.1f} s")


@pytest.mark.slow
@pytest.mark.grid
def test_one_of_two_commands_killed_then_a_rerun_finishes_and_retrains_nothing(tmp_path):
    args = [*SMOKE, "--methods", "vae,beta-vae", "--seeds", "4", "--steps", "10", "--jobs", "2",
            "--out", str(tmp_path)]
    victim, survivor = start_grid(*args), start_grid(*args)
    deadline = time.time() + 120
    while time.time() < deadline and not any(s.get("step", 0) >= 5 for s in
                                             statuses_or_empty(tmp_path).values()):
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    finished = {run: {p: v for p, v in snapshot(tmp_path).items() if p.parent == run}
                for run in complete_runs(tmp_path)}
    survivor.communicate(timeout=300)
    assert survivor.returncode in (0, 75)
    rerun = start_grid(*args)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert all(s["status"] == "done" and s["step"] == 10 for s in statuses(tmp_path).values())
    assert sorted(statuses(tmp_path)) == grid_names(("vae", "beta-vae"), 4)
    now = snapshot(tmp_path)
    for run, files in finished.items():
        assert {p: now[p] for p in files} == files, run
    assert_each_step_once(tmp_path, 10)


def statuses_or_empty(out: Path) -> dict:
    try:
        return statuses(out)
    except (OSError, ValueError):
        return {}


def group_processes(pgid: int) -> list[int]:
    ps = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True).stdout
    return [int(pid) for pid, group, stat in (line.split()[:3] for line in ps.splitlines())
            if int(group) == pgid and not stat.startswith("Z")]


@pytest.mark.slow
@pytest.mark.grid
def test_sigkill_of_the_main_process_leaves_no_process_and_sigterm_exits_143(tmp_path):
    args = [*SMOKE, "--methods", "vae,l-vae", "--steps", "100000", "--jobs", "2",
            "--out", str(tmp_path)]
    for how in ("SIGKILL", "SIGTERM"):
        before = {run: s.get("step", 0) for run, s in statuses_or_empty(tmp_path).items()}
        process = start_grid(*args)
        deadline = time.time() + 120
        while time.time() < deadline and sum(s.get("step", 0) >= before.get(run, 0) + 5
                                              for run, s in statuses_or_empty(tmp_path).items()) < 2:
            time.sleep(0.1)
        if how == "SIGKILL":
            assert len(group_processes(process.pid)) >= 3      # the main, 2 workers, a manager
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            deadline = time.time() + 5
            while time.time() < deadline and group_processes(process.pid):
                time.sleep(0.1)
            assert group_processes(process.pid) == []
            continue
        os.killpg(process.pid, signal.SIGTERM)                  # as SLURM does: every process
        out, err = process.communicate(timeout=60)
        assert process.returncode == 143, err
        assert "terminated (SIGTERM); rerunning the same command resumes" in err
        assert "Traceback" not in err
        for run in ("vae", "l-vae"):
            status = json.loads((tmp_path / f"runs/tiny/{run}/seed0/status.json").read_text())
            assert status["status"] == "running" and "stopped" in status
            assert f"tiny/{run}/seed0: step {status['checkpoint_step']}" in err
        assert not list(tmp_path.rglob(claims.CLAIM))
    steps = 5 + max(json.loads((tmp_path / f"runs/tiny/{run}/seed0/status.json").read_text())
                    ["checkpoint_step"] for run in ("vae", "l-vae"))
    resume = [{"100000": str(steps), "2": "1"}.get(a, a) for a in args]      # --jobs 1
    assert main(resume) == 0                                                   # resumes exactly
    assert_each_step_once(tmp_path, steps)


@pytest.mark.slow
@pytest.mark.grid
def test_shards_one_after_another_give_the_unsharded_grid(tmp_path):
    common = [*TINY, "--methods", "vae,l-vae", "--seeds", "2", "--steps", "6", "--group-seeds", "off",
              "--metrics", "mig", "--log-every", "3", "--checkpoint-every", "3"]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    for i in (1, 2, 3):
        assert main([*common, "--shard", f"{i}/3", "--out", str(tmp_path / "sharded")]) == 0
    runs = {where: sorted(p.relative_to(tmp_path / where).as_posix()
                          for p in (tmp_path / where / "runs").glob("*/*/seed*"))
            for where in ("whole", "sharded")}
    assert runs["whole"] == runs["sharded"] and len(runs["whole"]) == 6
    for run in runs["whole"]:
        values = [{k: v["values"] for k, v in json.loads(
            (tmp_path / where / run / "metrics.json").read_text())["metrics"].items()}
            for where in ("whole", "sharded")]
        assert values[0] == values[1], run


@pytest.mark.slow
@pytest.mark.grid
def test_a_dask_cluster_from_the_command_line_survives_a_lost_worker(tmp_path):
    dask = Path(sys.executable).with_name("dask")
    if not dask.exists():
        pytest.skip(f"the dask command is not installed beside {sys.executable}")
    env, file = child_env(), tmp_path / "scheduler.json"
    spawn = [subprocess.Popen([str(dask), *cmd], cwd=ROOT, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for cmd in [["scheduler", "--scheduler-file", str(file), "--port", "0",
                          "--no-dashboard"]]]
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not file.exists():
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        workers = [subprocess.Popen([str(dask), "worker", address, "--nthreads", "1",
                                     "--no-dashboard", "--memory-limit", "0"], cwd=ROOT, env=env,
                                    start_new_session=True, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for _ in range(2)]
        spawn += workers
        common = [*SMOKE[:-6], "--methods", "vae,l-vae", "--steps", "30", "--metrics",
                  "mig,reconstruction", "--log-every", "5", "--checkpoint-every", "5"]
        grid = start_grid(*common, "--backend", "dask", "--scheduler", address,
                          "--out", str(tmp_path / "dask"))
        held = None
        deadline = time.time() + 180
        while time.time() < deadline and held is None:
            for claim in (tmp_path / "dask").rglob(claims.CLAIM):
                status = claim.parent / "status.json"
                if status.exists() and json.loads(status.read_text() or "{}").get("step", 0) >= 5:
                    held = claims.read_holder(claim.parent)
            time.sleep(0.1)
        assert held is not None and held.pid
        lost = next(w for w in workers if os.getpgid(held.pid) == w.pid)
        os.killpg(lost.pid, signal.SIGKILL)
        out, err = grid.communicate(timeout=400)
        assert grid.returncode == 0, err
        assert f"took over the stale claim of {held.host}/{held.pid}" in out     # resumed
        assert_each_step_once(tmp_path / "dask", 30)
        # one thread, as each Dask worker has: float results depend on the thread count
        assert main([*common, "--jobs", "2", "--out", str(tmp_path / "local")]) == 0
        for run in ("vae/seed0", "l-vae/seed0", "beta-vae-fixed-beta-hat/seed0"):
            values = [json.loads((tmp_path / where / "runs/tiny" / run / "metrics.json")
                                 .read_text())["metrics"] for where in ("dask", "local")]
            assert {k: v["values"] for k, v in values[0].items()} == \
                {k: v["values"] for k, v in values[1].items()}, run
    finally:
        for process in spawn:
            with __import__("contextlib").suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
