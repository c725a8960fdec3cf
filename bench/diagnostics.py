"""Training diagnostics of any method: per-dimension KL and active latent dimensions in every
logged row, and the warnings a finished run's history carries (posterior collapse, a method's
own signs such as L-VAE's σ running away).

A latent dimension j is *active* on a logged step when its batch-mean KL_j = KL(q(z_j|x) ||
N(0, 1)) exceeds ACTIVE_KL_NATS = 0.01 nats. Burda et al. (2016, "Importance weighted
autoencoders") count a unit as active when Cov_x(E_q[u]) > 10^-2, the same threshold applied to
the spread of the posterior mean. We threshold KL_j instead: it is what the loss weights and what
posterior collapse drives to zero, it comes from the same batch as the logged "kl" (Σ_j KL_j =
kl), and it bounds Burda's measure, KL_j ≥ ½ mean(μ_j²) ≥ ½ Var_batch(μ_j), so a unit active in
Burda's sense has KL_j > 0.005.
"""
from __future__ import annotations

import torch

from disentbench import methods
from disentbench.methods.base import kl_per_dim

ACTIVE_KL_NATS = 0.01


def latent_activity(mu: torch.Tensor, logvar: torch.Tensor) -> dict[str, torch.Tensor]:
    """History columns of one batch's posterior, as device scalars (no host sync): active_dims
    (dimensions with KL_j > ACTIVE_KL_NATS) and kl_0 ... kl_{D-1} (KL_j, mean over the batch)."""
    kl = kl_per_dim(mu, logvar)
    return {"active_dims": (kl > ACTIVE_KL_NATS).sum(),
            **{f"kl_{j}": value for j, value in enumerate(kl.unbind())}}


def collapse_step(rows: list[dict]) -> int | None:
    """The first logged step from which every later row (that logs it) has 0 active dimensions,
    or None if the last such row has an active dimension (or no row logs active_dims)."""
    logged = [row for row in rows if "active_dims" in row]
    step = None
    for row in reversed(logged):
        if row["active_dims"] != 0:
            break
        step = row["step"]
    return step


def warnings_from_history(rows: list[dict], method: str) -> list[str]:
    """Warnings for the run's status.json from its logged history (host floats): posterior
    collapse to the end of training, then the method's own (`Method.history_warnings`).
    No rows (a run that failed before its first logging step): no warnings."""
    if not rows:
        return []
    warnings = []
    step = collapse_step(rows)
    if step is not None:
        warnings.append(f"posterior collapse at step {step}: no latent dimension has KL above "
                        f"{ACTIVE_KL_NATS:g} nats from then to the end of training")
    return warnings + methods.get(method).history_warnings(rows)
