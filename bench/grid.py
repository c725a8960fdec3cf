"""The grid: methods x datasets x seeds expanded into RunSpecs, and the fixed-β̂ ablation's runs.

The ablation (the L-VAE paper's Table 3) trains `beta-vae` with β fixed to the final β̂ of the
L-VAE run of the same dataset and seed, with the same settings, under its own label.
"""
from __future__ import annotations

import dataclasses

from disentbench import methods
from disentbench.bench.profiles import FACTORS
from disentbench.bench.spec import RunSpec

ABLATION_SOURCE = "l-vae"
ABLATION_METHOD = "beta-vae"
ABLATION_LABEL = "beta-vae-fixed-beta-hat"


def expand(method_names, dataset_names, seeds: int, settings: dict, params: dict,
           num_factors: dict) -> list[RunSpec]:
    """One RunSpec per dataset x method x seed (in that order). `settings` holds steps,
    batch_size, latent_dim (an int or FACTORS), lr, log_every, checkpoint_every; `params` maps a
    method to its parameters (those equal to the default are dropped: they name the same run);
    `num_factors` maps a dataset to its number of factors, 0 for none (used for latent_dim =
    FACTORS; a dataset without factors, CelebA, gets the usual 10)."""
    specs = []
    for dataset in dataset_names:
        latent_dim = settings["latent_dim"]
        if latent_dim == FACTORS:
            latent_dim = num_factors[dataset] or 10
        for method in method_names:
            chosen = methods.non_default(method, params.get(method, {}))
            specs.extend(RunSpec(method=method, dataset=dataset, seed=seed,
                                 steps=settings["steps"], batch_size=settings["batch_size"],
                                 latent_dim=latent_dim, lr=settings["lr"],
                                 params=tuple(chosen.items()), log_every=settings["log_every"],
                                 checkpoint_every=settings["checkpoint_every"])
                         for seed in range(seeds))
    return specs


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
