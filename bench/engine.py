"""The engine: k ≥ 1 runs trained in lockstep, one optimiser update of every member per `step`.

A single run is a group of one. Members are runs that differ only in seed and method
parameters (`check_seed_group`): with k > 1 their networks are stacked and run as one batched
model (`torch.func.vmap` over the members' parameters, the grouped convolutions a GPU needs to be
busy); with k = 1 the network runs as it is. Each member keeps what its single run would have:
its own network, method, Adam, data generator and copy of the global RNG, swapped in around every
draw (`member_rng`), so member k follows seed k's single run up to the float rounding of the
stacked convolutions (tests/test_group.py states the tolerance). Adam is elementwise, so one
Adam per member computes what one Adam over the stacked weights would.

No host sync in a step: the loss terms, the non-finite flag and the step count the methods'
schedules read (`Member.step_count`, a device tensor) stay on the device; `rows` reads every
member's logging row back with one sync. A member that goes non-finite or diverges is dropped
alone (`drop`); `Member.state_dict()` is its single run's resume state, so it is saved, resumed
and evaluated as its own run. The training loop around it, with logging, checkpoints, failure
and resume, is bench/train.py.
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch.func import functional_call, vmap

from disentbench import methods
from disentbench.bench import diagnostics
from disentbench.bench import precision as precisions
from disentbench.bench.nets import VAE
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import RunDamaged
from disentbench.methods.base import Output, TrainContext, reparameterise

# What the members of a group may differ in: the seed, and the method's parameters (they never
# change the network; each member has its own method), so that the fixed-β̂ ablation runs of a
# group of L-VAE runs, each with its own β, train as a group too.
MEMBER_FIELDS = ("seed", "params")


def pick_device(name: str | None = None) -> torch.device:
    """`name` if given, else CUDA when present, else CPU (chosen at run time)."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


def rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(device: torch.device, state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def row_values(terms: dict, method, posterior) -> dict[str, torch.Tensor]:
    """The 0-d tensors of one history row, still on the device: the loss terms, the latent
    activity of the step's `posterior` (mu, logvar) (bench/diagnostics.py), then the method's
    logged values (vectors split into name_0, name_1, ...)."""
    values = {k: v.detach().reshape(()) for k, v in terms.items()}
    values.update(diagnostics.latent_activity(*posterior))
    for name, value in method.logged().items():
        value = torch.as_tensor(value).detach()
        if value.numel() == 1:
            values[name] = value.reshape(())
        else:
            values.update({f"{name}_{i}": v for i, v in enumerate(value.reshape(-1))})
    return values


class Member:
    """One run in the engine: network, method, optimiser, data generator, its copy of the
    global RNG, and where it is (`done_steps` on the host, `step_count` on the device)."""

    def __init__(self, spec: RunSpec, data, device: torch.device, layout):
        self.spec, self.data, self.device, self.layout = spec, data, device, layout
        torch.manual_seed(spec.seed)
        self.model = VAE(data.num_channels, spec.latent_dim).to(device, memory_format=layout)
        self.method = methods.create(spec.method, **dict(spec.params)).to(device)
        self.generator = torch.Generator(device=data.device).manual_seed(spec.seed)
        # bind before the optimiser: a method may create parameters that depend on the run
        # (FactorVAE's discriminator, L-VAE-perdim's per-dimension σ need the latent size)
        self.method.bind(TrainContext(model=self.model, latent_dim=spec.latent_dim,
                                      dataset_size=len(data), steps=spec.steps,
                                      sample_batch=self.sample_batch, device=device))
        self.optimizer = torch.optim.Adam(
            [{"params": list(self.model.parameters())}, *self.method.param_groups(spec.lr)],
            lr=spec.lr)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.done_steps = 0
        self.step_count = torch.zeros((), dtype=torch.long, device=device)
        self.rng = rng_state(device)
        self.posterior = None                  # (mu, logvar) of the last step, for its row

    @property
    def dataset_size(self) -> int:
        return len(self.data)

    def sample_batch(self) -> torch.Tensor:
        batch = self.data.sample_batch(self.spec.batch_size, self.generator)
        x = self.data.to_float(batch.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=self.layout)

    def advance(self, terms: dict) -> None:
        """Count one finished update whose loss terms are `terms`."""
        self.nonfinite |= ~torch.isfinite(terms["loss"].detach())
        self.done_steps += 1
        self.step_count += 1

    def state_dict(self) -> dict:
        """Everything an exact resume needs (the RNG is this member's copy)."""
        rng_cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        if self.device.type == "cuda":
            rng_cuda[self.device.index or 0] = self.rng["cuda"].clone()
        return {"model": self.model.state_dict(), "method": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "rng_cpu": self.rng["cpu"].clone(), "rng_cuda": rng_cuda,
                "step": self.done_steps}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.rng["cpu"] = state["rng_cpu"].clone()
        if self.device.type == "cuda" and state["rng_cuda"]:
            self.rng["cuda"] = state["rng_cuda"][self.device.index or 0].clone()
        self._at(state["step"])

    def weights_state_dict(self) -> dict:
        """What a finished run keeps: the network and the method's state without its
        resume-only extra state (an optimiser of its own, e.g. FactorVAE's discriminator Adam)."""
        method = {k: v for k, v in self.method.state_dict().items()
                  if not k.endswith("_extra_state")}
        return {"model": self.model.state_dict(), "method": method, "step": self.done_steps}

    def load_weights(self, state: dict) -> None:
        """Continue from `weights_state_dict()`: fresh optimisers, random streams reseeded from
        (seed, step), so that the batches differ from the first steps'."""
        self.model.load_state_dict(state["model"])
        missing, unexpected = self.method.load_state_dict(state["method"], strict=False)
        if unexpected or any(not k.endswith("_extra_state") for k in missing):
            raise RunDamaged(f"the checkpoint's method state does not fit {self.spec.method} "
                             f"(missing {missing}, unexpected {unexpected})")
        self._at(state["step"])
        seed = self.spec.seed + (self.done_steps << 32)
        self.generator.manual_seed(seed)
        torch.manual_seed(seed)
        self.rng = rng_state(self.device)

    def _at(self, step: int) -> None:
        self.done_steps = step
        self.step_count.fill_(step)


class Engine:
    """Trains `specs` (a seed group, `check_seed_group`; one spec for a single run) on `data`
    in `precision` (bench/precision.py). `members` are the live members in the order of
    `specs`; `failed` maps a dropped member's seed to its reason; `nonfinite_at_rows[k]` says
    whether member k's loss had gone non-finite by the last `rows`."""

    def __init__(self, specs: list[RunSpec], data, device, precision: str = "fp32"):
        check_seed_group(specs)
        self.device = torch.device(device)
        self.precision = precisions.resolve(precision, self.device)
        layout = precisions.memory_format(self.precision, self.device)
        self.members = [Member(spec, data, self.device, layout) for spec in specs]
        self.failed: dict[int, str] = {}
        self.nonfinite_at_rows: list[bool] = []
        if len(specs) > 1:
            template = copy.deepcopy(self.members[0].model).to("meta")
            self._encode = vmap(lambda p, x: functional_call(template.encoder, p, (x,)))
            self._decode = vmap(lambda p, z: functional_call(template.decoder, p, (z,)))

    @property
    def specs(self) -> list[RunSpec]:
        return [m.spec for m in self.members]

    @property
    def done_steps(self) -> int:
        return self.members[0].done_steps if self.members else 0

    @contextlib.contextmanager
    def member_rng(self, k: int):
        """Run a block on member k's copy of the global RNG (saved back afterwards)."""
        member = self.members[k]
        set_rng_state(self.device, member.rng)
        try:
            yield
        finally:
            member.rng = rng_state(self.device)

    def forward(self, xs: list[torch.Tensor]) -> list[Output]:
        """Every member's output on its batch, in fp32 (each member's noise from its RNG)."""
        if len(self.members) == 1:
            with self.member_rng(0):
                return [precisions.forward(self.members[0].model, xs[0], self.precision)]
        with precisions.autocast(self.precision, self.device):
            mu, logvar = self._encode(self._stacked("encoder"), torch.stack(xs))
            noise = []
            for k in range(len(self.members)):
                with self.member_rng(k):
                    noise.append(torch.randn_like(mu[k]))
            z = reparameterise(mu, logvar, torch.stack(noise))
            logits = self._decode(self._stacked("decoder"), z)
        out = [t.float() for t in (mu, logvar, z, logits)]
        return [Output(*(t[k] for t in out)) for k in range(len(xs))]

    def _stacked(self, part: str) -> dict[str, torch.Tensor]:
        named = [dict(getattr(m.model, part).named_parameters()) for m in self.members]
        return {name: torch.stack([n[name] for n in named]) for name in named[0]}

    def step(self) -> list[dict]:
        """One optimiser update of every member; returns each member's loss terms."""
        if not self.members:
            raise RuntimeError("every member of this seed group has failed")
        xs = [m.sample_batch() for m in self.members]
        outs, terms = self.forward(xs), []
        for k, m in enumerate(self.members):
            with self.member_rng(k):
                terms.append(m.method.loss(xs[k], outs[k], m.step_count))
            m.posterior = outs[k].mu.detach(), outs[k].logvar.detach()
            m.optimizer.zero_grad(set_to_none=True)
        total = terms[0]["loss"] if len(terms) == 1 else torch.stack([t["loss"] for t in terms]).sum()
        total.backward()
        for k, m in enumerate(self.members):
            m.optimizer.step()
            with self.member_rng(k):
                m.method.after_step(xs[k], outs[k], terms[k], m.step_count)
            m.advance(terms[k])
        return terms

    def rows(self, terms: list[dict]) -> list[dict]:
        """One history row per member, with one host sync (which also reads the non-finite
        flags into `nonfinite_at_rows`)."""
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

    def drop(self, failures: dict[int, str]) -> list[Member]:
        """Remove failed members (index -> reason); the others go on. Returns the dropped."""
        dropped = [self.members[k] for k in sorted(failures)]
        for k in sorted(failures, reverse=True):
            self.failed[self.members[k].spec.seed] = failures[k]
            del self.members[k]
        return dropped
