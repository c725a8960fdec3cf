"""The grid: methods x parameter settings x datasets x seeds expanded into RunSpecs, and the
fixed-β̂ ablation's runs.

The ablation (the L-VAE paper's Table 3) trains `beta-vae` with β fixed to the final β̂ of the
L-VAE run of the same dataset and seed, with the same settings, under its own label: a derived
run (bench/plan.py `DerivedRun`), `FIXED_BETA_HAT`.
"""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

from disentbench import methods
from disentbench.bench.plan import DerivedRun
from disentbench.bench.profiles import FACTORS, MAX_RUNS, MAX_SEEDS
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import RunDamaged, RunView, Status

ABLATION_SOURCE = "l-vae"
ABLATION_METHOD = "beta-vae"
ABLATION_LABEL = "beta-vae-fixed-beta-hat"


class TooLarge(Exception):
    """The grid passes MAX_SEEDS or MAX_RUNS; the message says how to split it."""


def check_size(seeds: int, method_names, dataset_names, ablation: bool,
               params: dict | None = None) -> None:
    """TooLarge where `seeds` or the grid's run count (every method's parameter settings,
    `params` as `expand` takes it, and the fixed-β̂ ablation's runs) pass the limits; costs
    nothing, so it runs before the grid is expanded."""
    if seeds > MAX_SEEDS:
        raise TooLarge(f"--seeds {seeds}: at most {MAX_SEEDS} seeds (seeds 0 to {MAX_SEEDS - 1}); "
                       f"ask for fewer")
    settings = sum(len((params or {}).get(method) or [{}]) for method in method_names)
    extra = len(dataset_names) * seeds if ablation and ABLATION_SOURCE in method_names else 0
    runs = settings * len(dataset_names) * seeds + extra
    if runs > MAX_RUNS:
        raise TooLarge(f"the grid has {runs} runs ({settings} method settings x "
                       f"{len(dataset_names)} datasets x {seeds} seeds"
                       f"{f' + {extra} fixed-beta-hat ablation runs' if extra else ''}); at most "
                       f"{MAX_RUNS} per command: split it over --methods, --datasets or --seeds")


def sweep(values: dict[str, list]) -> list[dict]:
    """The settings of one method: the product of its parameters' value lists, the first
    parameter varying slowest ({"a": [1, 2], "b": [3]} -> [{"a": 1, "b": 3}, {"a": 2, "b": 3}])."""
    names = list(values)
    return [dict(zip(names, combination))
            for combination in itertools.product(*(values[n] for n in names))]


def expand(method_names, dataset_names, seeds: int, settings: dict, params: dict,
           num_factors: dict) -> list[RunSpec]:
    """One RunSpec per dataset x method x parameter setting x seed (in that order). `settings`
    holds steps, batch_size, latent_dim (an int or FACTORS), lr, log_every, checkpoint_every;
    `params` maps a method to its list of parameter settings (`sweep`; a method not in it runs
    its defaults once; parameters equal to the default are dropped, as they name the same run,
    and settings that name the same run once); `num_factors` maps a dataset to its number of
    factors, 0 for none (used for latent_dim = FACTORS; a dataset without factors, CelebA, gets
    the usual 10)."""
    specs = []
    for dataset in dataset_names:
        latent_dim = settings["latent_dim"]
        if latent_dim == FACTORS:
            latent_dim = num_factors[dataset] or 10
        for method in method_names:
            chosen = dict.fromkeys(tuple(sorted(methods.non_default(method, setting).items()))
                                   for setting in params.get(method) or [{}])
            specs.extend(RunSpec(method=method, dataset=dataset, seed=seed,
                                 steps=settings["steps"], batch_size=settings["batch_size"],
                                 latent_dim=latent_dim, lr=settings["lr"], params=setting,
                                 log_every=settings["log_every"],
                                 checkpoint_every=settings["checkpoint_every"])
                         for setting in chosen for seed in range(seeds))
    return specs


def settings_per_method(specs: list[RunSpec]) -> dict[str, int]:
    """The number of parameter settings of each method among `specs`, in their order."""
    found: dict[str, set] = {}
    for spec in specs:
        found.setdefault(spec.method, set()).add(spec.params)
    return {method: len(settings) for method, settings in found.items()}


def is_ablation_source(spec: RunSpec) -> bool:
    """Whether `spec` is a run the fixed-β̂ ablation takes its β from."""
    return spec.method == ABLATION_SOURCE and not spec.params and not spec.variant


def ablation_spec(source: RunSpec, beta_hat: float) -> RunSpec:
    """β-VAE with β = `beta_hat`, the seed and settings of the L-VAE run `source`."""
    return dataclasses.replace(source, method=ABLATION_METHOD, params=(("beta", beta_hat),),
                               variant=ABLATION_LABEL)


def ablation_record(source: RunSpec, beta_hat: float, out) -> dict:
    """What the ablation run's config.json says about where its β came from."""
    return {"ablation": {"of": source.label, "beta_hat": beta_hat,
                         "source_run": source.run_dir(out).relative_to(out).as_posix()}}


def fixed_beta_hat(source: RunSpec, out) -> tuple[RunSpec, dict] | None:
    """The ablation run of the L-VAE run `source` and its config.json record, once `source` is
    done (its status says so, and its history, checked against it, ends with a β̂)."""
    view = RunView.of(source, out)
    status = view.read_status()
    if status.get("status") != Status.DONE or status.get("step", 0) < source.steps:
        return None
    try:
        history = view.read_history()
    except RunDamaged:
        return None
    beta_hat = history[-1].get("beta_hat") if history else None
    if beta_hat is None:
        return None
    return ablation_spec(source, beta_hat), ablation_record(source, beta_hat, Path(out))


def example_fixed_beta_hat(source: RunSpec) -> RunSpec:
    """A run like the ablation run of `source` (β = 1), before `source` is done."""
    return ablation_spec(source, 1.0)


FIXED_BETA_HAT = DerivedRun(ABLATION_LABEL, "L-VAE", is_ablation_source, fixed_beta_hat,
                            example_fixed_beta_hat)


def run_folders(specs, out, derived=()):
    """Every run folder the grid writes under `out`: the specs' and their derived runs' (the
    fixed-β̂ run's folder does not depend on the β̂: its label is the variant's)."""
    for spec in specs:
        yield spec.run_dir(out)
        yield from (rule.example(spec).run_dir(out) for rule in derived if rule.applies(spec))
