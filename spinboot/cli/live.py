"""Showing a run: a live table on a terminal, plain lines in a log, one JSON event per line with --output json.
Secrets never reach any of these: events carry names and actions, never values."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..changes import Change
from ..engine.graph import StepResult
from .output import Reporter

ICON = {"pending": "·", "running": "…", "done": "✓", "failed": "✗", "skipped": "-"}
STYLE = {"done": "green", "failed": "red", "skipped": "yellow", "running": "cyan", "pending": "dim"}
ACTION_STYLE = {"create": "green", "update": "yellow", "delete": "red", "blocked": "red bold", "unchanged": "dim"}


class RunView:
    """Receives engine events; draws them."""

    def __init__(self, rep: Reporter, verb: str):
        self.rep = rep
        self.verb = verb
        self.steps: dict[str, dict[str, Any]] = {}
        self.started = time.monotonic()
        self.console = rep.out
        self.live: Live | None = None
        if not rep.json and self.console.is_terminal:
            self.live = Live(self._render(), console=self.console, refresh_per_second=8, transient=False)

    def __enter__(self):
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.update(self._render())
            self.live.__exit__(*exc)

    def __call__(self, event: dict[str, Any]) -> None:
        if self.rep.json:
            self.rep.event(**{k: v for k, v in event.items()})
            return
        kind = event["event"]
        step = self.steps.setdefault(event.get("step", "?"), {"status": "pending", "title": event.get("title", ""),
                                                              "message": "", "t0": time.monotonic()})
        if kind == "step":
            step.update(status=event["status"], title=event.get("title", step["title"]))
            if event["status"] == "running":
                step["t0"] = time.monotonic()
            if event.get("error"):
                step["message"] = event["error"]
            if event.get("reason"):
                step["message"] = event["reason"]
            line = f"{ICON[event['status']]} {event.get('title') or event['step']}: {event['status']}"
            if event.get("seconds") is not None:
                line += f" ({event['seconds']:.1f} s)"
            if event.get("error"):
                line += f": {event['error']}"
            self._line(line, STYLE.get(event["status"]))
        elif kind == "progress":
            step["message"] = event["message"]
            self._line(f"  {event['step']}: {event['message']}", "dim")
        elif kind == "output":
            self._line(f"  | {event['line']}", "dim")
        elif kind == "change":
            if event["action"] != "unchanged":
                ch = Change(event["action"], event["kind"], event["name"], event.get("namespace"), event.get("detail", ""))
                self._line(f"  {self._change_text(ch)}", ACTION_STYLE.get(ch.action))
        if self.live:
            self.live.update(self._render())

    def _line(self, text: str, style: str | None = None) -> None:
        if self.live:
            self.live.console.print(Text(text, style=style or ""))
        else:
            self.console.print(text, markup=False, highlight=False)

    @staticmethod
    def _change_text(ch: Change) -> str:
        sign = {"create": "+", "update": "~", "delete": "-", "blocked": "!", "unchanged": "="}[ch.action]
        return f"{sign} {ch.action} {ch.ref}" + (f" ({ch.detail})" if ch.detail else "")

    def _render(self):
        table = Table(show_header=False, box=None, pad_edge=False)
        for name, s in self.steps.items():
            elapsed = time.monotonic() - s["t0"] if s["status"] == "running" else None
            table.add_row(Text(ICON[s["status"]], style=STYLE[s["status"]]), Text(s["title"] or name),
                          Text(f"{elapsed:.0f}s" if elapsed is not None else ""), Text(s["message"][:80], style="dim"))
        head = Text(f"spinboot {self.verb} · {time.monotonic() - self.started:.0f}s", style="bold")
        return Group(head, table)


def summarize(rep: Reporter, verb: str, results: dict[str, StepResult], dry_run: bool) -> tuple[int, int]:
    """Print (or emit) the summary; returns (number of failed steps, number of changes).

    Each change was already shown as it happened (RunView), so the summary counts and does not list them again.
    A run with failed steps says so first, and never claims "0 changes" about work it could not look at: a failed
    plan shows the changes it found only when it found some, marked as incomplete."""
    changes = [c for r in results.values() for c in r.changes]
    counts = {a: sum(1 for c in changes if c.action == a) for a in ("create", "update", "delete", "blocked", "unchanged")}
    failed = [r for r in results.values() if r.status == "failed"]
    skipped = [r for r in results.values() if r.status == "skipped"]
    done = [r for r in results.values() if r.status == "done"]
    mutating = counts["create"] + counts["update"] + counts["delete"]
    rep.event("summary", None, verb=verb, dry_run=dry_run, **counts,
              failed=[r.name for r in failed], skipped=[r.name for r in skipped], done=[r.name for r in done])
    if rep.json:
        return len(failed), mutating
    out = rep.out
    word = "would" if dry_run else "did"
    totals = (f"{word} create {counts['create']}, update {counts['update']}, delete {counts['delete']}; "
              f"{counts['unchanged']} unchanged; {counts['blocked']} need an operator")
    out.print()
    if failed:
        rep.err.print(f"{verb} failed: {len(failed)} of {len(results)} step(s) failed:", style="red bold",
                      markup=False)
        for r in failed:
            rep.err.print(f"  {r.name}: {r.error}", style="red", markup=False)
        if skipped:
            rep.err.print("  not run because of that: " + ", ".join(r.name for r in skipped), markup=False)
        if done:
            rep.err.print("  already done: " + ", ".join(r.name for r in done), markup=False)
        if mutating or counts["blocked"]:
            what = "found so far (incomplete)" if dry_run else "made before the failure"
            out.print(f"{verb}: changes {what}: {totals}.", markup=False)
        if not dry_run:
            rep.err.print("Re-running the same command resumes safely: finished work is detected and not repeated.",
                          markup=False)
        return len(failed), mutating
    if mutating == 0 and not counts["blocked"]:
        out.print(f"No changes: live state matches the file ({counts['unchanged']} resources checked).", style="green")
    else:
        out.print(f"{verb}: {totals}.", markup=False)
    return len(failed), mutating
