import torch

from . import register
from .base import Method, kl_normal


@register("beta-vae")
class BetaVAE(Method):
    """β-VAE (Higgins et al. 2017, Eq. 4): loss = L_R + β·KL.

    β is relative to this suite's convention (reconstruction summed over pixels, KL summed over
    latent dimensions, both averaged over the batch), the convention of disentanglement_lib.
    Default β = 4 (Higgins et al. used 4 on dSprites).
    """
    params = {"beta": 4.0}
    ranges = {"beta": (0.0, None)}

    def loss(self, x, out, step):
        rec, kl = self.reconstruction(x, out), kl_normal(out.mu, out.logvar)
        return {"loss": rec + self.hparams["beta"] * kl, "recon": rec, "kl": kl}

    def logged(self):
        return {"beta": torch.tensor(self.hparams["beta"])}
