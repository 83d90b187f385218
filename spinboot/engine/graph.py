"""Steps as a dependency graph, run concurrently where independent.

A step starts as soon as every step it depends on has succeeded; a failed step skips only what depends on it, so
one unreachable target does not stop the others. Every transition is an event (for the terminal view or JSON).
"""

from __future__ import annotations

import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from ..changes import Change, reporting

Emit = Callable[[dict[str, Any]], None]


@dataclass
class Step:
    name: str
    title: str
    run: Callable[["StepContext"], list[Change]]
    deps: tuple[str, ...] = ()


@dataclass
class StepResult:
    name: str
    title: str
    status: str = "pending"          # pending, running, done, failed, skipped
    changes: list[Change] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


class StepContext:
    """What a running step may use: its name, a progress callback, and a way to report changes as they happen."""

    def __init__(self, step: Step, emit: Emit):
        self.step = step
        self._emit = emit

    def progress(self, message: str) -> None:
        self._emit({"event": "progress", "step": self.step.name, "message": message})

    def report(self, event: str, **fields: Any) -> None:
        """A structured event for --output json (the terminal view shows only what it knows)."""
        self._emit({"event": event, "step": self.step.name, **fields})

    def output(self, stream: str, line: str) -> None:
        self._emit({"event": "output", "step": self.step.name, "stream": stream, "line": line})


class GraphError(Exception):
    pass


def check_graph(steps: list[Step]) -> None:
    names = {s.name for s in steps}
    for s in steps:
        for d in s.deps:
            if d not in names:
                raise GraphError(f"step {s.name} depends on unknown step {d}")
    seen: dict[str, int] = {}

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if seen.get(name) == 2:
            return
        if seen.get(name) == 1:
            raise GraphError("dependency cycle: " + " → ".join(stack + (name,)))
        seen[name] = 1
        for d in next(s for s in steps if s.name == name).deps:
            visit(d, stack + (name,))
        seen[name] = 2

    for s in steps:
        visit(s.name, ())


def run_graph(steps: list[Step], emit: Emit, max_workers: int | None = None) -> dict[str, StepResult]:
    check_graph(steps)
    # Steps wait on remote APIs, not on the CPU: one thread per step, so no ready step ever queues behind others
    # (with 8 targets a fixed pool of 8 made the ninth step's timer run while it waited for a thread).
    max_workers = max_workers or min(64, max(1, len(steps)))
    lock = threading.Lock()

    def safe_emit(event: dict[str, Any]) -> None:
        with lock:
            emit(event)

    results = {s.name: StepResult(s.name, s.title) for s in steps}
    by_name = {s.name: s for s in steps}
    running: dict[Future, str] = {}

    made: dict[str, list[Change]] = {s.name: [] for s in steps}

    def execute(step: Step) -> list[Change]:
        ctx = StepContext(step, safe_emit)

        def now(ch: Change) -> None:        # a write the API just accepted: say it at once
            made[step.name].append(ch)
            safe_emit({"event": "change", "step": step.name, **ch.as_dict()})

        with reporting(now):
            changes = step.run(ctx)
        said = {(c.action, c.kind, c.namespace, c.name) for c in made[step.name]}
        for ch in changes:
            if (ch.action, ch.kind, ch.namespace, ch.name) not in said:
                safe_emit({"event": "change", "step": step.name, **ch.as_dict()})
        return changes

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="spinboot") as pool:
        while True:
            for s in steps:
                r = results[s.name]
                if r.status != "pending":
                    continue
                dep_status = [results[d].status for d in s.deps]
                if any(st in ("failed", "skipped") for st in dep_status):
                    r.status = "skipped"
                    blocked = [d for d in s.deps if results[d].status in ("failed", "skipped")]
                    r.error = f"not run: {', '.join(blocked)} did not complete"
                    safe_emit({"event": "step", "step": s.name, "title": s.title, "status": "skipped", "reason": r.error})
                elif all(st == "done" for st in dep_status):
                    r.status = "running"
                    r.seconds = time.monotonic()
                    safe_emit({"event": "step", "step": s.name, "title": s.title, "status": "running",
                               "deps": list(s.deps)})
                    running[pool.submit(execute, s)] = s.name
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                name = running.pop(fut)
                r = results[name]
                r.seconds = round(time.monotonic() - r.seconds, 2)
                try:
                    r.changes = fut.result()
                    r.status = "done"
                    safe_emit({"event": "step", "step": name, "title": by_name[name].title, "status": "done",
                               "seconds": r.seconds})
                except Exception as exc:  # a step's failure is reported, never a traceback
                    r.changes = list(made[name])   # what it changed before it failed
                    r.status = "failed"
                    r.error = str(exc) or type(exc).__name__
                    event = {"event": "step", "step": name, "title": by_name[name].title, "status": "failed",
                             "seconds": r.seconds, "error": r.error}
                    if not str(exc):
                        event["trace"] = traceback.format_exception_only(exc)[-1].strip()
                    safe_emit(event)
    return results
