"""The Go stand-ins' own unit tests (fault grammar, the fault proxy's codes, after-faults, resets, upgrades), run
with the pinned toolchain the sandbox build uses."""

from __future__ import annotations

import os
import subprocess

from spinboot.sandbox import gcp


def test_go_unit_tests_pass():
    env = {**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false"}
    if gcp._go_toolchain():
        env["GOTOOLCHAIN"] = f"{gcp._go_toolchain()}+auto"
    proc = subprocess.run([gcp._find_go(), "test", "./..."], cwd=gcp.GO_MODULE, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "ok  \tspinboot.dev/sandbox/cmd/fault-proxy" in proc.stdout
