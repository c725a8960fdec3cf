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
    network's Adam at `sigma_lr` (as in L-VAE); each σ² settles at sqrt(its term), so β̂_j
    chases β̂*_j = sqrt(L_R / KL_j) (logged as beta_hat_star_j beside sigma0_sq_ratio and
    sigma1_sq_ratio_j = σ1j²/sqrt(KL_j)).
    """

    def bind(self, context):
        super().bind(context)
        self.log_var = nn.Parameter(torch.zeros(1 + context.latent_dim, device=context.device))

    def loss(self, x, out, step):
        rec, kl_dims = self.reconstruction(x, out), kl_per_dim(out.mu, out.logvar)
        self.terms = torch.cat([rec[None], kl_dims]).detach()
        inv_var = torch.exp(-self.log_var)
        loss = inv_var[0] * rec + (inv_var[1:] * kl_dims).sum() + torch.exp(self.log_var).sum()
        return {"loss": loss, "recon": rec, "kl": kl_dims.sum()}
