"""Profiles (`--profile smoke|quick|paper`): named run settings; explicit flags override them."""
from __future__ import annotations

# The most seeds, and runs, one grid takes: checked before anything is built (bench/grid.py).
MAX_SEEDS = 1000
MAX_RUNS = 20000
# `latent_dim: FACTORS` means the dataset's number of ground-truth factors.
FACTORS = "factors"

PROFILES = {
    # seconds per run: for tests and for checking an installation
    "smoke": {"steps": 20, "batch_size": 16, "latent_dim": 10, "lr": 1e-4, "log_every": 10,
              "checkpoint_every": 10, "eval_size": "quick", "metrics": "mig,reconstruction"},
    # the CPU default: the README's first command (10 methods x 10 seeds, plus the 10 runs of
    # the fixed-beta-hat ablation) within 20 minutes on a 2-core CPU. Untrained at 100 steps.
    "quick": {"steps": 100, "batch_size": 64, "latent_dim": 10, "lr": 1e-4, "log_every": 25,
              "checkpoint_every": 1000, "eval_size": "quick", "metrics": "auto"},
    # the L-VAE paper's setup (disentanglement_lib's: 300k steps, batch 64, Adam 1e-4), with the
    # latent dimension = the number of factors and the metrics at the study sizes; the GPU default
    "paper": {"steps": 300_000, "batch_size": 64, "latent_dim": FACTORS, "lr": 1e-4,
              "log_every": 1000, "checkpoint_every": 10_000, "eval_size": "default",
              "metrics": "auto"},
}


def default_profile(device) -> str:
    """`quick` on a CPU, `paper` on a GPU."""
    return "quick" if device.type == "cpu" else "paper"
