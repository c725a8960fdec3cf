"""Timed probes on the workers' device: the ETA of a plan, and `--group-seeds auto`'s size.

A probe trains a few steps of a run (or of a seed group) in this process and takes the median
step time; everything here is an estimate printed before the grid starts, never a result.
"""
from __future__ import annotations

import collections
import dataclasses
import statistics
import time

import torch

from disentbench.bench.engine import Engine
from disentbench.bench.plan import Options, Plan, cell
from disentbench.bench.spec import RunSpec

# Members of a `--group-seeds auto` group on a GPU: an H200 measured a stacked group of 10 at
# 151k images/s and of 50 at 163k (bf16, one CUDA graph): 10 reaches most of it.
AUTO_SIZE = 10


def should_group(device, n_members: int) -> bool:
    """The device rule of `--group-seeds auto`: seed groups may pay on a GPU, never on a CPU.

    On a GPU one small run leaves the device idle (launch-bound): an H200 measured 12k images/s
    for one run and 66k for a stacked group of 10 in fp32; `group_size` confirms the rule with a
    timed probe. On a CPU the stacked (grouped) convolutions are no faster than single models
    (on a 2-core Xeon, 1 thread, batch 64: single 145-175 images/s, group of 2 161, group of 4
    101 in fp32; in bf16 single 170-218, group of 2 127, group of 4 100); there, processes (one
    per core) are the parallelism.
    """
    return torch.device(device).type == "cuda" and n_members > 1


def group_size(specs: list[RunSpec], options: Options, data: dict) -> int:
    """Members per seed group: `options.group_seeds` when given (1: off); for auto (None), up to
    `AUTO_SIZE` seeds where `should_group` says groups may pay on the device (a GPU) and, for
    workers on this machine, a timed probe there confirms that one group step of the grid's
    first run costs each member less than its single step; else 1. `data` maps dataset names to
    the datasets loaded here."""
    if options.group_seeds is not None:
        return options.group_seeds
    size = min(AUTO_SIZE, max(collections.Counter(map(cell, specs)).values(), default=1))
    if not should_group(options.device, size):
        return 1
    if options.scheduler:                                    # the workers' device is elsewhere
        return size
    first = data[specs[0].dataset]
    single, grouped = probe(specs[0], first, options), probe(specs[0], first, options, size)
    return size if single is not None and grouped is not None and grouped < single else 1


def eta_seconds(plan: Plan, data: dict) -> float | None:
    """Training time of the plan on `options.jobs` local workers, from a few timed steps of each
    method here, with a worker's thread count. A method whose probe fails (it will fail as a
    run, with its reason) is left out; None if no probe worked or the workers are elsewhere."""
    options = plan.options
    if options.scheduler:
        return None
    per_step, total = {}, 0.0
    threads = torch.get_num_threads()
    torch.set_num_threads(options.threads or threads)
    try:
        for unit in plan.units:
            members = len(unit.specs)
            probes = [(unit.specs[0], unit.own_steps)]
            derived = (unit.steps - unit.own_steps) / max(1, len(unit.derived))
            probes += [(rule.example(unit.specs[0]), derived) for rule in unit.derived]
            for spec, steps in probes:
                probe_key = (spec.dataset, spec.method, spec.params, members)
                if probe_key not in per_step:
                    per_step[probe_key] = probe(spec, data[spec.dataset], options, members)
                total += (per_step[probe_key] or 0.0) * steps
    finally:
        torch.set_num_threads(threads)
    if not per_step or all(v is None for v in per_step.values()):
        return None if per_step else 0.0
    return total / options.jobs


def probe(spec: RunSpec, data, options: Options, members: int = 1,
          steps: int = 3) -> float | None:
    """Median seconds of one training step of `spec` after a warm-up step, per member of a seed
    group of `members` (seeds 0..members-1); None if it fails."""
    try:
        engine = Engine([dataclasses.replace(spec, seed=seed) for seed in range(members)]
                        if members > 1 else [spec], data, data.device, options.precision)
        engine.step()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            engine.step()
            if data.device.type == "cuda":
                torch.cuda.synchronize(data.device)
            times.append(time.perf_counter() - start)
        return statistics.median(times) / members
    except Exception:                                 # noqa: BLE001 - the run will say why
        return None
