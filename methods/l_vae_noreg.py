import torch

from . import register
from .base import kl_normal
from .l_vae import LVAE, SIGMA2_RANGE


@register("l-vae-noreg", in_all=False)
class LVAENoReg(LVAE):
    """L-VAE without the Σσ² term, the ablation the L-VAE paper suggests:

        loss = L_R / σ0² + KL / σ1²,      β̂ = σ0² / σ1².

    Nothing holds σ back any more: ∂loss/∂log σ² = −term/σ² < 0 for a positive term, so both σ²
    grow without bound (each log σ² climbs by about one learning rate per Adam step) and the loss
    weights 1/σ² fade. A run is stopped as diverged when σ0² or σ1² leaves [1e-4, 1e4]: its loss
    weight has then moved four orders of magnitude from 1 (at 1e4 the ELBO's gradient is scaled
    by 1e-4: training has effectively stopped); non-finite σ also counts. With no stationary
    point there is no β̂* to chase: it logs σ and β̂ only, and its history has no summary.
    """

    def loss(self, x, out, step):
        rec, kl = self.reconstruction(x, out), kl_normal(out.mu, out.logvar)
        inv_var = torch.exp(-self.log_var)
        return {"loss": inv_var[0] * rec + inv_var[1] * kl, "recon": rec, "kl": kl}

    def diverged(self, row):
        low, high = SIGMA2_RANGE
        for i in (0, 1):
            var = row[f"sigma{i}"] ** 2
            if not low <= var <= high:
                return (f"sigma{i}^2 = {var:.5g} left [{low:g}, {high:g}] at step {row['step']}: "
                        f"without the Σσ² term nothing bounds σ (l-vae-noreg ablation)")
        return None
