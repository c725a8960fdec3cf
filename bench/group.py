"""Seed groups: runs that differ only in seed (and method parameters), trained together as one
stacked model.

Every member is a full `Trainer` (bench/train.py) built exactly as a single run builds it (the
same `torch.manual_seed(seed)`, network, method, optimiser and data generator), so each member
keeps its own initialisation, data stream, optimiser state and method state (σ's, controllers,
FactorVAE's discriminator and its Adam). One group step then:
- samples each member's batch from its own generator;
- stacks the members' weights (`torch.stack`, differentiable, so gradients reach each member's
  own parameters) and runs the encoder and decoder once for all members with
  `torch.func.vmap` over `functional_call` (batched convolutions and matrix products);
- draws each member's reparameterisation noise from that member's own copy of the global RNG
  (captured right after its Trainer was built: exactly the stream its single run would use), and
  lets FactorVAE's `after_step` (second batch, noise, permutation) use that copy too;
- computes each member's loss with its own method, back-propagates their sum (the members share
  no weight, so member k receives exactly the gradient of its own loss) and steps each member's
  own Adam and method.
So member k follows its single run up to float rounding: the stacked convolutions sum in another
order than single ones (tests/test_group.py bounds the difference). Adam is elementwise, so a
per-member Adam and one Adam over the stacked weights compute the same update; per-member Adams
are kept because they give each member the exact optimiser state dict of its single run.

A member that goes non-finite or diverges fails alone (`drop`); the others go on.
`member_state_dict(k)` is what `Trainer.state_dict()` of that seed's single run would hold, so
a member is saved as its own run folder and resumes or is evaluated alone. `train_group` trains a
group into the members' own run folders through the run store, with one `bench.train.Session`
per member (the files and checks of `train`); `should_group` is the `--group-seeds auto` rule.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import traceback

import torch
from torch.func import functional_call, vmap

from disentbench.bench import data as datasets
from disentbench.bench import precision as precisions
from disentbench.bench.nets import Output
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import RunStore
from disentbench.bench.train import RunResult, Session, Trainer, pick_device, row_values, train


# What the members of a group may differ in: the seed, and the method's parameters (they never
# change the network; each member has its own method), so that the fixed-β̂ ablation runs of a
# seed group of L-VAE runs, each with its own β, train as a group too.
MEMBER_FIELDS = ("seed", "params")
# Members of a `--group-seeds auto` group on a GPU: the H200 measured a stacked group of
# 10 at 151k images/s and of 50 at 163k (bf16, one CUDA graph): 10 reaches most of it.
AUTO_SIZE = 10


def check_seed_group(specs: list[RunSpec]) -> None:
    """ValueError unless `specs` are at least one run, with distinct seeds, equal in all but
    the seed and the method parameters."""
    if not specs:
        raise ValueError("a seed group needs at least one run")
    first = group_key(specs[0])
    for spec in specs[1:]:
        other = group_key(spec)
        if other != first:
            diff = ", ".join(k for k in first if first[k] != other.get(k))
            raise ValueError(f"runs of a seed group may differ only in seed and method "
                             f"parameters; {diff} differ")
    seeds = [spec.seed for spec in specs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"a seed group needs distinct seeds, got {seeds}")


def group_key(spec: RunSpec) -> dict:
    """What every member of a group shares: the spec without `MEMBER_FIELDS`."""
    return {k: v for k, v in spec.to_dict().items() if k not in MEMBER_FIELDS}


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(device: torch.device, state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


class GroupTrainer:
    """Trains runs that differ only in seed (and method parameters) as one stacked model; see
    the module docstring.

    `members` are the live members' Trainers, in the order of `specs` minus dropped ones;
    `failed` maps a dropped member's seed to its reason; `nonfinite_at_rows[k]` says whether
    member k's loss had gone non-finite by the last `rows`.
    """

    def __init__(self, specs: list[RunSpec], data, device, precision: str = "fp32"):
        check_seed_group(specs)
        self.device = torch.device(device)
        self.precision = precisions.resolve(precision, self.device)
        self.members: list[Trainer] = []
        self.rng: list[dict] = []                  # each member's copy of the global RNG
        for spec in specs:
            self.members.append(Trainer(spec, data, self.device, self.precision))
            self.rng.append(_rng_state(self.device))
        template = copy.deepcopy(self.members[0].model).to("meta")
        self._encode = vmap(lambda p, x: functional_call(template.encoder, p, (x,)))
        self._decode = vmap(lambda p, z: functional_call(template.decoder, p, (z,)))
        self.failed: dict[int, str] = {}
        self.nonfinite_at_rows: list[bool] = []

    @property
    def specs(self) -> list[RunSpec]:
        return [m.spec for m in self.members]

    @property
    def done_steps(self) -> int:
        return self.members[0].done_steps if self.members else 0

    @contextlib.contextmanager
    def member_rng(self, k: int):
        """Run a block on member k's copy of the global RNG (saved back afterwards)."""
        _set_rng_state(self.device, self.rng[k])
        try:
            yield
        finally:
            self.rng[k] = _rng_state(self.device)

    def _stacked(self, part: str) -> dict[str, torch.Tensor]:
        named = [dict(getattr(m.model, part).named_parameters()) for m in self.members]
        return {name: torch.stack([n[name] for n in named]) for name in named[0]}

    def forward(self, x: torch.Tensor) -> Output:
        """All members' outputs, stacked (k, n, ...), in fp32; x is (k, n, C, H, W)."""
        with precisions.autocast(self.precision, self.device):
            mu, logvar = self._encode(self._stacked("encoder"), x)
            noise = []
            for k in range(len(self.members)):
                with self.member_rng(k):
                    noise.append(torch.randn_like(mu[k]))
            z = mu + torch.stack(noise) * torch.exp(0.5 * logvar)
            logits = self._decode(self._stacked("decoder"), z)
        return Output(*(t.float() for t in (mu, logvar, z, logits)))

    def step(self) -> list[dict]:
        """One optimiser update of every member; returns each member's loss terms."""
        if not self.members:
            raise RuntimeError("every member of this seed group has failed")
        xs = [m.sample_batch() for m in self.members]
        out = self.forward(torch.stack(xs))
        outs, terms = [Output(*(t[k] for t in out)) for k in range(len(xs))], []
        for k, m in enumerate(self.members):
            with self.member_rng(k):
                terms.append(m.method.loss(xs[k], outs[k], m.done_steps))
            m.posterior = outs[k].mu.detach(), outs[k].logvar.detach()
            m.optimizer.zero_grad(set_to_none=True)
        torch.stack([t["loss"] for t in terms]).sum().backward()
        for k, m in enumerate(self.members):
            m.optimizer.step()
            with self.member_rng(k):
                m.method.after_step(xs[k], outs[k], terms[k], m.done_steps)
            m.nonfinite |= ~torch.isfinite(terms[k]["loss"].detach())
            m.done_steps += 1
        return terms

    def rows(self, terms: list[dict]) -> list[dict]:
        """One history row per member (as `Trainer.row` would write it), with one host sync."""
        values = [row_values(t, m.method, m.posterior) for t, m in zip(terms, self.members)]
        flat = [v.float().to(self.device) for vs in values for v in vs.values()]
        flat += [m.nonfinite.float() for m in self.members]
        numbers = torch.stack(flat).tolist()
        rows, at = [], 0
        for m, vs in zip(self.members, values):
            rows.append({"step": m.done_steps, **dict(zip(vs, numbers[at:at + len(vs)]))})
            at += len(vs)
        self.nonfinite_at_rows = [bool(v) for v in numbers[at:]]
        return rows

    def drop(self, failures: dict[int, str]) -> list[Trainer]:
        """Remove failed members (index -> reason); the others go on. Returns the dropped."""
        dropped = [self.members[k] for k in sorted(failures)]
        for k in sorted(failures, reverse=True):
            self.failed[self.members[k].spec.seed] = failures[k]
            del self.members[k], self.rng[k]
        return dropped

    def member_state_dict(self, k: int) -> dict:
        """Member k's state exactly as `Trainer.state_dict()` of its single run holds it."""
        state = self.members[k].state_dict()
        state["rng_cpu"] = self.rng[k]["cpu"].clone()
        if self.device.type == "cuda":
            state["rng_cuda"] = [s.clone() for s in state["rng_cuda"]]
            state["rng_cuda"][self.device.index or 0] = self.rng[k]["cuda"].clone()
        return state

    def attach(self, k: int, session: Session) -> None:
        """Attach member k to its run's session, resumed from the run's checkpoint if any (a
        single run's or a member's: they hold the same state)."""
        session.attach(self.members[k])
        if session.state.checkpoint:
            self.rng[k] = _rng_state(self.device)


def should_group(device, n_members: int) -> bool:
    """The device rule of `--group-seeds auto`: seed groups may pay on a GPU, never on a CPU.

    On a GPU one small run leaves the device idle (launch-bound): the issue's H200 measured
    12k images/s for one run and 66k for a stacked group of 10 in fp32; the runner confirms the
    rule on the device with a timed probe (bench/runner.py `group_size`). On a CPU the stacked
    (grouped) convolutions are no faster than single models: on this suite's 2-core Xeon (1
    thread, batch 64, busy machine) single 145-175 images/s, group of 2 161, group of 4 101 in
    fp32; in bf16 single 170-218, group of 2 127, group of 4 100. There, processes (one per
    core) are the parallelism.
    """
    return torch.device(device).type == "cuda" and n_members > 1


def train_group(specs: list[RunSpec], out, data=None, device=None, progress=None, *,
                keep_checkpoints: bool = False, repair: bool = False, retry_failed: bool = False,
                config_extra: dict | None = None, precision: str = "fp32",
                member_extra: list[dict] | None = None) -> list[RunResult]:
    """Train runs that differ only in seed (and method parameters) as one group, each into its
    own run folder under `out` through the run store, exactly as `train` would (the same files,
    checks, resume, slim final checkpoint unless `keep_checkpoints`), so every member resumes,
    is evaluated and is reported alone. Same keyword arguments as `train`, and `member_extra`:
    one more config.json dict per spec (e.g. an ablation run's record); config.json also
    records "seed_group" (the grouped seeds). Returns one RunResult per spec, in order.

    New and resumable runs at the most common step train as the group; the others (finished,
    failed, damaged, or at another step) and groups of one go through `train` alone afterwards.
    A member that goes non-finite or diverges fails alone; an exception in the stacked step
    fails every live member with its reason. RunConflict is raised before anything is written
    if a folder holds a different run. `progress(n)` is called with newly completed steps summed
    over the members. A member's "seconds" are the group's (the members train together).
    """
    check_seed_group(specs)
    extras = [{**(config_extra or {}), **more} for more in (member_extra or [{}] * len(specs))]
    stores = [RunStore.of(spec, out) for spec in specs]
    states = [store.state(spec) for spec, store in zip(specs, stores)]   # RunConflict first
    device = pick_device(device)
    precision = precisions.resolve(precision, device)
    ready = [k for k, state in enumerate(states) if state.kind in ("new", "resumable")]
    steps = [states[k].step for k in ready]
    common = max(steps, key=steps.count) if steps else 0
    grouped = [k for k in ready if states[k].step == common]
    results = {}
    if len(grouped) > 1:
        seeds = {"seed_group": [specs[k].seed for k in grouped]}
        sessions = {specs[k].seed: Session(specs[k], stores[k], states[k], device, precision,
                                           {**extras[k], **seeds}) for k in grouped}
        results = _train_members([specs[k] for k in grouped], sessions, data, device, progress,
                                 keep_checkpoints, precision)
    for spec, extra in zip(specs, extras):
        if spec.seed not in results:
            results[spec.seed] = train(spec, out, data=data, device=device, progress=progress,
                                       keep_checkpoints=keep_checkpoints, repair=repair,
                                       retry_failed=retry_failed, config_extra=extra,
                                       precision=precision)
    return [results[spec.seed] for spec in specs]


def _train_members(specs: list[RunSpec], sessions: dict[int, Session], data, device, progress,
                   keep_checkpoints: bool, precision: str) -> dict[int, RunResult]:
    """The loop of `train` for a group whose sessions have begun: results by seed."""
    group, results = None, {}

    def unfinished():
        """(seed, session, step) of every member without a result yet."""
        at = {m.spec.seed: m.done_steps for m in group.members} if group else {}
        return [(s.seed, sessions[s.seed], at.get(s.seed, sessions[s.seed].state.step))
                for s in specs if s.seed not in results]
    try:
        if data is None:
            data = datasets.load(specs[0].dataset).to(device)
        group = GroupTrainer(specs, data, device, precision)
        for k, m in enumerate(group.members):
            group.attach(k, sessions[m.spec.seed])
        spec = specs[0]
        for m in group.members:
            m.model.train()
        last_reported = group.done_steps
        while group.members and group.done_steps < spec.steps:
            terms = group.step()
            n = group.done_steps
            if n % spec.log_every == 0 or n == spec.steps:
                rows = group.rows(terms)
                failures = {k: reason for k, (m, row, nonfinite) in
                            enumerate(zip(group.members, rows, group.nonfinite_at_rows))
                            if (reason := sessions[m.spec.seed].log(m, row, nonfinite))}
                for m in group.drop(failures):
                    seed = m.spec.seed
                    results[seed] = sessions[seed].end(m.done_steps, group.failed[seed])
                if progress:
                    progress((n - last_reported) * (len(group.members) + len(failures)))
                    last_reported = n
            if n % spec.checkpoint_every == 0 or n == spec.steps:
                for k, m in enumerate(group.members):
                    sessions[m.spec.seed].save_checkpoint(
                        m, keep_checkpoints, functools.partial(group.member_state_dict, k))
    except KeyboardInterrupt:
        for _, session, step in unfinished():
            session.interrupted(step)
        raise
    except Exception as err:                   # the stacked step failed: every live member
        failure, error = f"{type(err).__name__}: {err}", traceback.format_exc()
    else:
        failure, error = None, None
    for seed, session, step in unfinished():
        results[seed] = session.end(step, failure, error)
    return results
