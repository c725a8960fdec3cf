"""The grid runner: the fixed-β̂ ablation stage, failures, resume after SIGKILL and Ctrl-C, the
Dask backend, and bad input (one clear message, non-zero exit, no finished result altered)."""
import csv
import dataclasses
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from disentbench import metrics
from disentbench.bench import estimate, grid
from disentbench.bench.cli import main, parse_params
from disentbench.bench.plan import Options
from disentbench.bench.profiles import PROFILES
from disentbench.bench.spec import RunSpec
from tests.helpers import tiny_dsprites_like

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """One thread per worker, in-process runs included (as in the child processes)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
TINY = ["--datasets", "tiny", "--device", "cpu", "--profile", "smoke", "--jobs", "1"]


def child_env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
                OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT), DISENTBENCH_OFFLINE="1")


def start_grid(*args) -> subprocess.Popen:
    """The grid on `tiny` in a subprocess, in its own process group."""
    return subprocess.Popen([sys.executable, "-m", "tests.tiny_bench", *args], cwd=ROOT,
                            env=child_env(), start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def snapshot(out: Path) -> dict:
    """path -> (mtime, sha256) of every file of the runs under `out`/runs (not a claim or a
    temporary file: those come and go with the processes)."""
    return {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted((out / "runs").rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def statuses(out: Path) -> dict:
    return {p.parent.relative_to(out / "runs").as_posix(): json.loads(p.read_text())
            for p in (out / "runs").rglob("status.json")}


def complete_runs(out: Path) -> list[Path]:
    """Run folders that are trained and evaluated."""
    return [p.parent for p in (out / "runs").rglob("metrics.json")
            if json.loads((p.parent / "status.json").read_text())["status"] == "done"]


def test_ablation_runs_beta_vae_with_the_final_beta_hat(tmp_path, capsys):
    args = [*TINY, "--methods", "l-vae", "--seeds", "2", "--steps", "10", "--metrics", "none",
            "--out", str(tmp_path)]
    assert main(args) == 0
    assert "2 fixed-beta-hat ablation runs" in capsys.readouterr().out
    for seed in (0, 1):
        source = tmp_path / f"runs/tiny/l-vae/seed{seed}"
        with open(source / "history.csv") as f:
            beta_hat = float(list(csv.DictReader(f))[-1]["beta_hat"])
        run = tmp_path / f"runs/tiny/beta-vae-fixed-beta-hat/seed{seed}"
        config = json.loads((run / "config.json").read_text())
        assert config["method_params"] == {"beta": beta_hat, "recon": "bernoulli-sum"}
        assert beta_hat != 4.0
        assert config["ablation"] == {"of": "l-vae", "beta_hat": beta_hat,
                                      "source_run": f"runs/tiny/l-vae/seed{seed}"}
        assert config["spec"]["seed"] == seed and config["spec"]["method"] == "beta-vae"
        lvae = json.loads((source / "config.json").read_text())["spec"]
        assert {k: v for k, v in config["spec"].items() if k not in ("method", "params", "variant")} \
            == {k: v for k, v in lvae.items() if k not in ("method", "params", "variant")}
        assert json.loads((run / "status.json").read_text())["status"] == "done"
    before = snapshot(tmp_path)
    assert main(args) == 0
    assert "0 trained or evaluated now, 4 already done" in capsys.readouterr().out
    assert snapshot(tmp_path) == before
    assert main([*args, "--ablation", "none"]) == 0
    assert "2 runs (1 methods" in capsys.readouterr().out


def history(run: Path) -> list[dict]:
    with open(run / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_seed_groups_train_each_run_into_its_own_folder_as_a_single_run_would(tmp_path, capsys):
    # fp32: in bf16 (auto on CPUs with native bf16) grouped and single convolutions round apart
    # by about bf16's precision instead of fp32's
    common = [*TINY, "--methods", "l-vae", "--seeds", "3", "--steps", "6", "--log-every", "2",
              "--metrics", "mig", "--precision", "fp32"]
    assert main([*common, "--group-seeds", "2", "--out", str(tmp_path / "grouped")]) == 0
    assert "seed groups of up to 2" in capsys.readouterr().out
    assert main([*common, "--group-seeds", "off", "--out", str(tmp_path / "single")]) == 0
    assert "one run at a time" in capsys.readouterr().out
    for label in ("l-vae", "beta-vae-fixed-beta-hat"):
        for seed, group in ((0, [0, 1]), (1, [0, 1]), (2, None)):
            grouped = tmp_path / f"grouped/runs/tiny/{label}/seed{seed}"
            single = tmp_path / f"single/runs/tiny/{label}/seed{seed}"
            config = json.loads((grouped / "config.json").read_text())
            assert config.get("seed_group") == group, (label, seed)
            assert "seed_group" not in json.loads((single / "config.json").read_text())
            got, want = history(grouped), history(single)
            assert [r.keys() for r in got] == [r.keys() for r in want]
            for g, w in zip(got, want):
                assert g == pytest.approx(w, rel=1e-4, abs=1e-5), (label, seed, g["step"])
            if label != "l-vae":
                beta_hat = history(tmp_path / f"grouped/runs/tiny/l-vae/seed{seed}")[-1]["beta_hat"]
                assert config["ablation"] == {"of": "l-vae", "beta_hat": beta_hat,
                                              "source_run": f"runs/tiny/l-vae/seed{seed}"}
                assert config["method_params"]["beta"] == beta_hat
            mig = [json.loads((run / "metrics.json").read_text())["metrics"]["mig"]["values"]
                   for run in (grouped, single)]
            assert mig[0] == pytest.approx(mig[1], abs=1e-3)
    assert main([*common, "--group-seeds", "2", "--out", str(tmp_path / "grouped")]) == 0
    assert "0 trained or evaluated now, 6 already done" in capsys.readouterr().out


def test_group_seeds_auto_groups_where_the_device_rule_and_a_timed_probe_say_so(monkeypatch,
                                                                                tmp_path):
    seeds = [RunSpec("vae", "tiny", seed, 10) for seed in range(12)]
    auto = Options(out=tmp_path, device="cpu", group_seeds=None)
    data = {"tiny": tiny_dsprites_like()}
    assert estimate.group_size(seeds, auto, data) == 1                  # never on a CPU
    assert estimate.group_size(seeds, dataclasses.replace(auto, group_seeds=3), data) == 3
    monkeypatch.setattr(estimate, "should_group", lambda device, n: n > 1)   # as on a GPU
    per_member = {1: 1.0, 10: 0.2, 4: 0.3}
    monkeypatch.setattr(estimate, "probe",
                        lambda spec, data, options, members=1: per_member[members])
    assert estimate.group_size(seeds, auto, data) == estimate.AUTO_SIZE == 10
    assert estimate.group_size(seeds[:4], auto, data) == 4              # the cell's seeds
    per_member[10] = 1.5                                                # groups cost more
    assert estimate.group_size(seeds, auto, data) == 1
    per_member[10] = None                                               # the probe failed
    assert estimate.group_size(seeds, auto, data) == 1


def test_failed_runs_are_recorded_listed_and_retried_only_when_asked(tmp_path, capsys):
    # beta-tcvae's stratified sampling raises on its first step with a batch of 1 (the ETA
    # probe must not stop the grid: the run fails, the other run finishes)
    args = [*TINY, "--methods", "vae,beta-tcvae", "--param", "beta-tcvae.stratified=true",
            "--batch-size", "1", "--steps", "4", "--metrics", "mig", "--out", str(tmp_path)]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "failed: tiny/beta-tcvae-stratified=True/seed0: ValueError: stratified sampling" in out
    assert "vae" in out and "1 / 0" in out and "0 / 1" in out
    failed = tmp_path / "runs/tiny/beta-tcvae-stratified=True/seed0/status.json"
    assert json.loads(failed.read_text())["status"] == "failed"
    before = snapshot(tmp_path)
    assert main(args) == 1
    assert "failed earlier, --retry-failed retries it" in capsys.readouterr().out
    assert snapshot(tmp_path) == before
    assert main([*args, "--retry-failed"]) == 1
    assert failed.stat().st_mtime_ns != before[failed][0]


def test_an_evaluation_error_fails_the_run(tmp_path, capsys, monkeypatch):
    real = metrics.compute

    def broken(name, *a, **k):
        if name == "mig":
            raise RuntimeError("boom")
        return real(name, *a, **k)
    monkeypatch.setattr(metrics, "compute", broken)
    args = [*TINY, "--methods", "vae", "--steps", "4", "--metrics", "mig,irs",
            "--out", str(tmp_path)]
    assert main(args) == 1
    assert "failed: tiny/vae/seed0: evaluation failed: mig: RuntimeError: boom" in \
        capsys.readouterr().out
    monkeypatch.setattr(metrics, "compute", real)
    assert main(args) == 0                               # the rerun evaluates what is missing
    values = json.loads((tmp_path / "runs/tiny/vae/seed0/metrics.json").read_text())["metrics"]
    assert 0 <= values["mig"]["values"]["discrete_mig"] <= 1 and "IRS" in values["irs"]["values"]


@pytest.mark.slow
@pytest.mark.grid
@pytest.mark.parametrize("group_seeds, methods_args", [
    ("off", ("vae,l-vae",)), ("2", ("vae,l-vae",)),
    ("off", ("beta-vae,l-vae", "--param", "beta-vae.beta=1,6"))])         # a sweep
def test_sigkill_at_random_moments_then_rerun_finishes_every_run_once(tmp_path, group_seeds,
                                                                      methods_args):
    args = ["--methods", *methods_args, "--datasets", "tiny", "--device", "cpu", "--seeds", "2",
            "--profile", "smoke", "--steps", "30", "--metrics", "mig", "--jobs", "2",
            "--group-seeds", group_seeds, "--out", str(tmp_path)]
    names = methods_args[0].split(",")
    labels = sorted({spec.label for spec in grid.expand(
        names, ["tiny"], 1, PROFILES["smoke"], parse_params(list(methods_args[2:]), names),
        {"tiny": 5})} | {grid.ABLATION_LABEL})
    rng = random.Random(0)
    finished = {}                                        # run folder -> its files when killed
    for _ in range(3):
        before = len(list(tmp_path.rglob("status.json")))
        process = start_grid(*args)
        deadline = time.time() + 120                     # kill while runs are under way
        while time.time() < deadline and len(list(tmp_path.rglob("status.json"))) <= before:
            time.sleep(0.1)
        time.sleep(rng.uniform(0.5, 6))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if (tmp_path / "runs").is_dir():
            for run in complete_runs(tmp_path):
                files = {p: v for p, v in snapshot(tmp_path).items() if p.parent == run}
                finished.setdefault(run, files)
    process = start_grid(*args)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    runs = statuses(tmp_path)
    assert sorted(runs) == [f"tiny/{label}/seed{seed}" for label in labels for seed in (0, 1)]
    assert all(s["status"] == "done" and s["step"] == 30 for s in runs.values())
    now = snapshot(tmp_path)
    for run, files in finished.items():                  # neither retrained nor re-evaluated
        assert {p: now[p] for p in files} == files, run
    for path in (tmp_path / "runs").rglob("*.json"):
        assert isinstance(json.loads(path.read_text()), dict), path


def test_ctrl_c_stops_cleanly_and_rerun_resumes(tmp_path):
    args = ["--methods", "vae", "--datasets", "tiny", "--device", "cpu", "--profile", "smoke",
            "--steps", "100000", "--checkpoint-every", "5", "--metrics", "none", "--jobs", "1",
            "--out", str(tmp_path)]
    process = start_grid(*args)
    status = tmp_path / "runs/tiny/vae/seed0/status.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (status.is_file() and json.loads(status.read_text())["step"]):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "rerunning the same command resumes" in err and "tiny/vae/seed0: step" in err
    stopped = json.loads(status.read_text())
    assert stopped["status"] == "running" and stopped["step"] > 0       # resumable, and says so
    assert f"resumes from step {stopped['step']}" in stopped["stopped"]
    args[args.index("--steps") + 1] = str(stopped["step"] + 5)
    assert main(args) == 0
    assert json.loads(status.read_text())["status"] == "done"


@pytest.mark.slow
@pytest.mark.grid
def test_dask_local_cluster_gives_the_local_backend_metrics(tmp_path):
    pytest.importorskip("dask.distributed", reason="needs dask: pip install \"disentbench[cluster]\"")
    common = [*TINY[:-2], "--methods", "vae,l-vae", "--seeds", "1", "--steps", "10",
              "--metrics", "mig,reconstruction", "--ablation", "none"]
    # the same threads per worker (1) on both backends: float results depend on the thread count
    assert main([*common, "--jobs", "2", "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--backend", "dask", "--jobs", "2", "--out", str(tmp_path / "dask")]) == 0
    for run in ("vae/seed0", "l-vae/seed0"):
        local, dask = (json.loads((tmp_path / where / "runs/tiny" / run / "metrics.json")
                                  .read_text())["metrics"] for where in ("local", "dask"))
        assert {k: v["values"] for k, v in local.items()} == {k: v["values"] for k, v in dask.items()}


# ------------------------------------------------------------------ bad input

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A results folder holding one trained and evaluated run."""
    out = tmp_path_factory.mktemp("finished")
    assert main([*TINY, "--methods", "vae", "--steps", "4", "--metrics", "mig",
                 "--out", str(out)]) == 0
    return out


def _bad_config(tmp_path, text):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return str(path)


BAD = [
    (["--methods", "vae,nope"], "unknown method 'nope'"),
    (["--datasets", "mnist"], "unknown dataset 'mnist'"),
    (["--seeds", "0"], "--seeds must be a positive integer"),
    (["--steps", "-3"], "--steps must be a positive integer"),
    (["--jobs", "0"], "--jobs must be a positive integer"),
    (["--lr", "inf"], "--lr must be positive and finite"),
    (["--lr", "nan"], "--lr must be positive and finite"),
    (["--profile", "huge"], "invalid choice: 'huge'"),
    (["--param", "vae.beta=2"], "method 'vae' has no parameter 'beta'"),
    (["--methods", "beta-vae", "--param", "beta-vae.beta=-1"], "beta-vae.beta must be a finite number in [0.0, inf], got -1.0"),
    (["--methods", "beta-vae", "--param", "beta-vae.beta=nan"], "beta-vae.beta must be a finite number"),
    (["--methods", "dynamic-vae", "--param", "dynamic-vae.window=0"], "dynamic-vae.window must be a finite number in [1, inf]"),
    (["--metrics", "mig,nope"], "unknown metric 'nope'"),
    (["--device", "nonsense"], "--device 'nonsense' is not a device name; devices here: cpu"),
    (["--device", "meta"], "--device meta: no such device on this machine; devices here: cpu"),
    (["--batch-size", "1000"], "--batch-size 1000 is larger than dataset tiny (384 images)"),
    (["--scheduler", "tcp://127.0.0.1:9"], "--scheduler needs --backend dask"),
    (["--backend", "dask", "--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
    (["--datasets", "dsprites"], "dataset file dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz not found"),
    (["--latent-dim", "7"], "holds another run (latent_dim: 10 there, 7 asked)"),
    ("config:seeds = [", "not valid TOML"),
    ("config:seeds = 2\nwarmup = 3\n", "unknown key 'warmup'"),
    ("config:seeds = 'many'\n", "--config"),
    ("config:[params]\nbeta-vae = 3\n", "params must be tables"),
    (["--group-seeds", "0"], "--group-seeds '0': expected auto, off or a positive number"),
    (["--group-seeds", "many"], "--group-seeds 'many': expected auto, off or a positive number"),
]


@pytest.mark.parametrize("bad, message", BAD, ids=[str(b) for b, _ in BAD])
def test_bad_input_one_message_exit_2_nothing_altered(finished, tmp_path, capsys, bad, message):
    if bad == ["--device", "nonsense"] or bad == ["--device", "meta"]:
        message = message if not torch.cuda.is_available() else message.split("; devices")[0]
    if isinstance(bad, str):
        bad = ["--config", _bad_config(tmp_path, bad.removeprefix("config:"))]
    before = snapshot(finished)
    code = main([*TINY, "--methods", "vae", "--steps", "4", "--metrics", "mig",
                 "--out", str(finished), *bad])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("error:") == 1, err
    assert "Traceback" not in err
    assert snapshot(finished) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="about a machine without CUDA")
def test_cuda_without_cuda_is_refused(capsys, tmp_path):
    assert main([*TINY[:2], "--methods", "vae", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "--device cuda: no such device on this machine (CUDA is not available); devices here: cpu" \
        in capsys.readouterr().err


@pytest.mark.parametrize("out, message", [("", "--out is empty"),
                                          ("/proc/disentbench", "cannot write there")])
def test_bad_out_is_refused(capsys, out, message):
    assert main([*TINY, "--methods", "vae", "--out", out]) == 2
    assert message in capsys.readouterr().err


def test_a_parameter_at_its_default_names_the_same_run(tmp_path, capsys):
    args = [*TINY, "--methods", "beta-vae", "--steps", "2", "--metrics", "none",
            "--out", str(tmp_path)]
    assert main(args) == 0
    assert main([*args, "--param", "beta-vae.beta=4"]) == 0
    assert "1 already done" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "runs/tiny").iterdir()] == ["beta-vae"]


def test_config_file_with_flags_over_it(tmp_path, capsys):
    config = _bad_config(tmp_path, 'methods = ["vae", "beta-vae"]\nseeds = 2\nsteps = 3\n'
                                   'metrics = "none"\n[params.beta-vae]\nbeta = 2\n')
    assert main([*TINY, "--config", config, "--seeds", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 runs (2 methods x 1 datasets x 1 seeds)" in out and "3 steps" in out
    assert sorted(p.name for p in (tmp_path / "runs/tiny").iterdir()) == ["beta-vae-beta=2", "vae"]


def test_report_subcommand_dispatches(finished, capsys):
    assert main(["report", "--results", str(finished)]) == 0
    assert "summary.csv" in capsys.readouterr().out


def test_paper_profile_uses_the_number_of_factors_and_flags_override_profiles():
    specs = grid.expand(["vae"], ["tiny", "celeba"], 1, PROFILES["paper"], {},
                        {"tiny": 5, "celeba": 0})
    assert [(s.latent_dim, s.steps, s.batch_size, s.lr, s.log_every) for s in specs] == \
        [(5, 300_000, 64, 1e-4, 1000), (10, 300_000, 64, 1e-4, 1000)]
    from disentbench.bench.cli import parse, settings
    profile, chosen = settings(parse(["--profile", "paper", "--steps", "7"]), torch.device("cpu"))
    assert profile == "paper" and chosen["steps"] == 7 and chosen["eval_size"] == "default"
    assert settings(parse([]), torch.device("cpu"))[0] == "quick"
    assert settings(parse([]), torch.device("cuda"))[0] == "paper"
