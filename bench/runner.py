"""Run a grid of RunSpecs in parallel; each worker trains and then evaluates its runs.

The unit of work is a seed group: runs that differ only in seed, trained as one stacked model
(bench/group.py) when `--group-seeds` asks for groups, else one run. L-VAE runs take their
fixed-β̂ ablation runs along: those start as soon as their L-VAE runs are done, in the same
worker, as a group of their own. The only shared state is the results folder, so results do not
depend on the scheduling; a member of a group follows its single run up to float rounding
(tests/test_group.py). `--group-seeds auto` groups only where the device rule
(`group.should_group`: a GPU) holds and a timed probe on the device confirms that a group step
costs each member less than a single step. Backends, both through joblib:
- `local`: loky worker processes on this machine (`jobs` of them, each with `threads` torch,
  BLAS/OpenMP and numba threads); on a GPU several processes share the device.
- `dask`: joblib's Dask backend, on an existing cluster (`scheduler` address) or a LocalCluster of
  `jobs` single-threaded worker processes.
A worker process loads each dataset once and keeps it on its device. Rerunning skips runs that
are trained and evaluated, resumes interrupted ones and retries failed ones only when asked.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import signal
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import joblib
import torch
from tqdm.auto import tqdm

from disentbench.bench import data as datasets
from disentbench.bench import grid
from disentbench.bench.evaluate import evaluate_run, pending_metrics
from disentbench.bench.group import AUTO_SIZE, GroupTrainer, should_group, train_group
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import RunConflict, RunDamaged, RunStore, is_finished
from disentbench.bench.train import RunResult, Trainer, train

# Worker processes sharing one GPU. Measured on an H200 (issue 9): one harness process 11.8k
# images/s, four at once 10.7-11.0k each, about 43k together.
GPU_JOBS = 4


def default_jobs(device) -> int:
    """Worker processes by default: one per core on a CPU, `GPU_JOBS` sharing a GPU."""
    return joblib.cpu_count() if torch.device(device).type == "cpu" else GPU_JOBS


class GridError(Exception):
    """Bad input found while preparing the grid; the message names the problem and the fix."""


@dataclass(frozen=True)
class Options:
    """How the grid runs: where results go, the device, the metrics, parallelism, store flags."""
    out: Path
    device: str
    metrics: tuple = ()
    eval_size: str = "quick"
    eval_seed: int = 0
    data_dir: str | None = None
    jobs: int = 1
    threads: int | None = 1          # per worker; None: as the (Dask) cluster set them
    backend: str = "local"
    scheduler: str | None = None
    ablation: bool = True
    retry_failed: bool = False
    keep_checkpoints: bool = False
    repair: bool = False
    precision: str = "fp32"          # auto|bf16|fp32 (bench/precision.py), per worker's device
    profile: str | None = None       # recorded in each run's config.json for the report
    group_seeds: int | None = 1      # members per seed group (1: off); None: auto (group_size)

    def train_flags(self) -> dict:
        """What `train` takes from the options besides the run (store flags, precision)."""
        return {"keep_checkpoints": self.keep_checkpoints, "repair": self.repair,
                "retry_failed": self.retry_failed, "precision": self.precision}


@dataclass
class Outcome:
    """What happened to one run in this session."""
    dataset: str
    label: str
    seed: int
    status: str                      # "done" or "failed"
    work: str                        # e.g. "trained 100 steps, evaluated", "already done"
    reason: str = ""
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.label}/seed{self.seed}"


@dataclass
class Task:
    """A seed group for a worker (runs that differ only in seed; one run when groups are off),
    with their fixed-β̂ ablation runs after them when `ablation` is set."""
    specs: list[RunSpec]
    load: Callable                   # the dataset's loader (datasets.loader)
    ablation: bool
    left: dict[str, int]             # steps left to train, by run name, ablation runs included

    @property
    def steps(self) -> int:
        return sum(self.left.values())

    @property
    def own_steps(self) -> int:
        """Steps left to the task's own runs (without their ablation runs)."""
        return sum(self.left[_key(spec)] for spec in self.specs)


@dataclass
class Grid:
    options: Options
    tasks: list[Task]
    settled: list[Outcome]           # runs already done, or failed and not retried
    runs: int                        # every run of the grid, ablation runs included
    steps: int                       # steps left to train
    eta_seconds: float | None        # training time from a probe of each method; None: unknown
    order: list[str]                 # every run's name, in the grid's order (for the summary)
    group: int = 1                   # members per seed group (1: every run alone)


# Per worker process: the datasets loaded so far, on their device.
_DATA: dict = {}
_THREADS: list = []          # the thread count set in this process


def dataset(name: str, load: Callable, data_dir, device) -> datasets.GroundTruthData:
    """`name` loaded once per process with `load` and kept on `device`."""
    key = (name, data_dir, str(device))
    if key not in _DATA:
        _DATA[key] = load(data_dir=data_dir).to(device)
    return _DATA[key]


def load_datasets(names, data_dir, device) -> dict:
    """Load every dataset of the grid here (raises GridError for a missing or bad one)."""
    try:
        return {name: dataset(name, datasets.loader(name), data_dir, device) for name in names}
    except datasets.DatasetError as err:
        raise GridError(str(err)) from None


def prepare(specs: list[RunSpec], options: Options) -> Grid:
    """Check the grid against this machine and the results folder (raises GridError), decide
    which runs still need work, and estimate the training time."""
    for spec in specs:
        data = _loaded(spec.dataset, options)
        if spec.batch_size > len(data):
            raise GridError(f"--batch-size {spec.batch_size} is larger than dataset "
                            f"{spec.dataset} ({len(data)} images); choose at most {len(data)}")
    todo, settled, order = [], [], []
    for spec in specs:
        _check_folder(spec, options.out)
        with_ablation = options.ablation and grid.is_ablation_source(spec)
        order += [_key(spec)] + ([_ablation_key(spec)] if with_ablation else [])
        ablation = _ablation_of(spec, options.out) if with_ablation else None
        if ablation is not None:
            _check_folder(ablation, options.out)
        state = _state(spec, options)
        ablation_state = _state(ablation, options) if ablation is not None else "todo"
        if state == "todo" or (with_ablation and state == "complete" and ablation_state == "todo"):
            todo.append((spec, with_ablation))
            continue
        settled.append(_settled(spec, state, options.out))
        if with_ablation:
            settled.append(_settled(ablation, ablation_state, options.out) if ablation else
                           _not_trained(spec, "its L-VAE run failed"))
    size = group_size([spec for spec, _ in todo], options)
    tasks = [Task(members, datasets.loader(members[0].dataset), with_ablation,
                  _steps_by_run(members, with_ablation, options))
             for members, with_ablation in _seed_groups(todo, size)]
    eta = None if options.scheduler else _eta_seconds(tasks, options) if tasks else 0.0
    return Grid(options, tasks, settled, len(order), sum(t.steps for t in tasks), eta, order,
                size)


def _seed_groups(todo: list[tuple[RunSpec, bool]], size: int) -> list[tuple[list[RunSpec], bool]]:
    """The runs of `todo` that differ only in seed, in chunks of at most `size`, in grid order."""
    cells: dict[str, list[RunSpec]] = {}
    ablation = {}
    for spec, with_ablation in todo:
        cells.setdefault(_cell(spec), []).append(spec)
        ablation[_cell(spec)] = with_ablation
    return [(members[i:i + size], ablation[key]) for key, members in cells.items()
            for i in range(0, len(members), size)]


def _cell(spec: RunSpec) -> str:
    """The spec without its seed: runs with the same cell differ only in seed."""
    return json.dumps({k: v for k, v in spec.to_dict().items() if k != "seed"}, sort_keys=True)


def group_size(specs: list[RunSpec], options: Options) -> int:
    """Members per seed group: `options.group_seeds` when given (1: off); for auto (None), up to
    `group.AUTO_SIZE` seeds where `group.should_group` says groups may pay on the device (a GPU)
    and, for workers on this machine, a timed probe there confirms that one group step of the
    grid's first run costs each member less than its single step; else 1 (never slower than
    single runs, as far as the probe can tell)."""
    if options.group_seeds is not None:
        return options.group_seeds
    size = min(AUTO_SIZE, max(collections.Counter(map(_cell, specs)).values(), default=1))
    if not should_group(options.device, size):
        return 1
    if options.scheduler:                                    # the workers' device is elsewhere
        return size
    single, grouped = _probe(specs[0], options), _probe(specs[0], options, members=size)
    return size if single is not None and grouped is not None and grouped < single else 1


def _loaded(name: str, options: Options) -> datasets.GroundTruthData:
    """`name` as `load_datasets` loaded it here (on the device, or on the CPU for a cluster)."""
    return next(data for (loaded, data_dir, _), data in _DATA.items()
                if loaded == name and data_dir == options.data_dir)


def _check_folder(spec: RunSpec, out) -> None:
    """GridError if `spec`'s folder holds another run (a damaged config.json is not a conflict:
    training reports it, or moves the folder aside with --repair)."""
    store = RunStore.of(spec, out)
    if not store.exists():
        return
    try:
        store.check_spec(spec)
    except RunConflict as err:
        raise GridError(str(err)) from None
    except RunDamaged:
        pass


def _state(spec: RunSpec, options: Options) -> str:
    """"complete" (trained and evaluated), "failed" (and not to be retried) or "todo" (new,
    resumable, damaged: `train` fails or repairs it, or done with metrics to compute)."""
    kind = RunStore.of(spec, options.out).state(spec).kind
    if kind == "failed" and not options.retry_failed:
        return "failed"
    if kind == "done" and not pending_metrics(
            spec.run_dir(options.out), options.metrics, size=options.eval_size,
            seed=options.eval_seed):
        return "complete"
    return "todo"


def _steps_left(spec: RunSpec, options: Options) -> int:
    state = RunStore.of(spec, options.out).state(spec)
    return 0 if state.kind in ("done", "failed") else max(0, spec.steps - state.step)


def _steps_by_run(specs: list[RunSpec], with_ablation: bool, options: Options) -> dict[str, int]:
    """Steps left to each run of `specs` and, `with_ablation`, to each one's ablation run (all
    of its steps before it exists), by run name."""
    left = {}
    for spec in specs:
        left[_key(spec)] = _steps_left(spec, options)
        if with_ablation:
            ablation = _ablation_of(spec, options.out)
            left[_ablation_key(spec)] = (_steps_left(ablation, options) if ablation is not None
                                         else spec.steps)
    return left


def _ablation_of(source: RunSpec, out) -> RunSpec | None:
    """The fixed-β̂ ablation run of the L-VAE run `source`, once `source` is trained."""
    if not is_finished(source, out):
        return None
    history = RunStore.of(source, out).read_history()
    beta_hat = history[-1].get("beta_hat") if history else None
    return None if beta_hat is None else grid.ablation_spec(source, beta_hat)


def _settled(spec: RunSpec, state: str, out) -> Outcome:
    """The outcome of a run that needs no work: complete, or failed and not retried."""
    if state == "complete":
        return Outcome(spec.dataset, spec.label, spec.seed, "done", "already done")
    reason = RunStore.of(spec, out).read_status().get("reason", "no reason recorded")
    return Outcome(spec.dataset, spec.label, spec.seed, "failed",
                   "failed earlier, --retry-failed retries it", reason)


def _not_trained(source: RunSpec, why: str) -> Outcome:
    return Outcome(source.dataset, grid.ABLATION_LABEL, source.seed, "failed", "not trained",
                   f"not trained: {why}")


# ---------------------------------------------------------------- the worker

def run_task(task: Task, options: Options, queue=None) -> list[Outcome]:
    """Train and evaluate `task`'s runs (as one seed group when there are several), then their
    ablation runs, in this worker process; never raises for a failing run. `queue` receives
    ("steps", run names, n) as training goes on and ("finished", outcome) per run."""
    _set_threads(options.threads)
    first = task.specs[0]
    try:
        data = dataset(first.dataset, task.load, options.data_dir, options.device)
    except Exception as err:                         # noqa: BLE001 - the runs' failure
        reason = f"loading {first.dataset}: {type(err).__name__}: {err}"
        return [outcome for spec in task.specs for outcome in
                [Outcome(spec.dataset, spec.label, spec.seed, "failed", "not trained", reason)]
                + ([_not_trained(spec, reason)] if task.ablation else [])]
    outcomes = _run_group(task.specs, data, options, queue)
    if task.ablation:
        sources = {spec: _ablation_of(spec, options.out) for spec in task.specs}
        outcomes += [_not_trained(spec, "its L-VAE run failed")
                     for spec, ablation in sources.items() if ablation is None]
        pairs = [(spec, ablation) for spec, ablation in sources.items() if ablation is not None]
        if pairs:
            records = [grid.ablation_record(spec, dict(ablation.params)["beta"], options.out)
                       for spec, ablation in pairs]
            outcomes += _run_group([ablation for _, ablation in pairs], data, options, queue,
                                   records)
    return outcomes


def _run_group(specs: list[RunSpec], data, options: Options, queue,
               records: list[dict] | None = None) -> list[Outcome]:
    """Train (as one group when several need it) and evaluate `specs`; `records` are one more
    config.json dict per run. Tells the queue each finished run."""
    records = records or [{}] * len(specs)
    profile = {"profile": options.profile} if options.profile else {}
    states = [_state(spec, options) for spec in specs]
    outcomes = {spec: _settled(spec, state, options.out)
                for spec, state in zip(specs, states) if state != "todo"}
    todo = [(spec, {**profile, **record})
            for spec, state, record in zip(specs, states, records) if state == "todo"]
    names = [_key(spec) for spec, _ in todo]
    progress = (lambda n: _tell(queue, "steps", names, n)) if queue is not None else None
    start = time.perf_counter()
    try:
        if len(todo) > 1:
            results = train_group([spec for spec, _ in todo], options.out, data=data,
                                  device=options.device, progress=progress,
                                  member_extra=[extra for _, extra in todo],
                                  **options.train_flags())
        else:
            results = [train(spec, options.out, data=data, device=options.device,
                             progress=progress, config_extra=extra, **options.train_flags())
                       for spec, extra in todo]
    except Exception as err:                          # noqa: BLE001 - isolate the runs
        results = [f"{type(err).__name__}: {err}"] * len(todo)
    share = (time.perf_counter() - start) / max(1, len(todo))   # of the group's training time
    for (spec, _), result in zip(todo, results):
        outcomes[spec] = _evaluated(spec, result, data, options, share)
        _tell(queue, "finished", outcomes[spec])
    return [outcomes[spec] for spec in specs]


def _evaluated(spec: RunSpec, result: RunResult | str, data, options: Options,
               seconds: float) -> Outcome:
    """The outcome of a trained run (`result`, or the error that stopped its training), with
    its metrics computed; `seconds` is its share of the training time."""
    start = time.perf_counter()

    def outcome(status, work, reason=""):
        return Outcome(spec.dataset, spec.label, spec.seed, status, work, reason,
                       seconds + time.perf_counter() - start)
    if isinstance(result, str):
        return outcome("failed", "stopped", result)
    if result.status == "failed":
        return outcome("failed", f"failed at step {result.step}", result.reason)
    work = f"trained {result.step} steps" if result.status == "done" else "trained before"
    if options.metrics:
        try:
            evaluation = evaluate_run(result.run_dir, data, list(options.metrics),
                                      size=options.eval_size, seed=options.eval_seed,
                                      device=options.device)
        except Exception as err:                      # noqa: BLE001 - isolate the run
            return outcome("failed", work, f"{type(err).__name__}: {err}")
        errors = [f"{n}: {r['error']}" for n, r in evaluation["metrics"].items() if "error" in r]
        if errors:
            return outcome("failed", work, "evaluation failed: " + "; ".join(errors))
        work += ", evaluated"
    return outcome("done", work)


def _tell(queue, *item) -> None:
    """Tell the parent's progress bar; a parent gone (Ctrl-C) does not fail the run."""
    if queue is None:
        return
    try:
        queue.put(item)
    except (OSError, EOFError):
        pass


def _set_threads(threads: int | None) -> None:
    """`threads` torch, BLAS/OpenMP and numba threads in this process (more threads than cores
    slow every process down many times over); in a worker process, Ctrl-C is left to the
    parent, which stops the workers."""
    if threads is None or _THREADS == [threads]:
        return
    import numba
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(threads)
    threadpool_limits(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if (not _THREADS and multiprocessing.parent_process() is not None
            and threading.current_thread() is threading.main_thread()):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _THREADS[:] = [threads]


# ---------------------------------------------------------------- estimate

def _eta_seconds(tasks: list[Task], options: Options) -> float | None:
    """Training time of `tasks` on `options.jobs` local workers, from a few timed steps of each
    method here, with a worker's thread count. A method whose probe fails (it will fail as a
    run, with its reason) is left out; None if no probe worked."""
    per_step, total = {}, 0.0
    threads = torch.get_num_threads()
    torch.set_num_threads(options.threads or threads)
    try:
        for task in tasks:
            members = len(task.specs)
            own = task.own_steps
            probes = [(task.specs[0], own)]
            if task.ablation:                      # the ablation runs train beta-vae
                probes.append((grid.ablation_spec(task.specs[0], 1.0), task.steps - own))
            for spec, steps in probes:
                key = (spec.dataset, spec.method, spec.params, members)
                if key not in per_step:
                    per_step[key] = _probe(spec, options, members)
                total += (per_step[key] or 0.0) * steps
    finally:
        torch.set_num_threads(threads)
    if all(v is None for v in per_step.values()):
        return None
    return total / options.jobs


def _probe(spec: RunSpec, options: Options, members: int = 1, steps: int = 3) -> float | None:
    """Median seconds of one training step of `spec` after a warm-up step, per member of a seed
    group of `members` (seeds 0..members-1; one run when 1); None if it fails."""
    data = _loaded(spec.dataset, options)
    device = data.device
    try:
        if members > 1:
            trainer = GroupTrainer([dataclasses.replace(spec, seed=seed)
                                    for seed in range(members)], data, device, options.precision)
        else:
            trainer = Trainer(spec, data, device, options.precision)
        trainer.step()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            trainer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        return statistics.median(times) / members
    except Exception:                                 # noqa: BLE001 - the run will say why
        return None


# ---------------------------------------------------------------- the grid

@dataclass
class Report:
    outcomes: list[Outcome]
    interrupted: list[str] | None = None   # after Ctrl-C: "<run>: step N" of the stopped runs


def _connect(options: Options):
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


def _close(client) -> None:
    """Close `client`, and its LocalCluster (which stops the worker processes) if it has one."""
    client.close()
    if getattr(client, "cluster", None) is not None:
        client.cluster.close()


def run(grid_: Grid) -> Report:
    """Run the grid's tasks on local processes or Dask (raises GridError if the scheduler
    cannot be reached), with a progress bar and a line per finished run. Ctrl-C stops the
    workers and marks the runs they were training as interrupted (on an existing Dask cluster,
    its workers finish the runs they hold)."""
    options = grid_.options
    client = _connect(options)
    if client is not None or options.jobs > 1:
        _DATA.clear()                    # the workers load their own; free this process's copy
    with contextlib.ExitStack() as stack:
        if client is not None:
            stack.callback(_close, client)
        progress = _Progress(stack.enter_context(tqdm(total=grid_.steps, unit="step",
                                                      dynamic_ncols=True, desc="training")),
                             grid_)
        queue = None
        if not options.scheduler:                      # the workers are on this machine
            queue = stack.enter_context(multiprocessing.Manager()).Queue()
            drain = threading.Thread(target=progress.drain, args=(queue,), daemon=True)
            drain.start()
            stack.callback(drain.join)
            stack.callback(queue.put, None)
        stack.enter_context(joblib.parallel_config(
            backend="dask" if client is not None else "loky",
            n_jobs=options.jobs if client is None else -1))
        parallel = joblib.Parallel(return_as="generator_unordered")
        try:
            for results in parallel(joblib.delayed(run_task)(task, options, queue)
                                    for task in grid_.tasks):
                for outcome in results:      # those the queue has not reported already
                    progress.finished(outcome)
        except KeyboardInterrupt:
            progress.bar.close()
            if client is not None:
                _close(client)               # a LocalCluster's workers stop here
            return Report(_in_order(progress.outcomes, grid_), _mark_interrupted(grid_, options))
    return Report(_in_order(progress.outcomes, grid_))


def _in_order(outcomes: list[Outcome], grid_: Grid) -> list[Outcome]:
    rank = {name: i for i, name in enumerate(grid_.order)}
    return sorted(outcomes, key=lambda o: rank.get(o.name, len(rank)))


class _Progress:
    """The bar over the steps left to train, the runs done, a line per finished run. Workers
    report ("steps", runs, n) and ("finished", outcome) through a queue, drained by a thread;
    the outcomes returned by the tasks close what the queue did not."""

    def __init__(self, bar, grid_: Grid):
        self.bar, self.runs, self.outcomes = bar, grid_.runs, list(grid_.settled)
        self.lock, self.counted, self.closed = threading.Lock(), collections.defaultdict(int), set()
        self.expected = {name: steps for task in grid_.tasks          # run -> steps it has left
                         for name, steps in task.left.items()}
        self.bar.set_postfix_str(f"runs {len(self.outcomes)}/{self.runs}")

    def drain(self, queue) -> None:
        while (item := queue.get()) is not None:
            if item[0] == "steps":
                self.steps(*item[1:])
            else:
                self.finished(item[1])

    def steps(self, names: list[str], n: int) -> None:
        """`n` steps trained by the runs `names` together (a seed group), shared among those
        not finished yet."""
        with self.lock:
            open_ = [name for name in names if name not in self.closed]
            for name in open_:
                self.counted[name] += n / len(open_)
            if open_:
                self.bar.update(n)

    def finished(self, outcome: Outcome) -> None:
        with self.lock:
            if outcome.name in self.closed:
                return
            self.closed.add(outcome.name)
            self.bar.update(max(0, round(self.expected.get(outcome.name, 0)
                                       - self.counted[outcome.name])))
            self.outcomes.append(outcome)
            self.bar.set_postfix_str(f"runs {len(self.outcomes)}/{self.runs}")
            self.bar.write(_line(outcome))


def _key(spec: RunSpec) -> str:
    return f"{spec.dataset}/{spec.label}/seed{spec.seed}"


def _ablation_key(source: RunSpec) -> str:
    return f"{source.dataset}/{grid.ABLATION_LABEL}/seed{source.seed}"


def _mark_interrupted(grid_: Grid, options: Options) -> list[str]:
    """After Ctrl-C (the workers are stopped): note in every status left `running` that its
    process is gone (the store's `mark_stopped`; the run stays resumable)."""
    if options.scheduler:
        return []
    stopped = []
    for task in grid_.tasks:
        specs = list(task.specs)
        if task.ablation:
            specs += [a for spec in task.specs if (a := _ablation_of(spec, options.out))]
        for spec in specs:
            step = RunStore.of(spec, options.out).mark_stopped()
            if step is not None:
                stopped.append(f"{_key(spec)}: step {step}")
    return stopped


def _line(outcome: Outcome) -> str:
    text = f"{outcome.status:6} {outcome.name}: {outcome.work}"
    if outcome.seconds:
        text += f" ({outcome.seconds:.1f} s)"
    return text + (f": {outcome.reason}" if outcome.reason else "")


def summary(outcomes: list[Outcome]) -> str:
    """Counts, the failed runs with their reasons, and a method x dataset table of
    done / failed / seconds."""
    failed = [o for o in outcomes if o.status == "failed"]
    trained = sum(o.work.startswith("trained") and o.status == "done" for o in outcomes)
    already = sum(o.work == "already done" for o in outcomes)
    lines = [f"{len(outcomes)} runs: {trained} trained or evaluated now, {already} already done, "
             f"{len(failed)} failed"]
    lines += [f"  failed: {o.name}: {o.reason} ({o.work})" for o in failed]
    if not outcomes:
        return lines[0]
    labels = list(dict.fromkeys(o.label for o in outcomes))
    names = list(dict.fromkeys(o.dataset for o in outcomes))
    cells = collections.defaultdict(lambda: [0, 0, 0.0])
    for o in outcomes:
        cell = cells[(o.label, o.dataset)]
        cell[0 if o.status == "done" else 1] += 1
        cell[2] += o.seconds
    width = max(len(label) for label in labels) if labels else 6
    lines.append("done / failed / seconds".rjust(width) + "".join(f"  {n:>22}" for n in names))
    for label in labels:
        row = "".join(f"  {f'{c[0]} / {c[1]} / {c[2]:.0f}':>22}"
                      for c in (cells[(label, n)] for n in names))
        lines.append(label.ljust(width) + row)
    return "\n".join(lines)
