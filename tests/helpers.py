"""Small in-memory datasets for fast tests of the harness and the CLI."""
import numpy as np
import torch

from disentbench.bench.data.base import GroundTruthData


def tiny_dsprites_like(seed: int = 0, sizes=(3, 2, 4, 4, 4)) -> GroundTruthData:
    """Binary 64x64 squares whose size/position follow the factors (learnable, deterministic)."""
    n = int(np.prod(sizes))
    factors = np.stack(np.unravel_index(np.arange(n), sizes), -1)
    images = torch.zeros(n, 1, 64, 64, dtype=torch.uint8)
    for i, (shape, scale, _, x, y) in enumerate(factors):
        half = 4 + 3 * scale + 2 * shape
        cx, cy = 16 + 8 * x, 16 + 8 * y
        images[i, 0, cy - half:cy + half, cx - half:cx + half] = 1
    return GroundTruthData("tiny", ["shape", "scale", "orientation", "posX", "posY"], sizes,
                           images, pixel_max=1)


def load_tiny(data_dir=None) -> GroundTruthData:
    """The `tiny` loader (a module-level function, so worker processes can be handed it)."""
    return tiny_dsprites_like()


def steps_without_host_sync(step, n: int):
    """`step()` called n times with CUDA's sync debug mode raising on any host sync (issue 12);
    returns the last result."""
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(n):
            result = step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return result


class Single:
    """One run in the engine (bench/engine.py), driven as the tests drive it: `step()` returns
    its loss terms, `row(terms)` its history row; everything else is the member's (model,
    method, optimizer, sample_batch, state_dict, ...)."""

    def __init__(self, spec, data, device=torch.device("cpu"), precision: str = "fp32"):
        from disentbench.bench.engine import Engine
        self.engine = Engine([spec], data, device, precision)
        self.member = self.engine.members[0]

    def step(self) -> dict:
        return self.engine.step()[0]

    def row(self, terms: dict) -> dict:
        return self.engine.rows([terms])[0]

    def __getattr__(self, name):
        return getattr(self.member, name)
