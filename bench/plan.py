"""The plan: a grid of RunSpecs as units of work. Pure: it trains and writes nothing.

A unit is a seed group (runs that differ only in seed, at most `group` of them; one run when
groups are off) plus the derived runs made from its runs once they are done (`DerivedRun`: the
fixed-β̂ ablation, bench/grid.py). Every run folder is read once here, through the store's
checked view; a unit carries what was read (the steps left to each run, and the results of runs
that need nothing), so the backend's progress bar and ETA and the worker start from it. Runs
that need nothing at all (trained and evaluated; failed and not retried) are `settled`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from disentbench.bench import data as datasets
from disentbench.bench.evaluate import pending_metrics
from disentbench.bench.spec import RunSpec
from disentbench.bench.store import RunConflict, RunState, RunView, Status
from disentbench.bench.train import RunResult


class GridError(Exception):
    """Bad input found while planning the grid; the message names the problem and the fix."""


@dataclass(frozen=True)
class DerivedRun:
    """A run whose spec is computed from a finished source run: `derive(source, out)` gives
    (its spec, a record for its config.json), or None while the source is not done or gives
    nothing to derive from. `applies(spec)` says which grid runs are sources; `example(source)`
    is a spec like the one it will derive (for the ETA's probe, before the source is done)."""
    label: str
    source: str                                     # what the source is, for messages
    applies: Callable[[RunSpec], bool]
    derive: Callable[[RunSpec, Path], "tuple[RunSpec, dict] | None"]
    example: Callable[[RunSpec], RunSpec]

    def key(self, source: RunSpec) -> str:
        return f"{source.dataset}/{self.label}/seed{source.seed}"

    def not_trained(self, source: RunSpec, why: str) -> RunResult:
        return RunResult(source.dataset, self.label, source.seed, Status.FAILED,
                         reason=f"not trained: {why}")

    def elsewhere(self, source: RunSpec, why: str) -> RunResult:
        """Left, with its source, to the process that holds the source's claim."""
        return RunResult(source.dataset, self.label, source.seed, Status.RUNNING,
                         reason=f"with its {self.source} run, {why}")


@dataclass(frozen=True)
class Options:
    """How the grid runs: where results go, the device, the metrics, parallelism, store flags,
    and the derived runs to make."""
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
    derived: tuple = ()              # DerivedRun rules (the fixed-β̂ ablation)
    retry_failed: bool = False
    keep_checkpoints: bool = False
    repair: bool = False
    precision: str = "fp32"          # auto|bf16|fp32 (bench/precision.py), per worker's device
    profile: str | None = None       # recorded in each run's config.json for the report
    group_seeds: int | None = 1      # members per seed group (1: off); None: auto
    invocation: str = ""             # names this command's claims (bench/claims.py)

    def train_flags(self) -> dict:
        """What training takes from the options besides the runs (store flags, precision)."""
        return {"keep_checkpoints": self.keep_checkpoints, "repair": self.repair,
                "retry_failed": self.retry_failed, "precision": self.precision}


@dataclass
class Unit:
    """A seed group for a worker, with the derived runs to make from its runs."""
    specs: list[RunSpec]
    load: Callable                   # the dataset's loader (a worker may not have it registered)
    derived: tuple                   # the DerivedRun rules that apply to these specs
    left: dict[str, int]             # steps left to train, by run name, derived runs included
    settled: dict[str, RunResult] = field(default_factory=dict)   # its runs that need nothing

    @property
    def steps(self) -> int:
        return sum(self.left.values())

    @property
    def own_steps(self) -> int:
        """Steps left to the unit's own runs (without their derived runs)."""
        return sum(self.left[key(spec)] for spec in self.specs)


@dataclass
class Plan:
    options: Options
    units: list[Unit]
    settled: list[RunResult]         # runs that need nothing: done, or failed and not retried
    order: list[str]                 # every run's name, in the grid's order (for the summary)
    group: int = 1                   # members per seed group (1: every run alone)

    @property
    def runs(self) -> int:
        """Every run of the grid, derived runs included."""
        return len(self.order)

    @property
    def steps(self) -> int:
        """Steps left to train."""
        return sum(unit.steps for unit in self.units)


def key(spec: RunSpec) -> str:
    return f"{spec.dataset}/{spec.label}/seed{spec.seed}"


def check_batch_sizes(specs: list[RunSpec], sizes: dict[str, int]) -> None:
    """GridError if a run's batch is larger than its dataset (`sizes`: images by name)."""
    for spec in specs:
        if spec.batch_size > sizes[spec.dataset]:
            raise GridError(f"--batch-size {spec.batch_size} is larger than dataset "
                            f"{spec.dataset} ({sizes[spec.dataset]} images); choose at most "
                            f"{sizes[spec.dataset]}")


def plan(specs: list[RunSpec], options: Options, group: int = 1) -> Plan:
    """The units of `specs` under `options`, in seed groups of at most `group` (raises
    GridError if a folder holds another run)."""
    cells: dict[str, list[tuple[RunSpec, tuple]]] = {}
    settled, order, left, done = [], [], {}, {}
    for spec in specs:
        rules = tuple(rule for rule in options.derived if rule.applies(spec))
        order += [key(spec)] + [rule.key(spec) for rule in rules]
        outcome, steps = _read(spec, options)
        runs = [(key(spec), outcome, steps)]
        for rule in rules:
            made = rule.derive(spec, options.out) if outcome is not None else None
            if made is not None:
                runs.append((rule.key(spec), *_read(made[0], options)))
            elif outcome is not None and outcome.status == Status.FAILED:
                runs.append((rule.key(spec), rule.not_trained(spec, f"its {rule.source} run "
                                                                    f"failed"), 0))
            else:                    # made once its source is done: all its steps are left
                runs.append((rule.key(spec), None, spec.steps))
        if all(outcome is not None for _, outcome, _ in runs):
            settled += [outcome for _, outcome, _ in runs]
            continue
        left.update({name: steps for name, _, steps in runs})
        done.update({name: outcome for name, outcome, _ in runs if outcome is not None})
        cells.setdefault(cell(spec), []).append((spec, rules))
    units = []
    for members in cells.values():
        for i in range(0, len(members), group):
            chunk = [spec for spec, _ in members[i:i + group]]
            rules = members[i][1]
            names = [key(spec) for spec in chunk] + [rule.key(spec) for spec in chunk
                                                      for rule in rules]
            units.append(Unit(chunk, datasets.loader(chunk[0].dataset), rules,
                              {name: left[name] for name in names},
                              {key(spec): done[key(spec)] for spec in chunk if key(spec) in done}))
    jobs = min(options.jobs, max(1, len(units)))          # no more workers than units
    return Plan(dataclasses.replace(options, jobs=jobs), units, settled, order, group)


def take_shard(specs: list[RunSpec], text: str | None, group: int) -> tuple[list[RunSpec], str]:
    """(The specs of shard `text` = "I/N" of the grid `specs`, a line saying so); the whole
    grid and "" for None. GridError for a bad `text`."""
    part = parse_shard(text)
    if part is None:
        return specs, ""
    mine = shard(specs, *part, group)
    return mine, (f"shard {part[0]}/{part[1]}: {len(mine)} of the grid's {len(specs)} runs "
                  f"(with their derived runs)")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """--shard I/N: (I, N) with 1 <= I <= N, or None for the whole grid; GridError else."""
    if text is None:
        return None
    index, sep, count = str(text).partition("/")
    if sep and index.strip().isdigit() and count.strip().isdigit() \
            and 1 <= int(index) <= int(count):
        return int(index), int(count)
    raise GridError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. --shard 2/4 (SLURM: "
                    f"--array=1-N and --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")


def shard(specs: list[RunSpec], index: int, count: int, group: int) -> list[RunSpec]:
    """Shard `index` (1..count) of the grid `specs`: each cell's seeds in grid order are cut
    into seed groups of `group`, and each group in turn goes to the shard with the fewest runs
    so far (the first such). The shards together are the grid exactly, a seed group is never
    split, and a derived run is made by its source's shard. It depends on the specs alone, not
    on what the results folder holds."""
    cells: dict[str, list[RunSpec]] = {}
    for spec in specs:
        cells.setdefault(cell(spec), []).append(spec)
    sizes, mine = [0] * count, set()
    for members in cells.values():
        for i in range(0, len(members), group):
            chunk = members[i:i + group]
            to = sizes.index(min(sizes))
            sizes[to] += len(chunk)
            if to == index - 1:
                mine.update(key(spec) for spec in chunk)
    return [spec for spec in specs if key(spec) in mine]


def cell(spec: RunSpec) -> str:
    """The spec without its seed: runs with the same cell differ only in seed."""
    return json.dumps({k: v for k, v in spec.to_dict().items() if k != "seed"}, sort_keys=True)


def _read(spec: RunSpec, options: Options) -> tuple[RunResult | None, int]:
    """(its result, if the run needs nothing; the steps left to train), from one checked read
    of its folder. GridError if the folder holds another run."""
    try:
        state = RunView.of(spec, options.out).state(spec)
    except RunConflict as err:
        raise GridError(str(err)) from None
    except OSError as err:           # e.g. permissions removed: this run fails, the grid goes on
        return RunResult.of(spec, options.out, Status.FAILED, reason=(
            f"cannot read its folder {spec.run_dir(options.out)} ({err.strerror or err}); "
            f"fix its permissions and rerun")), 0
    if state.kind == Status.FAILED and not options.retry_failed:
        return RunResult.of(spec, options.out, Status.FAILED, step=state.step,
                            reason=state.message or "no reason recorded", earlier=True), 0
    if state.kind == Status.DONE:
        if not _pending(spec, state, options):
            more = (f"it holds {state.step} steps, more than the {spec.steps} asked; its "
                    f"{state.step}-step model is the one reported" if state.step > spec.steps
                    else "")
            return RunResult.of(spec, options.out, Status.DONE, step=state.step, reason=more,
                                warnings=state.warnings, earlier=True), 0
        return None, 0
    start = state.checkpoint["step"] if state.checkpoint else 0      # where training resumes
    return None, max(0, spec.steps - start)


def _pending(spec: RunSpec, state: RunState, options: Options) -> list[str]:
    """The metrics a finished run still needs (its checkpoint as the state read it)."""
    return pending_metrics(spec.run_dir(options.out), options.metrics, size=options.eval_size,
                           seed=options.eval_seed,
                           checkpoint={"step": state.step, "checksum": state.checksum})
