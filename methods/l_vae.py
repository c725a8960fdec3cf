import math

import torch
from torch import nn

from . import register
from .base import Method, kl_normal

SIGMA2_RANGE = (1e-4, 1e4)      # σ² outside it: its loss weight 1/σ² moved 4 orders of magnitude
# β̂ has settled when every ratio σ²/√term lies in [1 − SETTLED_BAND, 1 + SETTLED_BAND] on every
# logged row of the last SETTLED_FRACTION of training (the logged ratios are of one batch each).
SETTLED_BAND, SETTLED_FRACTION = 0.1, 0.25
TINY = torch.finfo(torch.float32).tiny  # a term is clamped here before its square root (KL_j ≈ 0)


def sigma_lr(value, method: str) -> float | None:
    """`method`'s `sigma_lr` parameter as a float (None: the run's lr); raises ValueError if it
    is not a finite number ≥ 0."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{method}.sigma_lr must be a finite number >= 0 (the learning rate "
                         f"of the σ parameters; 0 freezes σ at 1), got {value!r}; leave it unset "
                         f"to use the run's --lr")
    return number


def sigma_range_warnings(rows: list[dict]) -> list[str]:
    """One warning per σ column (sigma0, sigma1, sigma1_j) whose σ² first leaves SIGMA2_RANGE,
    with the logging step where it did; non-finite σ counts as outside."""
    low, high = SIGMA2_RANGE
    warnings = []
    for name in dict.fromkeys(k for row in rows for k in row
                              if k in ("sigma0", "sigma1") or k.startswith("sigma1_")):
        for row in rows:
            if name in row and not low <= row[name] ** 2 <= high:
                warnings.append(f"{name}^2 = {row[name] ** 2:.5g} outside [{low:g}, {high:g}] "
                                f"at step {row['step']}")
                break
    return warnings


def ratio_columns(row: dict) -> list[str]:
    """The equilibrium ratio columns of a history row: sigma0_sq_ratio, sigma1_sq_ratio or
    sigma1_sq_ratio_0, sigma1_sq_ratio_1, ... (L-VAE per dimension)."""
    return [k for k in row if k in ("sigma0_sq_ratio", "sigma1_sq_ratio")
            or k.startswith("sigma1_sq_ratio_")]


def equilibrium_summary(rows: list[dict], band: float = SETTLED_BAND,
                        last_fraction: float = SETTLED_FRACTION) -> dict:
    """Whether β̂ has settled at its equilibrium, from a run's logged history (host floats).

    Settled: every ratio σ²/√term is within [1 − band, 1 + band] on every logged row from step
    (1 − last_fraction)·(last step) on. `settled_from_step` is the first step of the final
    stretch of rows with every ratio in the band (None if the last row has one outside);
    `out_of_band` names the ratios that leave the band in that last fraction. {} for a history
    without ratio columns (another method, L-VAE without Σσ²)."""
    logged = [row for row in rows if ratio_columns(row)]
    if not logged:
        return {}

    def outside(row):
        return [k for k in ratio_columns(row) if not abs(row[k] - 1) <= band]   # NaN: outside
    settled_from = None
    for row in reversed(logged):
        if outside(row):
            break
        settled_from = int(row["step"])
    window_start = (1 - last_fraction) * logged[-1]["step"]
    window = [row for row in logged if row["step"] >= window_start]
    return {"beta_hat_settled": settled_from is not None and settled_from <= window[0]["step"],
            "settled_from_step": settled_from, "band": [1 - band, 1 + band],
            "last_fraction": last_fraction,
            "out_of_band": sorted({k for row in window for k in outside(row)})}


class SigmaWeighted(Method):
    """Base of the L-VAE family: loss terms weighted by 1/σ², σ learned and stored as
    s = log σ² in `self.log_var` (σ² = exp(s) stays positive, the gradient is smooth in s).

    σ is trained by the network's Adam in its own parameter group with learning rate `sigma_lr`
    (unset: the run's lr, the L-VAE paper's setup; the paper advises lowering it when σ
    misbehaves; 0 freezes σ at 1). A σ² that leaves [1e-4, 1e4] is a warning of the run.

    Equilibrium: ∂loss/∂σ² = 0 at σ² = √term, so β̂ = σ0²/σ1² chases β̂* = √(L_R / KL). `loss`
    keeps the step's terms (detached, on the device; `self.terms` = [L_R, KL or KL_j...]) and
    `logged` adds beta_hat_star and the ratios sigma0_sq_ratio = σ0²/√L_R and sigma1_sq_ratio =
    σ1²/√KL (1 at equilibrium), σ after the step against the terms of its batch; a term is
    clamped at the smallest normal float first (a collapsed KL_j rounds to 0 or below).
    `history_summary` says whether they settled (`equilibrium_summary`).
    """
    params = {"sigma_lr": None}

    def __init__(self, **params):
        super().__init__(**params)
        self.hparams["sigma_lr"] = sigma_lr(self.hparams["sigma_lr"], self.name)
        self.terms: torch.Tensor | None = None

    def logged(self):
        """σ0, σ1 (a vector per dimension) and β̂; after a step also β̂* and the ratios."""
        var = torch.exp(self.log_var.detach())
        values = {"sigma0": var[0].sqrt(), "sigma1": var[1:].sqrt(), "beta_hat": var[0] / var[1:]}
        if self.terms is not None:
            root = self.terms.clamp_min(TINY).sqrt()
            values.update(beta_hat_star=root[0] / root[1:], sigma0_sq_ratio=var[0] / root[0],
                          sigma1_sq_ratio=var[1:] / root[1:])
        return values

    def param_groups(self, lr):
        """σ in its own group at `sigma_lr`; unset, it becomes the run's `lr` here (so the run's
        config records the value used)."""
        if self.hparams["sigma_lr"] is None:
            self.hparams["sigma_lr"] = lr
        return [{"params": [self.log_var], "lr": self.hparams["sigma_lr"]}]

    @classmethod
    def history_warnings(cls, rows):
        return sigma_range_warnings(rows)

    @classmethod
    def history_summary(cls, rows):
        return equilibrium_summary(rows)


@register("l-vae")
class LVAE(SigmaWeighted):
    """L-VAE (Mogultay Ozcan et al., 2025): β learned as a ratio of task uncertainties.

        loss = L_R / σ0² + KL / σ1² + σ0² + σ1²,      learned β̂ = σ0² / σ1²

    σ0 = σ1 = 1 at the start (with `sigma_lr` = 0 they stay there and the loss is the VAE's
    plus 2). The stationary point of each term is σ² = sqrt(term), so a large term pushes its σ
    up, and β̂ tends to β̂* = sqrt(L_R / KL): the smaller the KL, the larger its weight, which
    makes posterior collapse an attractor at large learning rates (docs/lvae_equilibrium.md).
    """

    def __init__(self, **params):
        super().__init__(**params)
        self.log_var = nn.Parameter(torch.zeros(2))          # s = log σ², σ0 = σ1 = 1

    def loss(self, x, out, step):
        rec, kl = self.reconstruction(x, out), kl_normal(out.mu, out.logvar)
        self.terms = torch.stack([rec, kl]).detach()
        inv_var = torch.exp(-self.log_var)
        return {"loss": inv_var[0] * rec + inv_var[1] * kl + torch.exp(self.log_var).sum(),
                "recon": rec, "kl": kl}
