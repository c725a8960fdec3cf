"""Training precision, a run-time choice like the device: `auto`, `bf16` or `fp32`.

`bf16` runs the network's forward pass (convolutions and matrix products) under bf16 autocast;
its outputs are cast back to fp32 before the method sees them, so every loss, KL, σ, controller
state and the optimiser work in fp32. `fp32` changes nothing.

`auto` (the rule; `resolve`):
- CUDA: bf16 where the GPU supports it (`torch.cuda.is_bf16_supported()`), else fp32;
- CPU: bf16 when the CPU computes bf16 natively (the `avx512_bf16` or `amx_bf16` flag in
  /proc/cpuinfo), else fp32 (without those, bf16 is emulated and does not pay).
`memory_format`: in bf16 on a CPU the network and its batches are kept channels-last, the
layout oneDNN's bf16 convolutions use (without it every activation is reordered both ways at
every layer). Measured on a quiet 2-core Intel Xeon with amx_bf16 (batch 64, 1 thread, a plain
loop): fp32 497 images/s, fp32 channels-last 508, bf16 autocast 762, bf16 channels-last 1,113
(2.2× fp32). An earlier busy-machine measurement on the same CPU model saw no gain from
channels-last (fp32 378, bf16 533, bf16 channels-last 455), so `python -m
disentbench.bench.perf` prints the harness cases on any machine to check it. On a GPU the layout
is left as it is (not measured). The issue's AMD EPYC (avx512_bf16, no AMX): bf16 with
channels-last 1.3–1.7× fp32.

Precision is recorded in a run's config.json; it is not part of the RunSpec's identity.
"""
from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

import torch

from disentbench.methods.base import Output

CHOICES = ("auto", "bf16", "fp32")
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU's feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_pays(device: torch.device) -> bool:
    """The `auto` rule: bf16 on a GPU that supports it and on CPUs with native bf16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(NATIVE_BF16_FLAGS & cpu_flags())
    return False


def resolve(precision: str | None, device) -> str:
    """`bf16` or `fp32` for `precision` (None means auto) on `device`; ValueError if unknown."""
    precision = precision or "auto"
    if precision not in CHOICES:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(CHOICES)}")
    if precision == "auto":
        return "bf16" if bf16_pays(device) else "fp32"
    return precision


def memory_format(precision: str, device) -> torch.memory_format:
    """The layout of the network and its batches: channels-last for bf16 on a CPU, else as is."""
    if precision == "bf16" and torch.device(device).type == "cpu":
        return torch.channels_last
    return torch.contiguous_format


def autocast(precision: str, device):
    """The context the forward pass runs in: bf16 autocast for `bf16`, nothing for `fp32`."""
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def forward(model, x: torch.Tensor, precision: str) -> Output:
    """`model(x)` in `precision`, its outputs returned in fp32 (losses are computed in fp32)."""
    with autocast(precision, x.device):
        out = model(x)
    return Output(*(t.float() for t in out))
