from . import register
from .base import Method, kl_normal


@register("vae")
class VAE(Method):
    """VAE (Kingma & Welling 2014): loss = L_R + KL, the negative ELBO (Eq. 3)."""

    def loss(self, x, out, step):
        rec, kl = self.reconstruction(x, out), kl_normal(out.mu, out.logvar)
        return {"loss": rec + kl, "recon": rec, "kl": kl}
