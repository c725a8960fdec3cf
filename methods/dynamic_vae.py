import torch

from . import register
from .base import Method, kl_normal


@register("dynamic-vae")
class DynamicVAE(Method):
    """DynamicVAE (Shao et al. 2022, "Rethinking controllable variational autoencoders"; arXiv
    2009.06795 "DynamicVAE"): loss = L_R + β(t)·KL, with β(t) set by an incremental PI controller
    on a moving average of the KL, against a set-point raised by hybrid annealing (steps + ramps).

    The paper names these three parts; the exact forms here follow the authors' dSprites code
    (2D-sprites/I_PID.py, solver_dynamic.py, main.py, run_dynamic.sh):
        KL̄(t) = mean of the batch KL over the last `window` steps (past_T; this step included),
        e(t)  = C(t) − KL̄(t),
        Δβ(t) = Kp [σ(e(t)) − σ(e(t−1))] − Ki e(t),   σ(e) = 1 / (1 + exp(e)),  e(−1) = 0,
        β(t)  = max(W_min, β(t−1) + Δβ(t)),           β(−1) = W_k1 = 50,
    the incremental (velocity) form of ControlVAE's controller: β rises while the averaged KL
    exceeds C and falls to the floor W_min while it is below. In this form β itself is the
    integrator's state, and it is stored clipped: that is the anti-windup (while β sits at W_min
    the error no longer accumulates, and β leaves the floor as soon as KL̄ exceeds C).
    Set-point: C = 0.5 for the first window of c_period iterations; from the second window on it
    rises linearly by c_step over the first c_ramp_steps iterations of every window (a staircase
    of ramps), up to c_max.
    β(t) is computed from this step's KL before the loss uses it, as in the authors' solver.
    Two deliberate differences from the authors' code: their moving average starts from a queue
    of zeros (here it averages the KLs seen so far), and they store the unclipped β and drop the
    integral increment whenever that is below W_min, in either direction (one large step below
    the floor then holds β there for good).
    Defaults from that code: W_k1 = 50 and W_min = 0.1 (I_PID.py); Kp = 0.01 (main.py);
    Ki = 0.005 (written there as Ki = −0.005 in β + Ki·e; run_dynamic.sh), window past_T = 5,
    c_step = 0.15 and C_max = 20 (run_dynamic.sh, dSprites); C from 0.5 in windows of 6000
    iterations (solver_dynamic.py), ramped over 1000 (main.py).
    The controller state lives in buffers: checkpointed, updated on the device without syncs.
    """
    params = {"beta_start": 50.0, "beta_min": 0.1, "kp": 0.01, "ki": 0.005, "window": 5,
              "c_start": 0.5, "c_step": 0.15, "c_period": 6000, "c_ramp_steps": 1000,
              "c_max": 20.0}
    ranges = {"beta_start": (0.0, None), "beta_min": (0.0, None), "kp": (0.0, None),
              "ki": (0.0, None), "window": (1, None), "c_start": (0.0, None),
              "c_step": (0.0, None), "c_period": (1, None), "c_ramp_steps": (1, None),
              "c_max": (0.0, None)}

    def __init__(self, **params):
        super().__init__(**params)
        self.register_buffer("beta", torch.tensor(self.hparams["beta_start"]))
        self.register_buffer("previous_error", torch.zeros(()))
        self.register_buffer("kl_window", torch.zeros(self.hparams["window"]))
        self.register_buffer("setpoint", torch.tensor(self.hparams["c_start"]))

    def setpoint_at(self, step) -> torch.Tensor:
        """C after the ramps of iterations 1..step+1 (ramp iterations: the first c_ramp_steps
        of every window of c_period iterations, from the second window on); `step` is an int
        or the harness's device tensor (no host sync)."""
        h = self.hparams
        iteration, period, ramp = torch.as_tensor(step) + 1, h["c_period"], h["c_ramp_steps"]
        ramped = ((iteration // period - 1) * ramp
                  + (iteration % period + 1).clamp(max=ramp)).clamp(min=0)
        return (h["c_start"] + h["c_step"] * ramped / ramp).clamp(max=h["c_max"])

    @torch.no_grad()
    def update_beta(self, kl: torch.Tensor, setpoint, step) -> None:
        h = self.hparams
        step = torch.as_tensor(step, device=self.kl_window.device)
        self.kl_window.index_copy_(0, (step % h["window"]).reshape(1), kl.reshape(1))
        average = self.kl_window.sum() / (step + 1).clamp(max=h["window"])
        error = setpoint - average
        proportional_change = h["kp"] * (torch.sigmoid(-error)
                                         - torch.sigmoid(-self.previous_error))
        integral_change = -h["ki"] * error
        beta = self.beta + proportional_change + integral_change
        self.beta.copy_(beta.clamp(min=h["beta_min"]))
        self.previous_error.copy_(error)
        self.setpoint.fill_(setpoint)

    def loss(self, x, out, step):
        rec, kl = self.reconstruction(x, out), kl_normal(out.mu, out.logvar)
        self.update_beta(kl.detach(), self.setpoint_at(step), step)
        return {"loss": rec + self.beta * kl, "recon": rec, "kl": kl}

    def logged(self):
        return {"beta": self.beta, "C": self.setpoint}
