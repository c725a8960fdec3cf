import math

import torch
from torch import nn

from . import register
from .base import Method, kl_normal

SIGMA2_RANGE = (1e-4, 1e4)      # σ² outside it: its loss weight 1/σ² moved 4 orders of magnitude


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


class SigmaWeighted(Method):
    """Base of the L-VAE family: loss terms weighted by 1/σ², σ learned and stored as
    s = log σ² in `self.log_var` (σ² = exp(s) stays positive, the gradient is smooth in s).

    σ is trained by the network's Adam in its own parameter group with learning rate `sigma_lr`
    (unset: the run's lr, the L-VAE paper's setup; the paper advises lowering it when σ
    misbehaves; 0 freezes σ at 1). A σ² that leaves [1e-4, 1e4] is a warning of the run.
    """
    params = {"sigma_lr": None}

    def __init__(self, **params):
        super().__init__(**params)
        self.hparams["sigma_lr"] = sigma_lr(self.hparams["sigma_lr"], self.name)

    def param_groups(self, lr):
        """σ in its own group at `sigma_lr`; unset, it becomes the run's `lr` here (so the run's
        config records the value used)."""
        if self.hparams["sigma_lr"] is None:
            self.hparams["sigma_lr"] = lr
        return [{"params": [self.log_var], "lr": self.hparams["sigma_lr"]}]

    @classmethod
    def history_warnings(cls, rows):
        return sigma_range_warnings(rows)


@register("l-vae")
class LVAE(SigmaWeighted):
    """L-VAE (Mogultay Ozcan et al., 2025): β learned as a ratio of task uncertainties.

        loss = L_R / σ0² + KL / σ1² + σ0² + σ1²,      learned β̂ = σ0² / σ1²

    σ0 = σ1 = 1 at the start (with `sigma_lr` = 0 they stay there and the loss is the VAE's
    plus 2). The stationary point of each term is σ² = sqrt(term), so a large term pushes its σ
    up, and β̂ tends to sqrt(L_R / KL): the smaller the KL, the larger its weight, which makes
    posterior collapse an attractor at large learning rates (README, L-VAE).
    """

    def __init__(self, **params):
        super().__init__(**params)
        self.log_var = nn.Parameter(torch.zeros(2))          # s = log σ², σ0 = σ1 = 1

    def loss(self, x, out, step):
        rec, kl = self.reconstruction(x, out), kl_normal(out.mu, out.logvar)
        inv_var = torch.exp(-self.log_var)
        return {"loss": inv_var[0] * rec + inv_var[1] * kl + torch.exp(self.log_var).sum(),
                "recon": rec, "kl": kl}

    def logged(self):
        var = torch.exp(self.log_var.detach())
        return {"sigma0": var[0].sqrt(), "sigma1": var[1].sqrt(), "beta_hat": var[0] / var[1]}
