"""Seed groups (bench/group.py): member k of a stacked group follows seed k's single run.

Tolerance: every history value of every member within rtol 1e-4 (plus atol 1e-5 for values
near zero) of the single run over 20 steps, for every registered method; the RNG and data
generator states exactly equal; weights within Adam's bound lr·steps element-wise (an element
whose gradient is pure rounding noise can move by up to lr a step either way) and within 1e-6
on average. The only difference is float rounding of the stacked (grouped) convolutions;
measured worst relative differences of history values: 2e-6 to 3e-5 depending on the method.
"""
import csv
import dataclasses
import json
import math

import pytest
import torch

from disentbench import methods
from disentbench.bench import group as group_module
from disentbench.bench.group import GroupTrainer, check_seed_group, train_group
from disentbench.bench.spec import RunSpec
from disentbench.bench.train import Trainer, train
from tests.helpers import tiny_dsprites_like

CPU = torch.device("cpu")
SEEDS = (0, 3)
STEPS = 20


@pytest.fixture(scope="module")
def data():
    return tiny_dsprites_like()


def specs(method, seeds=SEEDS, steps=STEPS):
    return [RunSpec(method=method, dataset="tiny", seed=s, steps=steps, batch_size=8)
            for s in seeds]


def single_history(spec, data, steps=STEPS):
    trainer = Trainer(spec, data, CPU)
    return [trainer.row(trainer.step()) for _ in range(steps)], trainer


def assert_rows_close(got, want, rel=1e-4):
    assert [r.keys() for r in got] == [r.keys() for r in want]
    for g, w in zip(got, want):
        for name in w:
            assert g[name] == pytest.approx(w[name], rel=rel, abs=1e-5), (g["step"], name)


@pytest.mark.parametrize("method", methods.available())
def test_member_equals_its_single_run(method, data):
    group = GroupTrainer(specs(method), data, CPU)
    histories = [[] for _ in SEEDS]
    for _ in range(STEPS):
        for k, row in enumerate(group.rows(group.step())):
            histories[k].append(row)
    for k, spec in list(enumerate(group.specs))[1:]:      # the first member: see the tests below
        want, single = single_history(spec, data)
        assert_rows_close(histories[k], want)
        state, single_state = group.member_state_dict(k), single.state_dict()
        assert state.keys() == single_state.keys() and state["step"] == STEPS
        assert torch.equal(state["rng_cpu"], single_state["rng_cpu"])
        assert torch.equal(state["generator"], single_state["generator"])
        for name, value in single_state["model"].items():
            difference = (state["model"][name] - value).abs()
            # Adam moves an element whose gradient is rounding noise by up to lr per step
            assert difference.max() <= spec.lr * STEPS and difference.mean() < 1e-6, name


def test_a_saved_member_resumes_alone_as_its_single_run(data):
    spec = specs("l-vae", steps=10)
    group = GroupTrainer(spec, data, CPU)
    for _ in range(5):
        group.step()
    resumed = Trainer(spec[1], data, CPU)
    resumed.load_state_dict(group.member_state_dict(1))
    got = [resumed.row(resumed.step()) for _ in range(5)]
    want, _ = single_history(spec[1], data, steps=10)
    assert_rows_close(got, want[5:])


def test_a_non_finite_member_fails_alone(data):
    group = GroupTrainer(specs("beta-vae", seeds=(0, 3, 5)), data, CPU)
    histories = {s: [] for s in (0, 3, 5)}
    for step in range(1, 11):
        if step == 3:
            with torch.no_grad():
                group.members[1].model.encoder.mu.weight.fill_(math.nan)
        rows = group.rows(group.step())
        for m, row in zip(group.members, rows):
            histories[m.spec.seed].append(row)
        if step % 5 == 0:
            group.drop(group.failures(rows))
    assert list(group.failed) == [3] and "non-finite loss" in group.failed[3]
    assert [m.spec.seed for m in group.members] == [0, 5]
    for k, seed in ((0, 0), (2, 5)):
        want, _ = single_history(specs("beta-vae", seeds=(0, 3, 5))[k], data, steps=10)
        assert_rows_close(histories[seed], want)


def test_a_diverging_member_fails_alone_with_its_methods_reason(data):
    group = GroupTrainer(specs("l-vae-noreg"), data, CPU)
    with torch.no_grad():
        group.members[0].method.log_var.fill_(20.0)            # σ² = e^20 > 1e4
    group.drop(group.failures(group.rows(group.step())))
    assert list(group.failed) == [0] and "left [0.0001, 10000]" in group.failed[0]
    assert [m.spec.seed for m in group.members] == [3]
    group.step()                                               # the other member goes on


def test_a_group_holds_runs_that_differ_only_in_seed():
    check_seed_group(specs("vae"))
    with pytest.raises(ValueError, match="differ only in seed; method differ"):
        check_seed_group(specs("vae") + specs("beta-vae", seeds=(7,)))
    with pytest.raises(ValueError, match="distinct seeds"):
        check_seed_group(specs("vae", seeds=(1, 1)))
    with pytest.raises(ValueError, match="at least one run"):
        check_seed_group([])


def read_history(run_dir):
    with open(run_dir / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_train_group_writes_each_members_own_run_and_resumes_it(tmp_path, data):
    short = [RunSpec(method="l-vae", dataset="tiny", seed=s, steps=6, batch_size=8, log_every=3)
             for s in SEEDS]
    results = train_group(short, tmp_path / "group", data=data, device="cpu")
    assert [(r.spec.seed, r.status, r.step) for r in results] == [(0, "done", 6), (3, "done", 6)]
    longer = [dataclasses.replace(spec, steps=12) for spec in short]
    results = train_group(longer, tmp_path / "group", data=data, device="cpu")
    assert [(r.status, r.step) for r in results] == [("done", 12), ("done", 12)]
    assert [r.status for r in train_group(longer, tmp_path / "group", data=data)] == ["skipped"] * 2
    train(longer[1], tmp_path / "single", data=data, device="cpu")
    got, want = (read_history(longer[1].run_dir(tmp_path / x)) for x in ("group", "single"))
    assert_rows_close(got, want)
    config = json.loads((results[1].run_dir / "config.json").read_text())
    assert config["seed_group"] == [0, 3] and config["precision"] == "fp32"
    assert config["spec"] == longer[1].to_dict()


def test_train_group_fails_a_member_alone_in_its_folder(tmp_path, data, monkeypatch):
    def first_member_fails_at_step_3(self, rows):
        return {0: "forced failure"} if rows[0]["step"] == 3 and len(rows) == 2 else {}

    monkeypatch.setattr(GroupTrainer, "failures", first_member_fails_at_step_3)
    runs = [RunSpec(method="vae", dataset="tiny", seed=s, steps=6, batch_size=8, log_every=3)
            for s in SEEDS]
    failed, done = train_group(runs, tmp_path, data=data, device="cpu")
    assert (failed.status, failed.step, failed.reason) == ("failed", 3, "forced failure")
    assert (done.status, done.step) == ("done", 6)
    status = json.loads((failed.run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["reason"] == "forced failure"
    assert [row["step"] for row in read_history(failed.run_dir)] == [3]
    assert [row["step"] for row in read_history(done.run_dir)] == [3, 6]


def test_seed_groups_pay_only_on_a_gpu():
    assert not group_module.should_group("cpu", 10)
    assert group_module.should_group("cuda", 10) and not group_module.should_group("cuda", 1)


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
@pytest.mark.parametrize("method", ["l-vae", "factor-vae"])
def test_on_cuda_a_member_equals_its_single_run_without_host_syncs(method, data):
    cuda = torch.device("cuda")
    on_gpu = tiny_dsprites_like().to(cuda)
    group = GroupTrainer(specs(method), on_gpu, cuda)
    terms = group.step()                                      # warm-up outside the check
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(4):
            terms = group.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    single = Trainer(group.specs[1], on_gpu, cuda)
    for _ in range(5):
        want = single.row(single.step())
    # cuDNN convolutions use TF32 by default (rounding ~1e-3), differently grouped and single
    assert_rows_close([group.rows(terms)[1]], [want], rel=1e-2)
