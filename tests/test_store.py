"""The run store (bench/store.py) through training, evaluation and the report: a damaged or stale
file is never trusted, never silently repaired; a finished run keeps only its weights."""
import json
import warnings

import pytest
import torch

from disentbench import methods
from disentbench.bench.report.load import read_results
from disentbench.bench.evaluate import evaluate, evaluate_run, load_model
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import RunDamaged, RunView
from disentbench.bench.train import train
from disentbench.methods.base import Method, kl_normal
from tests.helpers import tiny_dsprites_like


@pytest.fixture(scope="module")
def data():
    return tiny_dsprites_like()



def store_warnings(result) -> list[str]:
    """The store's own warnings of a run (a few steps on `tiny` have not opened any latent
    dimension yet, so the training diagnostics add a posterior-collapse warning: not ours)."""
    return [w for w in result.warnings if not w.startswith("posterior collapse")]

def spec(method="vae", steps=4, **kw):
    return RunSpec(method, "tiny", 0, steps, batch_size=kw.pop("batch_size", 8),
                   log_every=kw.pop("log_every", 2), **kw)


def finished(out, data, **kw):
    keep = kw.pop("keep_checkpoints", False)
    result = train(spec(**kw), out, data=data, device="cpu", keep_checkpoints=keep)
    assert result.status == "done", result.reason
    return result.run_dir


def read(path):
    return json.loads(path.read_text())


def flip_tensor_bytes(path):
    """Change one bit inside the first weight tensor of model.pt (the file still loads)."""
    first = next(iter(torch.load(path, weights_only=True)["model"].values()))
    raw = path.read_bytes()
    at = raw.index(first.reshape(-1)[:8].numpy().tobytes())
    path.write_bytes(raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1:])


# ---- the "wrong results or lost data", each through the public entry points ----------

def test_extending_a_run_recomputes_its_stale_metrics(tmp_path, data):
    run = finished(tmp_path, data, steps=4)
    first = evaluate_run(run, data, ["irs"], size="quick")
    finished(tmp_path, data, steps=6)
    assert "irs/IRS" not in read_results(tmp_path).runs              # stale until evaluated again
    second = evaluate_run(run, data, ["irs"], size="quick")
    assert second["trained_step"] == 6 and second["checkpoint"] != first["checkpoint"]
    now = evaluate(data, model=load_model(run, data), names=["irs"], size="quick")
    assert second["metrics"]["irs"]["values"] == now["metrics"]["irs"]["values"]
    assert read(run / "metrics.json")["trained_step"] == 6


def test_unreadable_config_is_a_damaged_folder_not_a_match(tmp_path, data):
    run = finished(tmp_path, data)
    text = (run / "config.json").read_text()
    (run / "config.json").write_text(text[:len(text) // 2])
    result = train(spec(latent_dim=6), tmp_path, data=data, device="cpu")
    assert result.status == "failed"
    assert "config.json is unreadable" in result.reason and "--repair" in result.reason


@pytest.mark.parametrize("damage, message", [
    (flip_tensor_bytes, "model.pt does not match its checksum"),
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "model.pt cannot be loaded"),
    (lambda p: p.unlink(), "model.pt is missing"),
])
def test_a_damaged_checkpoint_is_refused_not_trained_from(tmp_path, data, damage, message):
    run = finished(tmp_path, data)
    damage(run / "model.pt")
    history = (run / "history.csv").read_text()
    result = train(spec(steps=6), tmp_path, data=data, device="cpu")
    assert result.status == "failed" and message in result.reason
    assert (run / "history.csv").read_text() == history           # nothing trained, nothing lost
    status = read(run / "status.json")
    assert status["status"] == "failed" and message in status["reason"]


def test_a_flipped_checkpoint_is_not_evaluated(tmp_path, data):
    run = finished(tmp_path, data)
    flip_tensor_bytes(run / "model.pt")
    with pytest.raises(RunDamaged, match="model.pt does not match its checksum"):
        evaluate_run(run, data, ["irs"], size="quick")


def test_history_cut_mid_row_is_damage_when_resuming(tmp_path, data):
    run = finished(tmp_path, data, keep_checkpoints=True)
    text = (run / "history.csv").read_text()
    (run / "history.csv").write_text(text[:-5])
    result = train(spec(steps=6), tmp_path, data=data, device="cpu", keep_checkpoints=True)
    assert result.status == "failed"
    assert "history.csv is cut mid-row at line 3" in result.reason


@pytest.mark.parametrize("cut, message", [
    (lambda text: text[:-5], "cut mid-row at line 3"),                       # digits lost
    (lambda text: text[:text.rindex("\n", 0, -1) + 1], "(rows lost)"),      # last row lost
    (lambda text: text.replace("\n4,", "\n4,x"), "line 3: not a number"),
])
def test_report_refuses_a_damaged_history(tmp_path, data, cut, message):
    run = finished(tmp_path, data)
    (run / "history.csv").write_text(cut((run / "history.csv").read_text()))
    row = read_results(tmp_path).runs.iloc[0]
    assert row["status"] == "damaged" and "history.csv" in row["reason"]
    assert message in row["reason"]
    with pytest.raises(RunDamaged, match="history.csv"):
        RunView(run).read_history(validate_against_status=True)


@pytest.mark.parametrize("text", ["null", "[]", '{"status": ', '{"status": "done", "step": "4"}'])
def test_non_object_status_json_is_damage_not_a_traceback(tmp_path, data, text):
    run = finished(tmp_path, data)
    (run / "status.json").write_text(text)
    result = train(spec(), tmp_path, data=data, device="cpu")
    assert result.status == "failed" and "status.json" in result.reason
    assert (run / "status.json").read_text() == text                 # left as evidence
    row = read_results(tmp_path).runs.iloc[0]
    assert row["status"] == "damaged" and "status.json" in row["reason"]
    assert RunView(run).read_status()["status"] == "damaged"
    assert RunView(run).state(spec()).kind == "damaged"


@pytest.mark.parametrize("text", ["null", "[]", "{\"metrics\": [1]}"])
def test_non_object_metrics_json_is_recomputed_with_a_note_not_a_python_warning(tmp_path, data,
                                                                               text):
    run = finished(tmp_path, data)
    (run / "metrics.json").write_text(text)
    assert read_results(tmp_path).runs.iloc[0]["status"] == "damaged"
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # one plain channel: the run's line
        result = evaluate_run(run, data, ["irs"], size="quick")
    assert "IRS" in result["metrics"]["irs"]["values"]
    assert "metrics.json" in result["notes"][0] and "computed again" in result["notes"][0]
    assert read_results(tmp_path).runs.iloc[0]["status"] == "done"


# ---- classification, repair, failures ----------------------------------------------------------

def test_state_follows_the_life_of_a_run(tmp_path, data):
    store = RunView.of(spec(), tmp_path)
    assert store.state(spec()).kind == "new"
    finished(tmp_path, data)
    done = store.state(spec())
    assert (done.kind, done.step) == ("done", 4)
    extend = store.state(spec(steps=6))
    assert (extend.kind, extend.step) == ("resumable", 4) and extend.checkpoint["step"] == 4
    assert [row["step"] for row in extend.history] == [2, 4]


def test_repair_moves_the_damaged_folder_aside_and_trains_again(tmp_path, data):
    run = finished(tmp_path, data)
    flip_tensor_bytes(run / "model.pt")
    assert train(spec(), tmp_path, data=data, device="cpu").status == "failed"
    result = train(spec(), tmp_path, data=data, device="cpu", repair=True)
    assert result.status == "done" and result.step == 4
    aside = [p for p in run.parent.iterdir() if p.name.startswith("seed0.damaged-")]
    assert len(aside) == 1 and (aside[0] / "model.pt").is_file()
    assert "moved to seed0.damaged-" in store_warnings(result)[0]
    assert read(run / "status.json")["warnings"] == result.warnings
    assert RunView(run).state(spec()).kind == "done"
    assert len(read_results(tmp_path).runs) == 1                       # the moved folder is not a run


class Flaky(Method):
    """Raises while `fail` is set."""
    name = "flaky-test"
    fail = True

    def loss(self, x, out, step):
        if Flaky.fail:
            raise RuntimeError("flaky")
        kl = kl_normal(out.mu, out.logvar)
        return {"loss": kl, "recon": kl, "kl": kl}


def test_a_failed_run_is_retried_only_when_asked(tmp_path, data, monkeypatch):
    monkeypatch.setitem(methods._REGISTRY, Flaky.name, Flaky)
    monkeypatch.setattr(Flaky, "fail", True)
    assert train(spec(Flaky.name), tmp_path, data=data, device="cpu").status == "failed"
    monkeypatch.setattr(Flaky, "fail", False)
    again = train(spec(Flaky.name), tmp_path, data=data, device="cpu")
    assert again.status == "failed" and again.reason == "RuntimeError: flaky"
    assert "RuntimeError: flaky" in (again.run_dir / "error.txt").read_text()
    retried = train(spec(Flaky.name), tmp_path, data=data, device="cpu", retry_failed=True)
    assert retried.status == "done" and retried.step == 4
    assert not (retried.run_dir / "error.txt").exists()


class Exploding(Method):
    """Finite for 5 steps, then NaN."""
    name = "exploding-store-test"

    def loss(self, x, out, step):
        kl = kl_normal(out.mu, out.logvar)
        return {"loss": kl * (float("nan") if step >= 5 else 1.0), "recon": kl, "kl": kl}


def test_a_non_finite_failure_names_the_checkpoint_it_kept(tmp_path, data, monkeypatch):
    monkeypatch.setitem(methods._REGISTRY, Exploding.name, Exploding)
    result = train(spec(Exploding.name, steps=8, checkpoint_every=4), tmp_path, data=data,
                   device="cpu")
    assert result.status == "failed"
    assert "the checkpoint holds the last finite state (step 4)" in result.reason
    assert torch.load(result.run_dir / "model.pt", weights_only=True)["step"] == 4


# ---- sessions: heartbeat, interruption, seconds ------------------------------------------------

def test_interrupted_run_resumes_exactly_and_seconds_add_up(tmp_path, data):
    straight = finished(tmp_path / "straight", data, steps=8, checkpoint_every=4)

    def stop_at_6(n, seen=[]):
        seen.append(n)
        status = read(tmp_path / "cut/runs/tiny/vae/seed0/status.json")
        assert status["status"] == "running" and status["reached_step"] == 2 * len(seen)
        if len(seen) == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(spec(steps=8, checkpoint_every=4), tmp_path / "cut", data=data, device="cpu",
              progress=stop_at_6)
    run = tmp_path / "cut/runs/tiny/vae/seed0"
    stopped = read(run / "status.json")
    assert stopped["status"] == "running" and stopped["checkpoint_step"] == 4
    assert "rerunning resumes from step 4" in stopped["stopped"] and "heartbeat" in stopped
    columns = (run / "history.csv").read_text().splitlines()[0].count(",")
    with open(run / "history.csv", "a") as f:          # a crash after a history write
        f.write("6," + ",".join(["1.0"] * columns) + "\n")
    result = train(spec(steps=8, checkpoint_every=4), tmp_path / "cut", data=data, device="cpu")
    assert result.status == "done"       # exact resume: no restart warning (8 steps: KL not yet open)
    assert store_warnings(result) == []
    assert (run / "history.csv").read_text() == (straight / "history.csv").read_text()
    assert read(run / "status.json")["seconds"] >= stopped["seconds"] + result.seconds - 0.01


# ---- store size ----------------------------------------------------------------------------------

def test_a_finished_run_keeps_only_its_weights_unless_asked(tmp_path, data):
    slim = finished(tmp_path / "slim", data, method="factor-vae", steps=2)
    full = finished(tmp_path / "full", data, method="factor-vae", steps=2, keep_checkpoints=True)
    kept = torch.load(slim / "model.pt", weights_only=True)
    assert {"model", "method", "step"} <= set(kept) and "optimizer" not in kept
    assert "discriminator.0.weight" in kept["method"] and "_extra_state" not in kept["method"]
    assert "optimizer" in torch.load(full / "model.pt", weights_only=True)
    assert (slim / "model.pt").stat().st_size < (full / "model.pt").stat().st_size / 2


def test_extending_a_finished_run_says_it_restarts_the_optimiser(tmp_path, data):
    finished(tmp_path, data, steps=4)
    result = train(spec(steps=6), tmp_path, data=data, device="cpu")
    assert result.status == "done" and result.step == 6
    assert len(store_warnings(result)) == 1
    assert "extended from step 4 to 6 with the optimiser restarted" in store_warnings(result)[0]
    status = read(result.run_dir / "status.json")
    assert status["warnings"] == result.warnings
    assert [row["step"] for row in RunView(result.run_dir).read_history()] == [2, 4, 6]


def test_a_crash_between_checkpoint_and_status_resumes_from_the_checkpoint(tmp_path, data):
    """status.json still at the previous checkpoint, model.pt and history.csv already newer."""
    run, earlier = tmp_path / "runs/tiny/vae/seed0", []

    def keep_status(n):
        earlier.append((run / "status.json").read_text())
    train(spec(steps=8, checkpoint_every=4), tmp_path, data=data, device="cpu",
          keep_checkpoints=True, progress=keep_status)
    history = (run / "history.csv").read_text()
    (run / "status.json").write_text(earlier[2])           # at step 6: checkpoint 4, 2 rows
    state = RunView(run).state(spec(steps=8))
    assert (state.kind, state.step, len(state.history)) == ("resumable", 8, 4)
    result = train(spec(steps=8), tmp_path, data=data, device="cpu")
    assert result.status == "done" and result.step == 8 and not store_warnings(result)
    assert (run / "history.csv").read_text() == history
