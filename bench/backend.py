"""Where the plan's units run, with a progress bar, a line per finished run and a summary.

Backends, both through joblib, run `worker.run_unit` on each unit:
- `local`: loky worker processes on this machine (`jobs` of them, each with `threads` torch,
  BLAS/OpenMP and numba threads); on a GPU several processes share the device.
- `dask`: joblib's Dask backend, on an existing cluster (`scheduler` address) or a LocalCluster of
  `jobs` single-threaded worker processes.
The only shared state is the results folder, so results do not depend on the scheduling; each
run is claimed there (bench/claims.py), so that several commands, shards or machines can share
one folder. Workers on this machine report steps and finished runs through a queue; the results
a unit returns close what the queue did not report. The worker processes started here (loky's,
the queue's manager) end when this process ends, whatever ends it; SIGTERM (a batch system's
time limit) stops the grid as Ctrl-C does.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue as queues
import signal
import sys
import threading
from dataclasses import dataclass
from multiprocessing.managers import SyncManager

import joblib
import torch
from tqdm.auto import tqdm

from disentbench.bench import worker
from disentbench.bench.claims import CLAIM, read_holder, stale_seconds
from disentbench.bench.plan import GridError, Options, Plan, key
from disentbench.bench.session import mark_stopped
from disentbench.bench.signals import Terminated
from disentbench.bench.store import RunView, Status
from disentbench.bench.train import RunResult

# Worker processes sharing one GPU. Measured on an H200: one harness process 11.8k images/s,
# four at once 10.7-11.0k each, about 43k together.
GPU_JOBS = 4


def check_setup(jobs: int, cores: int, scheduler: str | None) -> None:
    """GridError for a bad claim setting (bench/claims.py); a warning on stderr where `jobs`
    local worker processes are far more than the `cores`."""
    try:
        stale_seconds()
    except ValueError as err:
        raise GridError(str(err)) from None
    if jobs > 2 * cores and not scheduler:
        print(f"warning: --jobs {jobs} is far above this machine's {cores} cores; each worker "
              f"process holds its own copy of the data and model (at most one per unit of "
              f"work is started)", file=sys.stderr)


def default_jobs(device) -> int:
    """Worker processes by default: one per core on a CPU, `GPU_JOBS` sharing a GPU."""
    return joblib.cpu_count() if torch.device(device).type == "cpu" else GPU_JOBS


# The exit code where no run failed but some were left to other processes holding their claims
# (sysexits' EX_TEMPFAIL: a later rerun finds them done).
LEFT_TO_OTHERS = 75


@dataclass
class Report:
    results: list[RunResult]
    interrupted: list[str] | None = None   # after Ctrl-C: "<run>: step N" of the stopped runs
    terminated: bool = False               # the interruption was SIGTERM

    @property
    def failed(self) -> bool:
        return any(r.status == Status.FAILED for r in self.results)

    @property
    def elsewhere(self) -> bool:
        """Some runs were left to other processes that hold their claims."""
        return any(r.status == Status.RUNNING for r in self.results)

    @property
    def exit_code(self) -> int:
        """130 after Ctrl-C, 143 after SIGTERM; else 1 if a run failed, LEFT_TO_OTHERS if some
        were left to other processes, 0 when every run is done."""
        if self.interrupted is not None:
            return 143 if self.terminated else 130
        return 1 if self.failed else LEFT_TO_OTHERS if self.elsewhere else 0


def connect(options: Options):
    """The Dask client of `options` (raises GridError if its scheduler cannot be reached);
    None for the local backend. Without a scheduler address: a LocalCluster of `jobs`
    single-threaded worker processes."""
    if options.backend != "dask":
        return None
    from dask.distributed import Client, LocalCluster
    if options.scheduler:
        try:
            return Client(options.scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as err:
            raise GridError(f"cannot reach the Dask scheduler at {options.scheduler} ({err}); "
                            f"start it (`dask scheduler`) or leave out --scheduler for a local "
                            f"cluster") from None
    ctrl_c = signal.signal(signal.SIGINT, signal.SIG_IGN)     # the workers inherit: Ctrl-C
    try:                                                        # is the parent's to handle
        cluster = LocalCluster(n_workers=options.jobs, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
    finally:
        signal.signal(signal.SIGINT, ctrl_c)
    return Client(cluster)


def close(client) -> None:
    """Close `client`, and its LocalCluster (which stops the worker processes) if it has one."""
    client.close()
    if getattr(client, "cluster", None) is not None:
        client.cluster.close()


def run(plan: Plan) -> Report:
    """Run the plan's units on local processes or Dask (raises GridError if the scheduler
    cannot be reached), with a progress bar and a line per finished run, on at most one worker
    per unit. Ctrl-C or SIGTERM stops the workers and marks the runs they were training as
    interrupted (on an existing Dask cluster, its workers finish the runs they hold)."""
    options = plan.options
    client = connect(options)
    if client is not None or options.jobs > 1:
        worker._DATA.clear()            # the workers load their own; free this process's copy
    with contextlib.ExitStack() as stack:
        if client is not None:
            stack.callback(close, client)
        progress = Progress(stack.enter_context(bar(plan)), plan)
        queue = None
        if client is None and options.jobs == 1:         # the units run in this thread
            queue = queues.SimpleQueue()
        elif not options.scheduler and plan.units:       # in processes on this machine
            manager = SyncManager()
            manager.start(worker.helper_process)
            stack.callback(manager.shutdown)
            queue = manager.Queue()
        if queue is not None:
            drain = threading.Thread(target=progress.drain, args=(queue,), daemon=True)
            drain.start()
            stack.callback(drain.join, 5)
            stack.callback(worker.tell, queue, None)
        stack.enter_context(joblib.parallel_config(
            backend="dask" if client is not None else "loky",
            n_jobs=options.jobs if client is None else -1))
        parallel = joblib.Parallel(return_as="generator_unordered")
        try:
            for results in parallel(joblib.delayed(worker.run_unit)(unit, options, queue,
                                                                    os.getpid())
                                    for unit in plan.units):
                for result in results:      # those the queue has not reported already
                    progress.finished(result)
        except KeyboardInterrupt as stop:
            progress.bar.close()
            if client is not None:
                close(client)               # a LocalCluster's workers stop here
            return Report(in_order(progress.results, plan), mark_interrupted(plan),
                          isinstance(stop, Terminated))
    return Report(in_order(progress.results, plan))


def bar(plan: Plan):
    """The progress bar: over the steps to train, or over the runs where only evaluation is
    left; none where nothing is to do."""
    if plan.steps:
        return tqdm(total=plan.steps, unit=" steps", dynamic_ncols=True, desc="training")
    return tqdm(total=plan.runs - len(plan.settled), unit=" runs", dynamic_ncols=True,
                desc="evaluating", disable=not plan.units)


def in_order(results: list[RunResult], plan: Plan) -> list[RunResult]:
    rank = {name: i for i, name in enumerate(plan.order)}
    return sorted(results, key=lambda r: rank.get(r.name, len(rank)))


def mark_interrupted(plan: Plan) -> list[str]:
    """After Ctrl-C or SIGTERM (the workers are stopped): in every run whose claim this command
    holds, note in a status left `running` that its process is gone (it stays resumable), then
    release the claim."""
    if plan.options.scheduler:
        return []
    out, stopped = plan.options.out, []
    for unit in plan.units:
        specs = list(unit.specs)
        specs += [made[0] for spec in unit.specs for rule in unit.derived
                  if (made := rule.derive(spec, out)) is not None]
        for spec in specs:
            holder = read_holder(spec.run_dir(out))
            if holder is None or holder.invocation != plan.options.invocation:
                continue                    # not ours: another command's run, or not begun
            step = mark_stopped(RunView.of(spec, out))
            (spec.run_dir(out) / CLAIM).unlink(missing_ok=True)     # noted first, then freed
            if step is not None:
                stopped.append(f"{key(spec)}: step {step}")
    return stopped


class Progress:
    """The bar (over the steps left to train, or the runs left to evaluate), the runs done, a
    line per finished run. Workers report ("steps", runs, n) and ("finished", result) through a
    queue, drained by a thread; the results returned by the units close what the queue did not.
    The bar counts the steps trained; a run that fails or is left to another process takes the
    steps it will not train off the total, so that the bar and its ETA follow what happens."""

    def __init__(self, bar, plan: Plan):
        self.bar, self.runs, self.results = bar, plan.runs, list(plan.settled)
        self.by_steps = plan.steps > 0
        self.lock, self.counted, self.closed = threading.Lock(), collections.defaultdict(int), set()
        self.expected = {name: steps for unit in plan.units      # run -> steps it has left
                         for name, steps in unit.left.items()}
        self.bar.set_postfix_str(self.postfix())
        for result in plan.settled:               # what the plan found worth a line
            if result.reason:
                self.bar.write(line(result))

    def drain(self, queue) -> None:
        try:
            while (item := queue.get()) is not None:
                if item[0] == "steps":
                    self.steps(*item[1:])
                else:
                    self.finished(item[1])
        except (OSError, EOFError):         # the queue's manager is gone: the grid stopped
            pass

    def steps(self, names: list[str], n: int) -> None:
        """`n` steps trained by the runs `names` together (a seed group), shared among those
        not finished yet."""
        with self.lock:
            open_ = [name for name in names if name not in self.closed]
            for name in open_:
                self.counted[name] += n / len(open_)
            if open_ and self.by_steps:
                self.bar.update(n)

    def finished(self, result: RunResult) -> None:
        with self.lock:
            if result.name in self.closed:
                return
            self.closed.add(result.name)
            if self.by_steps:
                trained = result.trained if result.status != Status.RUNNING else 0
                counted = self.counted[result.name]
                if trained > counted:            # steps the queue did not report (Dask)
                    self.bar.update(round(trained - counted))
                not_trained = round(self.expected.get(result.name, 0) - max(trained, counted))
                if not_trained > 0:
                    self.bar.total -= not_trained
                    self.bar.refresh()
            elif result.name in self.expected:
                self.bar.update(1)
            self.results.append(result)
            self.bar.set_postfix_str(self.postfix())
            self.bar.write(line(result))

    def postfix(self) -> str:
        failed = sum(r.status == Status.FAILED for r in self.results)
        away = sum(r.status == Status.RUNNING for r in self.results)
        return (f"runs {len(self.results)}/{self.runs}" + (f", {failed} failed" if failed else "")
                + (f", {away} running elsewhere" if away else ""))


def line(result: RunResult) -> str:
    text = f"{result.status:6} {result.name}: {result.work}"
    if result.seconds:
        text += f" ({result.seconds:.1f} s)"
    return text + (f": {result.reason}" if result.reason else "")


def summary(results: list[RunResult]) -> str:
    """Counts, the failed runs with their reasons, the runs left to other processes with
    their holders, and a method x dataset table of done / failed / seconds."""
    failed = [r for r in results if r.status == Status.FAILED]
    away = [r for r in results if r.status == Status.RUNNING]
    trained = sum(r.status == Status.DONE and not r.earlier for r in results)
    already = sum(r.status == Status.DONE and r.earlier for r in results)
    lines = [f"{len(results)} runs: {trained} trained or evaluated now, {already} already done, "
             f"{len(failed)} failed" + (f", {len(away)} left to other processes" if away else "")]
    lines += [f"  failed: {r.name}: {r.reason} ({r.work})" for r in failed]
    lines += [f"  {r.name}: {r.reason}" for r in away]
    if not results:
        return lines[0]
    labels = list(dict.fromkeys(r.label for r in results))
    names = list(dict.fromkeys(r.dataset for r in results))
    cells = collections.defaultdict(lambda: [0, 0, 0.0])
    for r in results:
        cell = cells[(r.label, r.dataset)]
        if r.status in (Status.DONE, Status.FAILED):
            cell[0 if r.status == Status.DONE else 1] += 1
        cell[2] += r.seconds
    width = max(len(label) for label in labels)
    lines.append("done / failed / seconds".rjust(width) + "".join(f"  {n:>22}" for n in names))
    for label in labels:
        row = "".join(f"  {f'{c[0]} / {c[1]} / {c[2]:.0f}':>22}"
                      for c in (cells[(label, n)] for n in names))
        lines.append(label.ljust(width) + row)
    return "\n".join(lines)
