"""RunSpec: everything that defines one training run, and the folder it is stored in."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RunSpec:
    method: str
    dataset: str
    seed: int
    steps: int
    batch_size: int = 64
    latent_dim: int = 10
    lr: float = 1e-4
    params: tuple = field(default=())          # sorted ((name, value), ...) of non-default params
    log_every: int = 25
    checkpoint_every: int = 1000
    variant: str = ""                          # a named variant's label (the fixed-β̂ ablation)

    def __post_init__(self):
        # -0.0 + 0.0 is 0.0: a parameter of -0 is the run of 0, not a second one
        object.__setattr__(self, "params", tuple(sorted(
            (k, v + 0.0 if isinstance(v, float) else v) for k, v in dict(self.params).items())))
        for name in ("steps", "batch_size", "latent_dim", "log_every", "checkpoint_every"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        if not 0 < self.lr < float("inf"):
            raise ValueError(f"lr must be positive and finite, got {self.lr}")

    @property
    def label(self) -> str:
        """The variant's name if set, else the method name plus its non-default parameters,
        e.g. `beta-vae-beta=8`."""
        if self.variant:
            return self.variant
        return "-".join([self.method] + [f"{k}={_number(v)}" for k, v in self.params])

    def run_dir(self, out: str | Path) -> Path:
        return Path(out) / "runs" / self.dataset / self.label / f"seed{self.seed}"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["params"] = dict(self.params)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        d = dict(d)
        d["params"] = tuple(d.get("params", {}).items())
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    def identity(self) -> dict:
        """The fields that must match for a run folder to be resumed (steps may grow)."""
        d = self.to_dict()
        for free in ("steps", "log_every", "checkpoint_every"):
            d.pop(free)
        return d

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:12]


def _number(value) -> str:
    """`value` as a folder name part: `{:g}` where that gives the value back exactly (8, 0.5,
    1e-05: the names folders have always had), else the shortest text that does (8.0000001), so
    that equal values share one name and different values never do."""
    if not isinstance(value, float):
        return str(value)
    short = f"{value:g}"
    return short if float(short) == value else repr(value)
