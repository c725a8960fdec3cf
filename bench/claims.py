"""Run claims: one process at a time trains or evaluates a run folder, across processes and
machines that share the results folder.

A claim is the file `.claim` in the run folder, created exclusively (O_CREAT | O_EXCL) and
naming the host, the process (pid and its start time), the invocation (one per command) and the
UTC time it was taken. While a process holds claims, a thread touches them (their mtime) every
`stale_seconds() / 10`; a claim whose mtime is older than `stale_seconds()` (the setting
DISENTBENCH_CLAIM_STALE_S, default 300) is stale and is taken over, and so at once is a claim
of a process on this host that is gone. Taking over is itself exclusive (`.claim.takeover`,
created the same way), so of several processes that find one stale claim, one takes it.

What this relies on (docs/cluster.md): O_EXCL creation is atomic on local filesystems and on NFS
v3 and later; the host name tells machines apart (and containers that share a host name share
their process ids); the clocks of the machines agree to well within the stale limit (on NFS a
touched file's mtime is the server's clock).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

CLAIM, TAKEOVER = ".claim", ".claim.takeover"
STALE_ENV, STALE_DEFAULT = "DISENTBENCH_CLAIM_STALE_S", 300.0


def stale_seconds() -> float:
    """The stale limit: DISENTBENCH_CLAIM_STALE_S seconds (default 300)."""
    text = os.environ.get(STALE_ENV, "")
    try:
        value = float(text) if text else STALE_DEFAULT
    except ValueError:
        raise ValueError(f"{STALE_ENV}={text!r} is not a number of seconds; "
                         f"set it to e.g. {STALE_DEFAULT:g}") from None
    if not value > 0:
        raise ValueError(f"{STALE_ENV}={text!r} must be positive, e.g. {STALE_DEFAULT:g}")
    return value


@dataclass(frozen=True)
class Holder:
    """Who holds a claim, as its file says (empty fields where it could not be read)."""
    host: str = ""
    pid: int = 0
    pid_start: str = ""
    invocation: str = ""
    since: str = ""
    token: str = ""
    age: float = 0.0                 # seconds since its last refresh

    def describe(self) -> str:
        return f"running elsewhere: {self.host or '?'}/{self.pid or '?'}, since {self.since or '?'}"

    def gone(self, limit: float) -> bool:
        """Stale: not refreshed within `limit` seconds, or a process of this host that ended."""
        if self.age > limit:
            return True
        if self.host != socket.gethostname() or not self.pid:
            return False
        return not _alive(self.pid, self.pid_start)


def read_holder(run_dir: Path) -> Holder | None:
    """The holder of `run_dir`'s claim; None if there is no claim."""
    path = Path(run_dir) / CLAIM
    try:
        age = time.time() - path.stat().st_mtime
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
    except ValueError:                     # being written, or cut short: known only by its age
        return Holder(age=age)
    if not isinstance(record, dict):
        return Holder(age=age)
    fields = {k: record.get(k) for k in ("host", "pid", "pid_start", "invocation", "since", "token")
              if isinstance(record.get(k), (str, int))}
    return Holder(age=age, **fields)


class Claims:
    """The claims this process holds for one invocation; `take` a run folder, `release` it.
    A thread refreshes them while any is held."""

    def __init__(self, invocation: str):
        self.invocation, self.limit = invocation, stale_seconds()
        self.held: dict[Path, str] = {}           # run folder -> token of our claim
        self.notes: dict[Path, str] = {}          # run folder -> the stale claim taken over
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread: threading.Thread | None = None

    def take(self, run_dir: Path) -> Holder | None:
        """Claim `run_dir` (created if missing); None when claimed, else its live holder. A
        holder of this same invocation (a lost worker whose work came back to us) is waited
        for until its claim is released or stale."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            token = uuid.uuid4().hex
            if self._create(run_dir / CLAIM, token):
                return self._hold(run_dir, token)
            holder = read_holder(run_dir)
            if holder is None:
                continue                              # released in between: try again
            if not holder.token and holder.age < 1:   # being written this moment: read again
                time.sleep(0.05)
                continue
            if holder.gone(self.limit):
                if self._take_over(run_dir, holder, token):
                    why = (f"last refreshed {holder.age:.0f} s before" if holder.age > self.limit
                           else "its process had ended")
                    self.notes[run_dir] = (f"took over the stale claim of {holder.host}/"
                                           f"{holder.pid} (since {holder.since}; {why})")
                    return self._hold(run_dir, token)
                return read_holder(run_dir) or holder      # whoever took it over
            if holder.invocation != self.invocation:
                return holder
            time.sleep(min(1.0, self.limit / 10))

    def release(self, run_dir: Path) -> None:
        """Remove our claim of `run_dir` (a claim someone took over from us is left alone)."""
        run_dir = Path(run_dir)
        with self._lock:
            token = self.held.pop(run_dir, None)
        if token is not None and getattr(read_holder(run_dir), "token", None) == token:
            with contextlib.suppress(FileNotFoundError):
                (run_dir / CLAIM).unlink()

    def release_all(self) -> None:
        for run_dir in list(self.held):
            self.release(run_dir)
        self._stop.set()

    def __enter__(self) -> "Claims":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        """Release every claim; after Ctrl-C or SIGTERM they are left to the command, which
        notes its stopped runs first (bench/backend.py `mark_interrupted`)."""
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            self._stop.set()
        else:
            self.release_all()

    def _create(self, path: Path, token: str) -> bool:
        record = {"host": socket.gethostname(), "pid": os.getpid(),
                  "pid_start": _start_time(os.getpid()), "invocation": self.invocation,
                  "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "token": token}
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record) + "\n")
        return True

    def _take_over(self, run_dir: Path, stale: Holder, token: str) -> bool:
        """Replace the stale claim `stale` by ours, exclusively; False if another process is
        taking it over (or took it)."""
        lock = run_dir / TAKEOVER
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - lock.stat().st_mtime > self.limit:   # its taker died
                    lock.unlink()
            return False
        try:
            now = read_holder(run_dir)
            if now is not None and now.token != stale.token:
                return False                          # taken over, or released and claimed anew
            with contextlib.suppress(FileNotFoundError):
                (run_dir / CLAIM).unlink()
            return self._create(run_dir / CLAIM, token)
        finally:
            lock.unlink(missing_ok=True)

    def _hold(self, run_dir: Path, token: str) -> None:
        with self._lock:
            self.held[run_dir] = token
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._refresh, daemon=True,
                                                name="disentbench-claims")
                self._thread.start()
        return None

    def _refresh(self) -> None:
        while not self._stop.wait(self.limit / 10):
            with self._lock:
                held = list(self.held)
            for run_dir in held:
                with contextlib.suppress(OSError):
                    os.utime(run_dir / CLAIM)


def _proc_stat(pid: int) -> list[str]:
    """Fields 3 on of /proc/<pid>/stat (Linux: state, ppid, ..., start time at index 19); []
    where there is none."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _start_time(pid: int) -> str:
    """The start time of process `pid` in clock ticks since boot (Linux), "" elsewhere: with
    the pid, it tells a process from a later one given the same pid."""
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else ""


def _alive(pid: int, start: str) -> bool:
    """Whether process `pid` of this host (started at `start`, where known) still runs (a
    zombie, killed and not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    if not fields:
        return True
    return fields[0] != "Z" and (not start or fields[19] == start)
