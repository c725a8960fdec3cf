import torch
from torch import nn

from . import register
from .base import Method, kl_normal


@register("l-vae")
class LVAE(Method):
    """L-VAE (Mogultay Ozcan et al., 2025): β learned as a ratio of task uncertainties.

        loss = L_R / σ0² + KL / σ1² + σ0² + σ1²,      learned β̂ = σ0² / σ1²

    σ0 = σ1 = 1 at the start; both are trained by the network's optimiser. They are stored as
    s = log σ² so that σ² = exp(s) stays positive and the gradient is smooth in s; the
    stationary point of each term is σ² = sqrt(term), so a large term pushes its σ up.
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
