"""Seed groups (bench/engine.py, bench/train.py): member k of a stacked group follows seed k's single run.

Tolerance: every history value of every member within rtol 1e-4 (plus atol 1e-5 for values
near zero) of the single run, for every registered method (6 steps of batch 4 each, to keep the
default suite fast: the stacking, RNG and state bookkeeping are the same at every step); the RNG
and data generator states exactly equal; weights within Adam's bound lr·steps element-wise (an
element whose gradient is pure rounding noise can move by up to lr a step either way) and within
1e-6 on average. The only difference is float rounding of the stacked (grouped) convolutions;
measured worst relative differences of history values over 20 steps of batch 8: 2e-6 to 3e-5
depending on the method.
"""
import dataclasses
import json
import math

import pytest
import torch

from disentbench import methods
from disentbench.bench import estimate
from disentbench.bench.engine import Engine, check_seed_group
from disentbench.bench.session import failure_reason
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import RunConflict, RunView
from disentbench.bench.train import train, train_runs
from disentbench.methods.base import Method, kl_normal
from tests.helpers import Single, steps_without_host_sync, tiny_dsprites_like

CPU = torch.device("cpu")
SEEDS = (0, 3)
STEPS = 6
BATCH = 4


@pytest.fixture(scope="module")
def data():
    return tiny_dsprites_like()


def specs(method, seeds=SEEDS, steps=STEPS, **fields):
    return [RunSpec(method=method, dataset="tiny", seed=s, steps=steps, batch_size=BATCH,
                    **fields) for s in seeds]


def single_history(spec, data, steps=STEPS):
    trainer = Single(spec, data, CPU)
    return [trainer.row(trainer.step()) for _ in range(steps)], trainer


# L-VAE's equilibrium columns divide by a KL term (√(L_R/KL_j), σ1_j²/√KL_j); a latent KL of
# 1e-4 nats, whose rounding in the stacked convolutions is within the abs 1e-5 below, moves them
# by a relative 1e-3: they are compared at the precision their denominators carry.
RATIO_COLUMNS = ("beta_hat_star", "sigma0_sq_ratio", "sigma1_sq_ratio")


def assert_rows_close(got, want, rel=1e-4):
    assert [r.keys() for r in got] == [r.keys() for r in want]
    for g, w in zip(got, want):
        for name in w:
            tolerance = 1e-2 if name.startswith(RATIO_COLUMNS) else rel
            assert g[name] == pytest.approx(w[name], rel=tolerance, abs=1e-5), (g["step"], name)


@pytest.mark.parametrize("method", methods.available())
def test_member_equals_its_single_run(method, data):
    group = Engine(specs(method), data, CPU)
    histories = [[] for _ in SEEDS]
    for _ in range(STEPS):
        for k, row in enumerate(group.rows(group.step())):
            histories[k].append(row)
    for k, spec in enumerate(group.specs):
        want, single = single_history(spec, data)
        assert_rows_close(histories[k], want)
        state, single_state = group.members[k].state_dict(), single.state_dict()
        assert state.keys() == single_state.keys() and state["step"] == STEPS
        assert torch.equal(state["rng_cpu"], single_state["rng_cpu"])
        assert torch.equal(state["generator"], single_state["generator"])
        for name, value in single_state["model"].items():
            difference = (state["model"][name] - value).abs()
            # Adam moves an element whose gradient is rounding noise by up to lr per step
            assert difference.max() <= spec.lr * STEPS and difference.mean() < 1e-6, name


class NoisyLoss(Method):
    """The VAE's loss plus a term drawn from the global RNG inside `loss` (no registered method
    draws noise there today; a future one, e.g. a sampled prior, must get its member's stream)."""
    name = "noisy-loss-test"

    def loss(self, x, out, step):
        rec, kl = self.reconstruction(x, out), kl_normal(out.mu, out.logvar)
        draw = torch.randn(())
        return {"loss": rec + kl + draw, "recon": rec, "kl": kl, "draw": draw}


def test_noise_drawn_inside_a_loss_comes_from_the_members_own_stream(data, monkeypatch):
    monkeypatch.setitem(methods._REGISTRY, NoisyLoss.name, NoisyLoss)
    group = Engine(specs(NoisyLoss.name), data, CPU)
    rows = [group.rows(group.step()) for _ in range(3)]
    for k, spec in enumerate(group.specs):
        want, _ = single_history(spec, data, steps=3)
        assert_rows_close([r[k] for r in rows], want)
    assert rows[-1][0]["draw"] != rows[-1][1]["draw"]


def test_a_saved_member_resumes_alone_as_its_single_run(data):
    spec = specs("l-vae", steps=6)
    group = Engine(spec, data, CPU)
    for _ in range(3):
        group.step()
    resumed = Single(spec[1], data, CPU)
    resumed.load_state_dict(group.members[1].state_dict())
    got = [resumed.row(resumed.step()) for _ in range(3)]
    want, _ = single_history(spec[1], data, steps=6)
    assert_rows_close(got, want[3:])


def failures(group, rows):
    """{member index: reason} by the checks `train` makes at a logging step."""
    return {k: reason for k, (m, row, nonfinite) in
            enumerate(zip(group.members, rows, group.nonfinite_at_rows))
            if (reason := failure_reason(m.method, row, nonfinite, 0))}


def test_a_non_finite_member_fails_alone(data):
    group = Engine(specs("beta-vae", seeds=(0, 3, 5)), data, CPU)
    histories = {s: [] for s in (0, 3, 5)}
    for step in range(1, STEPS + 1):
        if step == 2:
            with torch.no_grad():
                group.members[1].model.encoder.mu.weight.fill_(math.nan)
        rows = group.rows(group.step())
        for m, row in zip(group.members, rows):
            histories[m.spec.seed].append(row)
        if step % 3 == 0:
            group.drop(failures(group, rows))
    assert list(group.failed) == [3] and "non-finite loss" in group.failed[3]
    assert [m.spec.seed for m in group.members] == [0, 5]
    for k, seed in ((0, 0), (2, 5)):
        want, _ = single_history(specs("beta-vae", seeds=(0, 3, 5))[k], data)
        assert_rows_close(histories[seed], want)


def test_a_diverging_member_fails_alone_with_its_methods_reason(data):
    group = Engine(specs("l-vae-noreg"), data, CPU)
    with torch.no_grad():
        group.members[0].method.log_var.fill_(20.0)            # σ² = e^20 > 1e4
    rows = group.rows(group.step())
    group.drop(failures(group, rows))
    assert list(group.failed) == [0] and "left [0.0001, 10000]" in group.failed[0]
    assert [m.spec.seed for m in group.members] == [3]
    group.step()                                               # the other member goes on


def test_a_group_holds_runs_that_differ_only_in_seed_and_method_parameters():
    check_seed_group(specs("vae"))
    check_seed_group(specs("beta-vae", seeds=(0,), params=(("beta", 2.0),))
                     + specs("beta-vae", seeds=(3,), params=(("beta", 5.0),)))
    with pytest.raises(ValueError, match="differ only in seed and method parameters; method differ"):
        check_seed_group(specs("vae") + specs("beta-vae", seeds=(7,)))
    with pytest.raises(ValueError, match="lr differ"):
        check_seed_group(specs("vae") + specs("vae", seeds=(7,), lr=1e-3))
    with pytest.raises(ValueError, match="distinct seeds"):
        check_seed_group(specs("vae", seeds=(1, 1)))
    with pytest.raises(ValueError, match="at least one run"):
        check_seed_group([])


def read_history(run_dir):
    return RunView(run_dir).read_history()


def read(path):
    return json.loads(path.read_text())


def test_train_runs_writes_each_members_run_as_train_does(tmp_path, data):
    """Members' folders pass the store's checks, hold slim final weights unless
    keep_checkpoints, and resume (exactly from a full checkpoint, or extended from slim
    weights with the optimiser restarted) as `train` resumes a single run."""
    short = specs("l-vae", log_every=3)
    longer = [dataclasses.replace(spec, steps=9) for spec in short]
    for keep in (True, False):
        out = tmp_path / f"group-{keep}"
        results = train_runs(short, out, data=data, device="cpu", keep_checkpoints=keep,
                              config_extra={"by": "test"})
        assert [(r.seed, r.status, r.step) for r in results] == [(0, "done", 6),
                                                                      (3, "done", 6)]
        for spec in short:
            store = RunView.of(spec, out)
            assert store.state(spec).kind == "done"
            assert ("optimizer" in store.load_checkpoint()) == keep
        results = train_runs(longer, out, data=data, device="cpu", keep_checkpoints=keep)
        assert [(r.status, r.step) for r in results] == [("done", 9), ("done", 9)]
        restarted = [[w for w in r.warnings if "optimiser restarted" in w] for r in results]
        assert all(bool(w) != keep for w in restarted)         # "extended ... restarted"
    assert [(r.status, r.trained) for r in train_runs(longer, out, data=data)] == [("done", 0)] * 2
    train(longer[0], tmp_path / "straight", data=data, device="cpu")
    train(short[0], tmp_path / "extended", data=data, device="cpu")
    train(longer[0], tmp_path / "extended", data=data, device="cpu")
    for grouped, single in (("group-True", "straight"), ("group-False", "extended")):
        got, want = (read_history(longer[0].run_dir(tmp_path / x)) for x in (grouped, single))
        assert [r["step"] for r in got] == [3, 6, 9]
        assert_rows_close(got, want)
    config = read(longer[1].run_dir(tmp_path / "group-True") / "config.json")
    assert config["seed_group"] == [0, 3] and config["precision"] == "fp32"
    assert config["spec"] == longer[1].to_dict() and config["by"] == "test"
    assert read(longer[1].run_dir(tmp_path / "group-True") / "status.json")["history_rows"] == 3


def test_members_with_their_own_beta_equal_their_single_runs(tmp_path, data):
    """The fixed-β̂ ablation runs of a seed group differ in β too: each member keeps its own."""
    runs = [RunSpec(method="beta-vae", dataset="tiny", seed=seed, steps=STEPS, batch_size=BATCH,
                    params=(("beta", beta),), log_every=2, variant="ablation")
            for seed, beta in ((0, 1.5), (3, 6.0))]
    extra = [{"ablation": {"beta_hat": 1.5}}, {"ablation": {"beta_hat": 6.0}}]
    results = train_runs(runs, tmp_path, data=data, device="cpu", member_extra=extra)
    assert [r.status for r in results] == ["done", "done"]
    for spec, result, more in zip(runs, results, extra):
        config = read(result.run_dir / "config.json")
        assert config["ablation"] == more["ablation"] and config["seed_group"] == [0, 3]
        assert config["method_params"]["beta"] == dict(spec.params)["beta"]
        want, _ = single_history(spec, data)
        assert_rows_close(read_history(result.run_dir), want[1::2])


def test_train_runs_trains_members_at_another_step_alone(tmp_path, data):
    runs = specs("vae", seeds=(0, 3, 5, 7), steps=4, log_every=2)
    train(runs[2], tmp_path, data=data, device="cpu")                       # done
    train(dataclasses.replace(runs[3], steps=2), tmp_path, data=data, device="cpu",
          keep_checkpoints=True)                                            # at step 2
    (runs[1].run_dir(tmp_path)).mkdir(parents=True)
    (runs[1].run_dir(tmp_path) / "status.json").write_text("{")             # damaged
    results = train_runs(runs, tmp_path, data=data, device="cpu")
    assert [(r.status, r.step, r.trained) for r in results] == [
        ("done", 4, 4), ("failed", 0, 0), ("done", 4, 0), ("done", 4, 2)]
    assert "damaged run folder" in results[1].reason
    assert "seed_group" not in read(runs[0].run_dir(tmp_path) / "config.json")   # a group of one
    repaired = train_runs(runs, tmp_path, data=data, device="cpu", repair=True)
    assert [(r.status, r.trained) for r in repaired] == [("done", 0), ("done", 4), ("done", 0),
                                                         ("done", 0)]


def test_train_runs_raises_a_conflict_before_writing_anything(tmp_path, data):
    runs = specs("vae", steps=2)
    train(dataclasses.replace(runs[1], batch_size=2), tmp_path, data=data, device="cpu")
    with pytest.raises(RunConflict, match="batch_size"):
        train_runs(runs, tmp_path, data=data, device="cpu")
    assert not RunView.of(runs[0], tmp_path).exists()


def test_train_runs_fails_a_member_alone_in_its_folder(tmp_path, data, monkeypatch):
    step = Engine.step

    def first_member_goes_non_finite_at_step_2(self):
        if self.done_steps == 1 and len(self.members) == 2:
            with torch.no_grad():
                self.members[0].model.encoder.mu.weight.fill_(math.nan)
        return step(self)

    monkeypatch.setattr(Engine, "step", first_member_goes_non_finite_at_step_2)
    runs = specs("vae", log_every=3, checkpoint_every=3)
    failed, done = train_runs(runs, tmp_path, data=data, device="cpu")
    assert (failed.status, failed.step) == ("failed", 3)
    assert failed.reason.startswith("non-finite loss at or before step 3")
    assert "no checkpoint had been written" in failed.reason
    assert (done.status, done.step) == ("done", 6)
    status = read(failed.run_dir / "status.json")
    assert status["status"] == "failed" and status["reason"] == failed.reason
    assert [row["step"] for row in read_history(failed.run_dir)] == [3]
    assert not (failed.run_dir / "model.pt").exists()
    assert [row["step"] for row in read_history(done.run_dir)] == [3, 6]
    assert RunView.of(runs[1], tmp_path).state(runs[1]).kind == "done"


def test_seed_groups_pay_only_on_a_gpu():
    assert not estimate.should_group("cpu", 10)
    assert estimate.should_group("cuda", 10) and not estimate.should_group("cuda", 1)


def test_one_adam_over_stacked_weights_equals_per_member_adams():
    """Adam is elementwise: the claim that lets a GPU group use one fused Adam over stacked
    weights instead of one per member (bench/group.py keeps per-member Adams). Bitwise equal
    on this suite's CPU; the tolerance allows another vector width."""
    torch.manual_seed(0)
    members = [torch.nn.Parameter(torch.randn(33, 17)) for _ in range(4)]
    stacked = torch.nn.Parameter(torch.stack([p.detach() for p in members]))
    singles = [torch.optim.Adam([p], lr=1e-2) for p in members]
    together = torch.optim.Adam([stacked], lr=1e-2)
    for _ in range(5):
        grads = torch.randn(4, 33, 17)
        for p, g, optimiser in zip(members, grads, singles):
            p.grad = g.clone()
            optimiser.step()
        stacked.grad = grads
        together.step()
    torch.testing.assert_close(stacked.detach(), torch.stack([p.detach() for p in members]),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (none on this machine)")
@pytest.mark.parametrize("method", methods.available())
def test_on_cuda_a_member_equals_its_single_run_without_host_syncs(method, data):
    cuda = torch.device("cuda")
    on_gpu = tiny_dsprites_like().to(cuda)
    group = Engine(specs(method), on_gpu, cuda)
    group.step()                                              # warm-up outside the check
    terms = steps_without_host_sync(group.step, 4)
    single = Single(group.specs[1], on_gpu, cuda)
    for _ in range(5):
        want = single.row(single.step())
    # cuDNN convolutions use TF32 by default (rounding ~1e-3), differently grouped and single
    assert_rows_close([group.rows(terms)[1]], [want], rel=1e-2)
