"""The worker: one unit of the plan in this process — train its runs (as one engine when there
are several), evaluate them, then make, train and evaluate the derived runs of those that are
done (the fixed-β̂ ablation). Never raises for a failing run: it becomes a failed result.

A worker process loads each dataset once and keeps it on its device (`dataset`), and runs with
`threads` torch, BLAS/OpenMP and numba threads (more threads than cores slow every process down
many times over).
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import signal
import threading
import time
from typing import Callable

import torch

from disentbench.bench import data as datasets
from disentbench.bench.evaluate import evaluate_run
from disentbench.bench.plan import Options, Unit, key
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import Status
from disentbench.bench.train import RunResult, train_runs

_DATA: dict = {}             # this process's datasets, loaded once, on their device
_THREADS: list = []          # the thread count set in this process


def dataset(name: str, data_dir, device, load: Callable | None = None) -> datasets.GroundTruthData:
    """`name` loaded once per process (with `load`, default its registered loader) and kept
    on `device`."""
    cache_key = (name, data_dir, str(device))
    if cache_key not in _DATA:
        _DATA[cache_key] = (load or datasets.loader(name))(data_dir=data_dir).to(device)
    return _DATA[cache_key]


def run_unit(unit: Unit, options: Options, queue=None) -> list[RunResult]:
    """Train and evaluate `unit`'s runs, then its derived runs, in this process. `queue`
    receives ("steps", run names, n) as training goes on and ("finished", result) per run."""
    set_threads(options.threads)
    first = unit.specs[0]
    try:
        data = dataset(first.dataset, options.data_dir, options.device, unit.load)
    except Exception as err:                         # noqa: BLE001 - the runs' failure
        reason = f"loading {first.dataset}: {type(err).__name__}: {err}"
        return [result for spec in unit.specs for result in
                [RunResult.of(spec, options.out, Status.FAILED, reason=reason)]
                + [rule.not_trained(spec, reason) for rule in unit.derived]]
    results = []
    for spec in unit.specs:
        if key(spec) in unit.settled:
            results.append(unit.settled[key(spec)])
            tell(queue, "finished", results[-1])
    todo = [spec for spec in unit.specs if key(spec) not in unit.settled]
    results += train_and_evaluate(todo, [{}] * len(todo), data, options, queue)
    for rule in unit.derived:
        made = [(spec, rule.derive(spec, options.out)) for spec in unit.specs]
        for spec, pair in made:
            if pair is None:
                results.append(rule.not_trained(spec, f"its {rule.source} run failed"))
                tell(queue, "finished", results[-1])
        pairs = [pair for _, pair in made if pair is not None]
        results += train_and_evaluate([spec for spec, _ in pairs], [record for _, record in pairs],
                                      data, options, queue)
    return results


def train_and_evaluate(specs: list[RunSpec], records: list[dict], data, options: Options,
                       queue) -> list[RunResult]:
    """Train `specs` (one engine when several need it) and evaluate them; `records` are one
    more config.json dict per run. Tells the queue each finished run."""
    if not specs:
        return []
    profile = {"profile": options.profile} if options.profile else {}
    names = [key(spec) for spec in specs]
    progress = (lambda n: tell(queue, "steps", names, n)) if queue is not None else None
    try:
        trained = train_runs(specs, options.out, data=data, device=options.device,
                             progress=progress, member_extra=[{**profile, **r} for r in records],
                             **options.train_flags())
    except Exception as err:                          # noqa: BLE001 - isolate the runs
        trained = [RunResult.of(spec, options.out, Status.FAILED,
                                reason=f"{type(err).__name__}: {err}") for spec in specs]
    results = []
    for result in trained:
        results.append(evaluated(result, data, options))
        tell(queue, "finished", results[-1])
    return results


def evaluated(result: RunResult, data, options: Options) -> RunResult:
    """`result` with its metrics computed (failed if evaluation fails), the evaluation's
    seconds added to its own."""
    if result.status != Status.DONE or not options.metrics:
        return result
    start = time.perf_counter()

    def seconds() -> float:
        return result.seconds + time.perf_counter() - start
    try:
        evaluation = evaluate_run(result.run_dir, data, list(options.metrics),
                                  size=options.eval_size, seed=options.eval_seed,
                                  device=options.device)
    except Exception as err:                          # noqa: BLE001 - isolate the run
        return dataclasses.replace(result, status=Status.FAILED, seconds=seconds(),
                                   reason=f"{type(err).__name__}: {err}")
    errors = [f"{n}: {r['error']}" for n, r in evaluation["metrics"].items() if "error" in r]
    if errors:
        return dataclasses.replace(result, status=Status.FAILED, seconds=seconds(),
                                   reason="evaluation failed: " + "; ".join(errors))
    notes = "; ".join(evaluation.get("notes", []))
    return dataclasses.replace(result, evaluated=True, seconds=seconds(),
                               reason="; ".join(filter(None, [result.reason, notes])))


def tell(queue, *item) -> None:
    """Tell the parent's progress bar; a parent gone (Ctrl-C) does not fail the run."""
    if queue is None:
        return
    try:
        queue.put(item)
    except (OSError, EOFError):
        pass


def set_threads(threads: int | None) -> None:
    """`threads` torch, BLAS/OpenMP and numba (where installed) threads in this process; in a
    worker process, Ctrl-C is left to the parent, which stops the workers."""
    if threads is None or _THREADS == [threads]:
        return
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(threads)
    threadpool_limits(threads)
    try:
        import numba
    except ImportError:
        pass
    else:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if (not _THREADS and multiprocessing.parent_process() is not None
            and threading.current_thread() is threading.main_thread()):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _THREADS[:] = [threads]
