import torch

from . import register
from .base import Method, kl_normal


@register("control-vae")
class ControlVAE(Method):
    """ControlVAE (Shao et al. 2020): loss = L_R + β(t)·KL, β(t) set by a non-linear PI controller

        e(t) = C(t) − KL(t),    β(t) = Kp / (1 + exp(e(t))) − Ki Σ_{j≤t} e(j) + β_min,

    so β rises while the KL exceeds the set-point C and falls to its floor β_min while it is
    below. β(t) is computed from this step's batch KL before the loss uses it, as in the authors'
    solver. Anti-windup: the integral term is clamped at −Kp/(1 + exp(e)), the value that puts β
    exactly on its floor, so while β is saturated the integral stops accumulating the error and β
    leaves the floor on the first step the KL exceeds C again. (The authors' code instead freezes
    the integral whenever the previous unclipped β was below 1, in either direction; one large
    step below the floor then holds β there for good.) The set-point starts at 0.5 and rises by
    0.15 every 5000 iterations up to C_max: at 0-based step t,
    C = min(C_max, 0.5 + 0.15·⌊(t + 1) / 5000⌋).
    Defaults from the paper's dSprites setting and the authors' code (Disentangling/
    solver_light.py: Kp = 0.01, Ki = 0.001 (written there as Ki = −0.001 in I + Ki·e), C = 0.5
    stepped every 5000 iterations; P_PID.py: β_min = 1; run_dsprites_pid_c18.sh: steps of 0.15,
    C_max = 18).
    The controller state (β, integral, C) lives in buffers: checkpointed, updated on the device.
    """
    params = {"c_max": 18.0, "kp": 0.01, "ki": 0.001, "beta_min": 1.0,
              "c_start": 0.5, "c_step": 0.15, "c_every": 5000}
    ranges = {"c_max": (0.0, None), "kp": (0.0, None), "ki": (0.0, None),
              "beta_min": (0.0, None), "c_start": (0.0, None), "c_step": (0.0, None),
              "c_every": (1, None)}

    def __init__(self, **params):
        super().__init__(**params)
        self.register_buffer("beta", torch.tensor(self.hparams["beta_min"]))
        self.register_buffer("integral", torch.zeros(()))
        self.register_buffer("setpoint", torch.tensor(self.hparams["c_start"]))

    def setpoint_at(self, step) -> torch.Tensor:
        """C at 0-based `step` (an int, or the harness's device tensor: no host sync)."""
        h = self.hparams
        raised = torch.div(torch.as_tensor(step) + 1, h["c_every"], rounding_mode="floor")
        return (h["c_start"] + h["c_step"] * raised).clamp(max=h["c_max"])

    @torch.no_grad()
    def update_beta(self, kl: torch.Tensor, setpoint: float) -> None:
        h = self.hparams
        error = setpoint - kl
        proportional = h["kp"] * torch.sigmoid(-error)            # Kp / (1 + exp(e))
        self.integral.copy_(torch.maximum(self.integral - h["ki"] * error, -proportional))
        self.beta.copy_(proportional + self.integral + h["beta_min"])
        self.setpoint.fill_(setpoint)

    def loss(self, x, out, step):
        rec, kl = self.reconstruction(x, out), kl_normal(out.mu, out.logvar)
        self.update_beta(kl.detach(), self.setpoint_at(step))
        return {"loss": rec + self.beta * kl, "recon": rec, "kl": kl}

    def logged(self):
        return {"beta": self.beta, "C": self.setpoint}
