"""The worker: one unit of the plan in this process — train its runs (as one engine when there
are several), evaluate them, then make, train and evaluate the derived runs of those that are
done (the fixed-β̂ ablation). Never raises for a failing run: it becomes a failed result.

A worker process loads each dataset once and keeps it on its device (`dataset`), and runs with
`threads` torch, BLAS/OpenMP and numba threads (more threads than cores slow every process down
many times over).
"""
from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from typing import Callable

import torch

from disentbench.bench import data as datasets
from disentbench.bench.claims import Claims
from disentbench.bench.evaluate import evaluate_run, pending_metrics
from disentbench.bench.plan import Options, Unit, key
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import Status
from disentbench.bench.train import RunResult, train_runs

_DATA: dict = {}             # this process's datasets, loaded once, on their device
_THREADS: list = []          # the thread count set in this process
_WATCHED: list = []          # the parent pid this process watches (bench/backend.py's main)


def dataset(name: str, data_dir, device, load: Callable | None = None) -> datasets.GroundTruthData:
    """`name` loaded once per process (with `load`, default its registered loader) and kept
    on `device`."""
    cache_key = (name, data_dir, str(device))
    if cache_key not in _DATA:
        _DATA[cache_key] = (load or datasets.loader(name))(data_dir=data_dir).to(device)
    return _DATA[cache_key]


def run_unit(unit: Unit, options: Options, queue=None,
             parent: int | None = None) -> list[RunResult]:
    """Train and evaluate `unit`'s runs, then its derived runs, in this process. Each run is
    claimed (bench/claims.py) before it is trained or evaluated and released after; a run
    claimed by another process is left to it (a result with status running that names the
    holder), and so are its derived runs. `queue` receives ("steps", run names, n) as training
    goes on and ("finished", result) per run; `parent` is the pid of the command's main
    process (a worker process it started ends when it is gone)."""
    prepare_process(options.threads, parent)
    with Claims(options.invocation) as held:
        results, todo, away = [], [], set()
        for spec in unit.specs:
            if key(spec) in unit.settled:
                results.append(tell(queue, "finished", unit.settled[key(spec)]))
            elif (holder := held.take(spec.run_dir(options.out))) is not None:
                away.add(key(spec))
                results += [tell(queue, "finished", r) for r in
                            [RunResult.of(spec, options.out, Status.RUNNING,
                                          reason=holder.describe())]
                            + [rule.elsewhere(spec, holder.describe()) for rule in unit.derived]]
            else:
                todo.append(spec)
        mine = [spec for spec in unit.specs if key(spec) not in away]
        if not todo and not (mine and unit.derived):
            return results
        first = unit.specs[0]
        try:
            data = dataset(first.dataset, options.data_dir, options.device, unit.load)
        except Exception as err:                     # noqa: BLE001 - the runs' failure
            reason = f"loading {first.dataset}: {type(err).__name__}: {err}"
            return results + [tell(queue, "finished", r) for r in
                              [RunResult.of(spec, options.out, Status.FAILED, reason=reason)
                               for spec in todo]
                              + [rule.not_trained(spec, reason) for spec in mine
                                 for rule in unit.derived]]
        results += train_and_evaluate(todo, [{}] * len(todo), data, options, queue, held)
        for rule in unit.derived:
            results += derived_runs(rule, mine, data, options, queue, held)
        return results


def derived_runs(rule, sources: list[RunSpec], data, options: Options, queue,
                 held: Claims) -> list[RunResult]:
    """Make, claim, train and evaluate `rule`'s runs of `sources`."""
    results, specs, records = [], [], []
    for source in sources:
        made = rule.derive(source, options.out)
        if made is None:
            results.append(tell(queue, "finished",
                                rule.not_trained(source, f"its {rule.source} run failed")))
        elif (holder := held.take(made[0].run_dir(options.out))) is not None:
            results.append(tell(queue, "finished", RunResult.of(
                made[0], options.out, Status.RUNNING, reason=holder.describe())))
        else:
            specs.append(made[0])
            records.append(made[1])
    return results + train_and_evaluate(specs, records, data, options, queue, held)


def train_and_evaluate(specs: list[RunSpec], records: list[dict], data, options: Options,
                       queue, held: Claims) -> list[RunResult]:
    """Train `specs` (one engine when several need it) and evaluate them; `records` are one
    more config.json dict per run. Releases each run's claim and tells the queue."""
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
    for spec, result in zip(specs, trained):
        results.append(noted(evaluated(result, data, options),
                             held.notes.pop(spec.run_dir(options.out), "")))
        held.release(spec.run_dir(options.out))
        tell(queue, "finished", results[-1])
    return results


def noted(result: RunResult, note: str) -> RunResult:
    """`result` with `note` (a stale claim taken over) after its reason."""
    if not note:
        return result
    return dataclasses.replace(result, reason="; ".join(filter(None, [result.reason, note])))


def pending(result: RunResult, options: Options) -> bool:
    """Whether the finished run of `result` still needs a metric (True where its files cannot
    tell: evaluation then says why)."""
    try:
        return bool(pending_metrics(result.run_dir, options.metrics, size=options.eval_size,
                                    seed=options.eval_seed))
    except Exception:                                 # noqa: BLE001 - evaluation reports it
        return True


def evaluated(result: RunResult, data, options: Options) -> RunResult:
    """`result` with its metrics computed (failed if evaluation fails), the evaluation's
    seconds added to its own."""
    if result.status != Status.DONE:
        return result
    if not result.trained and not pending(result, options):
        return dataclasses.replace(result, earlier=True)    # finished by another process
    if not options.metrics:
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


def tell(queue, *item):
    """Tell the parent's progress bar (a parent gone, Ctrl-C, does not fail the run); returns
    the item's last element (the result told). The item (None) ends the parent's drain."""
    if queue is not None:
        try:
            queue.put(item if item != (None,) else None)
        except (OSError, EOFError):
            pass
    return item[-1]


def prepare_process(threads: int | None, parent: int | None) -> None:
    """`threads` threads (`set_threads`); in a worker process that the command's main process
    `parent` started, Ctrl-C and SIGTERM are left to the parent, which stops the workers, and
    the process ends when the parent is gone, whatever ended it (`watch_parent`)."""
    set_threads(threads)
    if parent is None or os.getpid() == parent or _WATCHED:
        return
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.getppid() == parent:
        watch_parent()


def helper_process() -> None:
    """Initializer of a helper process of the main process (the queue's manager): signals are
    the main process's to handle, and it ends when its parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    watch_parent()


def watch_parent(every: float = 0.5) -> None:
    """End this process (os._exit) within `every` seconds of its parent process ending, however
    it ended (SIGKILL included): the orphan is handed to another parent, which a thread sees."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)
    _WATCHED.append(parent)
    threading.Thread(target=watch, daemon=True, name="disentbench-parent-watch").start()


def set_threads(threads: int | None) -> None:
    """`threads` torch, BLAS/OpenMP and numba (where installed) threads in this process."""
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
    _THREADS[:] = [threads]
