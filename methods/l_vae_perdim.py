import torch
from torch import nn

from . import register
from .base import kl_per_dim
from .l_vae import SigmaWeighted


@register("l-vae-perdim", in_all=False)
class LVAEPerDim(SigmaWeighted):
    """L-VAE with one σ1 per latent dimension (an ablation of L-VAE, Mogultay Ozcan et al. 2025):

        loss = L_R / σ0² + Σ_j KL_j / σ1j² + σ0² + Σ_j σ1j²,      β̂_j = σ0² / σ1j²,

    KL_j the KL of latent dimension j (mean over the batch). Each dimension gets its own learned
    β̂_j (logged as beta_hat_0, beta_hat_1, ...; σ1j as sigma1_0, ...). All σ start at 1 and are
    stored as log σ² (created at bind, when the latent size is known) and trained by the
    network's Adam at `sigma_lr` (as in L-VAE); each σ² settles at sqrt(its term).
    """

    def bind(self, context):
        super().bind(context)
        self.log_var = nn.Parameter(torch.zeros(1 + context.latent_dim, device=context.device))

    def loss(self, x, out, step):
        rec, kl_dims = self.reconstruction(x, out), kl_per_dim(out.mu, out.logvar)
        inv_var = torch.exp(-self.log_var)
        loss = inv_var[0] * rec + (inv_var[1:] * kl_dims).sum() + torch.exp(self.log_var).sum()
        return {"loss": loss, "recon": rec, "kl": kl_dims.sum()}

    def logged(self):
        var = torch.exp(self.log_var.detach())
        return {"sigma0": var[0].sqrt(), "sigma1": var[1:].sqrt(), "beta_hat": var[0] / var[1:]}
