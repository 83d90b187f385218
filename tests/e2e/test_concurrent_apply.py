"""Two applies at once (Cloud Build on merge while an operator runs one by hand): configure.sh never runs twice at
the same time, both runs succeed, and the result is converged; a holder SIGKILLed in the middle of configure.sh
blocks the next run only until its lease expires (and until what it left running in the pod has finished).

"configure.sh runs" is observed from outside spinboot: the sandbox's Halyard pod runs exec'd commands as local
processes, so a watcher scans /proc for processes running this sandbox pod's configure.sh (only top-level ones:
a subshell of configure.sh carries the same command line) and records the most that ever ran at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from .invariants import EXAMPLE, assert_exactly_once, assert_nothing_to_do, run, spinboot_cmd

SPIN = ("acme-platform", "us-central1-b", "spinnaker")
FORCED = ["halyard", "apply", "-c", str(EXAMPLE), "--force", "--yes"]   # apply, with configure.sh run in any case


class ConfigureWatch:
    """Scans /proc for processes running ``pattern`` (the pod's configure.sh) while the block runs."""

    def __init__(self, pattern: str, interval: float = 0.03):
        self.pattern, self.interval = pattern.encode(), interval
        self.most = 0
        self.seen: dict[int, list[float]] = {}   # top-level pid → [first seen, last seen]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def scan(self) -> set[int]:
        found: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if self.pattern not in f.read().replace(b"\0", b" "):
                        continue
                with open(f"/proc/{entry}/stat") as f:
                    found[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
        return {pid for pid, ppid in found.items() if ppid not in found}

    def _loop(self) -> None:
        while not self._stop.is_set():
            top = self.scan()
            now = time.time()
            self.most = max(self.most, len(top))
            for pid in top:
                self.seen.setdefault(pid, [now, now])[1] = now
            time.sleep(self.interval)

    def __enter__(self) -> "ConfigureWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


class Proc:
    """spinboot running in the background; its JSON events collected with the time each arrived."""

    def __init__(self, args: list[str], env: dict):
        self.err = tempfile.TemporaryFile(mode="w+")
        self.p = subprocess.Popen(spinboot_cmd(*args), env={**os.environ, **env}, stdout=subprocess.PIPE,
                                  stderr=self.err, text=True)
        self.pid = self.p.pid
        self.events: list[tuple[float, dict]] = []
        self.first_line = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.p.stdout:
            if line.startswith("{"):
                event = json.loads(line)
                self.events.append((time.time(), event))
                if event["event"] == "output" and event.get("step") == "halyard":
                    self.first_line.set()

    def wait(self, timeout: float = 600) -> int:
        rc = self.p.wait(timeout)
        self._reader.join(10)
        return rc

    def kill(self) -> None:
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()

    def tail(self) -> str:
        self.err.seek(0)
        return json.dumps([e for _, e in self.events[-8:]], indent=1) + "\n" + self.err.read()[-3000:]

    def lock(self, state: str) -> list[dict]:
        return [e for _, e in self.events if e["event"] == "lock" and e["state"] == state]

    def configure_window(self) -> tuple[float, float]:
        """When this run's configure.sh printed its first and last line (as received)."""
        times = [t for t, e in self.events if e["event"] == "output" and e.get("step") == "halyard"]
        assert times, "configure.sh printed nothing: it did not run\n" + self.tail()
        return times[0], times[-1]


def _pattern(live) -> str:
    home = live.cluster(*SPIN).dir / "pods" / "halyard" / "halyard-0"
    return f"{home}/.hal/spinboot/bundle/configure.sh"


def _epoch(micro_time: str) -> float:
    return datetime.fromisoformat(micro_time.replace("Z", "+00:00")).timestamp()


def _converge(env: dict) -> None:
    rc, _, tail = run(["apply", "-c", str(EXAMPLE), "--yes"], env)
    assert rc == 0, tail


def test_two_applies_at_once_run_configure_sh_one_at_a_time(live, sandbox_env):
    _converge(sandbox_env)
    with ConfigureWatch(_pattern(live)) as watch:
        runs = [Proc(FORCED, sandbox_env), Proc(FORCED, sandbox_env)]
        codes = [r.wait() for r in runs]
    for r, rc in zip(runs, codes):
        assert rc == 0, r.tail()

    # Observed in the pod: two configure.sh runs, never two at once.
    assert len(watch.seen) >= 2, watch.seen
    assert watch.most == 1, watch.seen
    # Observed in the output: the two runs' configure.sh lines do not interleave.
    first, second = sorted((r.configure_window() for r in runs))
    assert first[1] < second[0], (first, second)

    # Each run held the lock once; the second to get it waited for the first, and said who that was.
    for r in runs:
        assert len(r.lock("acquired")) == 1 and len(r.lock("released")) == 1, r.tail()
    early, late = sorted(runs, key=lambda r: _epoch(r.lock("acquired")[0]["at"]))
    waited = late.lock("waiting")
    assert waited and f"pid {early.pid}" in waited[0]["holder"], late.tail()
    assert any(e["event"] == "progress" and e["message"].startswith("waiting for the lock held by ")
               and f"pid {early.pid}" in e["message"] and " since " in e["message"] for _, e in late.events)
    assert _epoch(late.lock("acquired")[0]["at"]) >= _epoch(early.lock("released")[0]["at"])
    print("configure.sh windows:", first, second, "watched:", watch.seen)

    assert_exactly_once(live)
    assert_nothing_to_do(sandbox_env)


@pytest.mark.matrix
@pytest.mark.skipif(not os.environ.get("SPINBOOT_FULL_MATRIX"), reason="full matrix only (make bench): the lock's takeover is also proven in tests/sandbox/test_lock.py")
def test_a_holder_killed_mid_configure_sh_is_taken_over_when_its_lease_expires(live, sandbox_env):
    lease = 4
    env = {**sandbox_env, "SPINBOOT_LOCK_LEASE_SECONDS": str(lease)}
    _converge(env)
    with ConfigureWatch(_pattern(live)) as watch:
        holder = Proc(FORCED, env)
        try:
            assert holder.first_line.wait(300), "configure.sh never started\n" + holder.tail()
        finally:
            holder.kill()   # SIGKILL: no release, no more renewals (a lost VM)
        killed_at = time.time()
        taken = holder.lock("acquired")
        assert taken and f"pid {holder.pid}" in taken[0]["holder"]
        rc, events, tail = run(FORCED, env)
    assert rc == 0, tail
    locks = [e for e in events if e["event"] == "lock"]
    waiting = [e for e in locks if e["state"] == "waiting"]
    acquired = [e for e in locks if e["state"] == "acquired"]
    assert waiting and f"pid {holder.pid}" in waiting[0]["holder"], tail
    assert acquired and f"pid {holder.pid}" in acquired[0]["tookOverFrom"], tail
    # Taken over only once the killed holder's lease had gone unrenewed for its duration: at least the lease minus
    # the renewal interval after the kill.
    assert _epoch(acquired[0]["at"]) - killed_at >= lease - lease / 3 - 0.5, (acquired, killed_at)
    # The killed run's configure.sh (if it outlived its client) and the new one never ran at once.
    assert len(watch.seen) >= 2 and watch.most == 1, watch.seen
    print("killed at", killed_at, "taken over at", acquired[0]["at"], "watched:", watch.seen,
          [e["message"] for e in events if e["event"] == "progress" and e.get("step") == "halyard"])
    assert_exactly_once(live)
    assert_nothing_to_do(env)
