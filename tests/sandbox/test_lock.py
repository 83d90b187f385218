"""The Spinnaker cluster's lock (spinboot/kube/lock.py) against a real API server: a Lease taken by create or by an
update carrying the resourceVersion read, renewed while held, taken over only once unrenewed for its duration,
released on the way out whatever ends the block, and never won by two takers at once."""

from __future__ import annotations

import itertools
import shlex
import shutil
import subprocess
import threading
import time

import pytest
from kubernetes import client

from spinboot.kube.lock import (DEFAULT_TIMEOUT_SECONDS, HALYARD_STEP_SECONDS, LAST_HOLDER_ANNOTATION, LeaseLock,
                                LockError, _Api, _Unavailable, read_lease, wait_for_leftover)
from spinboot.kube.resources import Kube

_names = itertools.count()


@pytest.fixture
def kube(admin_api) -> Kube:
    return Kube(admin_api, "sandbox")


@pytest.fixture
def ns(admin_api) -> str:
    name = f"lock-{next(_names)}-{int(time.time() * 1000) % 100000}"
    client.CoreV1Api(admin_api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def lock(kube, ns, who, **kw) -> LeaseLock:
    lines: list[str] = []
    events: list[dict] = []
    lk = LeaseLock(kube, ns, operation=kw.pop("operation", "test"), identity=who, progress=lines.append,
                   report=lambda event, **f: events.append({"event": event, **f}), **kw)
    lk.lines, lk.events = lines, events
    return lk


def test_acquire_creates_the_lease_and_release_frees_it(kube, ns):
    a = lock(kube, ns, "alice@laptop pid 1", lease_seconds=30, operation="halyard step")
    with a:
        state = read_lease(kube, ns)
        assert state.holder == "alice@laptop pid 1" and state.operation == "halyard step"
        assert state.duration == 30 and state.acquired and state.renewed
    after = read_lease(kube, ns)
    assert after.holder is None, after
    assert after.last_holder.startswith("alice@laptop pid 1 (halyard step)")
    assert [e["state"] for e in a.events] == ["acquired", "released"]
    assert any("took the lock" in m for m in a.lines) and any("released the lock" in m for m in a.lines)
    # Free again: the next run takes it at once (an update on the version it read).
    with lock(kube, ns, "bob@ci pid 2", timeout=0):
        assert read_lease(kube, ns).holder == "bob@ci pid 2"
    assert read_lease(kube, ns).transitions == 1


def test_the_lease_is_a_real_lease(kube, ns, admin_api):
    """What kubectl shows: kubectl -n NS get lease spinboot."""
    with lock(kube, ns, "carol@host pid 3", lease_seconds=45):
        live = client.CoordinationV1Api(admin_api).read_namespaced_lease("spinboot", ns)
        assert live.spec.holder_identity == "carol@host pid 3"
        assert live.spec.lease_duration_seconds == 45
        assert live.metadata.labels["app.kubernetes.io/managed-by"] == "spinboot"


def test_a_waiter_names_the_holder_and_gets_the_lock_once_released(kube, ns):
    a = lock(kube, ns, "alice@laptop pid 1", lease_seconds=30)
    a.acquire()
    since = read_lease(kube, ns).acquired[:19]
    b = lock(kube, ns, "Cloud Build 1234", timeout=30)
    got = threading.Event()

    def take():
        b.acquire()
        got.set()

    t = threading.Thread(target=take)
    t.start()
    try:
        time.sleep(1.5)
        assert not got.is_set()
        waiting = [m for m in b.lines if m.startswith("waiting for the lock held by")]
        assert waiting and "alice@laptop pid 1 (test) since " + since in waiting[0], b.lines
        assert b.events[0]["state"] == "waiting" and b.events[0]["holder"] == "alice@laptop pid 1"
    finally:
        t0 = time.monotonic()
        a.release()
        t.join(10)
    assert got.is_set() and time.monotonic() - t0 < 5
    assert read_lease(kube, ns).holder == "Cloud Build 1234"
    b.release()


def test_no_wait_fails_at_once_naming_the_holder(kube, ns):
    with lock(kube, ns, "alice@laptop pid 1", lease_seconds=30):
        t0 = time.monotonic()
        with pytest.raises(LockError) as err:
            lock(kube, ns, "bob@ci pid 2", timeout=0).acquire()
        assert time.monotonic() - t0 < 3
        assert "held by alice@laptop pid 1 (test) since" in str(err.value) and "--lock-timeout 0" in str(err.value)


def test_a_renewing_holder_is_never_taken_over(kube, ns):
    a = lock(kube, ns, "alice@laptop pid 1", lease_seconds=1)
    with a:
        first = read_lease(kube, ns)
        t0 = time.monotonic()
        with pytest.raises(LockError, match="gave up after"):
            lock(kube, ns, "bob@ci pid 2", timeout=4).acquire()
        assert time.monotonic() - t0 >= 4
        now = read_lease(kube, ns)
        assert now.holder == "alice@laptop pid 1" and now.renewed > first.renewed
        assert now.acquired == first.acquired and now.transitions == first.transitions


def test_a_killed_holder_blocks_only_until_its_lease_expires(kube, ns):
    a = lock(kube, ns, "alice@laptop pid 1", lease_seconds=2)
    a.acquire()
    a.forget()  # as SIGKILL: no more renewals, no release
    b = lock(kube, ns, "bob@ci pid 2", lease_seconds=30, timeout=20)
    t0 = time.monotonic()
    b.acquire()
    waited = time.monotonic() - t0
    try:
        assert 2 <= waited < 6, waited
        assert any("waiting for the lock held by alice@laptop pid 1" in m for m in b.lines), b.lines
        took = [e for e in b.events if e["state"] == "acquired"]
        assert took and took[0]["tookOverFrom"] == "alice@laptop pid 1"
        state = read_lease(kube, ns)
        assert state.holder == "bob@ci pid 2" and state.duration == 30 and state.transitions == 1
    finally:
        b.release()


def test_a_holder_that_was_taken_over_knows_it_and_fails(kube, ns):
    a = lock(kube, ns, "alice@laptop pid 1", lease_seconds=1)
    a.acquire()
    a._stop_renewing()  # a holder that stalled (a paused VM): its claim is kept, but not renewed
    b = lock(kube, ns, "bob@ci pid 2", lease_seconds=30, timeout=10)
    b.acquire()
    assert a.renew_once() is False
    assert "taken over by bob@ci pid 2" in a.lost
    with pytest.raises(LockError, match="lost the lock"):
        a.__exit__(None, None, None)
    assert read_lease(kube, ns).holder == "bob@ci pid 2"  # a's release left b's lease alone
    b.release()


def test_an_update_on_a_stale_version_is_refused(kube, ns):
    """The optimistic concurrency the lock relies on: two claims built from the same read, one wins."""
    with lock(kube, ns, "alice@laptop pid 1", lease_seconds=30):
        pass
    x, y = lock(kube, ns, "x pid 1"), lock(kube, ns, "y pid 2")
    _, live = _Api(kube, ns, "spinboot").get()
    first = x.api.call("PUT", x.api.path, x._claim(live))
    second = y.api.call("PUT", y.api.path, y._claim(live))
    assert (first[0], second[0]) == (200, 409)
    assert read_lease(kube, ns).holder == "x pid 1"


def _race(kube, ns, n: int, **kw) -> list[LeaseLock]:
    lockers = [lock(kube, ns, f"racer{i} pid {i}", **kw) for i in range(n)]
    barrier = threading.Barrier(n)
    won: list[LeaseLock] = []
    errors: list[Exception] = []

    def go(lk: LeaseLock):
        barrier.wait()
        try:
            lk.acquire()
            won.append(lk)
        except LockError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(lk,)) for lk in lockers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(won) + len(errors) == n
    return won


def test_two_takers_never_both_win_a_free_lease(kube, ns):
    won = _race(kube, ns, 8, lease_seconds=30, timeout=0)
    try:
        assert len(won) == 1
        assert read_lease(kube, ns).holder == won[0].identity
    finally:
        for lk in won:
            lk.release()


def test_two_takers_never_both_win_an_expired_lease(kube, ns):
    dead = lock(kube, ns, "dead pid 0", lease_seconds=1)
    dead.acquire()
    dead.forget()
    won = _race(kube, ns, 6, lease_seconds=30, timeout=4)
    try:
        assert len(won) == 1
        state = read_lease(kube, ns)
        assert state.holder == won[0].identity and state.transitions == 1
    finally:
        for lk in won:
            lk.release()


@pytest.mark.parametrize("free", [False, True], ids=["create", "update"])
def test_a_claim_whose_answer_was_lost_is_recognised(kube, ns, monkeypatch, free):
    """The server took the claim but the connection broke before its answer arrived (a proxy reset): the run
    recognises its own write instead of waiting a whole lease for "another" holder."""
    if free:
        with lock(kube, ns, "earlier pid 9", lease_seconds=30):
            pass
    real, lost = _Api.call, []

    def flaky(self, method, path, body=None):
        status, data = real(self, method, path, body)
        if method in ("POST", "PUT") and not lost:
            lost.append(status)
            raise _Unavailable("connection reset after the server took the request")
        return status, data

    monkeypatch.setattr(_Api, "call", flaky)
    lk = lock(kube, ns, "alice@laptop pid 1", lease_seconds=30, timeout=10)
    t0 = time.monotonic()
    lk.acquire()
    try:
        assert time.monotonic() - t0 < 5 and lost == [200 if free else 201]
        assert read_lease(kube, ns).holder == "alice@laptop pid 1"
    finally:
        lk.release()
    assert read_lease(kube, ns).holder is None


def test_a_release_whose_answer_was_lost_is_recognised(kube, ns, monkeypatch):
    lk = lock(kube, ns, "alice@laptop pid 1", lease_seconds=30)
    lk.acquire()
    real, lost = _Api.call, []

    def flaky(self, method, path, body=None):
        status, data = real(self, method, path, body)
        if method == "PUT" and "holderIdentity" not in body["spec"] and not lost:
            lost.append(status)
            raise _Unavailable("connection reset after the server took the request")
        return status, data

    monkeypatch.setattr(_Api, "call", flaky)
    lk.release()
    assert lost == [200] and read_lease(kube, ns).holder is None
    assert [e["state"] for e in lk.events] == ["acquired", "released"]
    assert not any("could not release" in m for m in lk.lines)


@pytest.mark.parametrize("error", [RuntimeError("configure.sh failed"), KeyboardInterrupt()])
def test_released_whatever_ends_the_block(kube, ns, error):
    with pytest.raises(type(error)):
        with lock(kube, ns, "alice@laptop pid 1", lease_seconds=30):
            raise error
    assert read_lease(kube, ns).holder is None


def test_no_namespace_no_lock(kube):
    with pytest.raises(LockError, match="namespace no-such-namespace does not exist"):
        lock(kube, "no-such-namespace", "alice@laptop pid 1", timeout=0).acquire()


def test_unreachable_server_gives_up_within_the_timeout():
    api = client.ApiClient(client.Configuration(host="https://127.0.0.1:1"))
    lk = lock(Kube(api, "gone"), "halyard", "alice@laptop pid 1", timeout=1)
    t0 = time.monotonic()
    with pytest.raises(LockError, match="could not be read or taken"):
        lk.acquire()
    assert time.monotonic() - t0 < 5
    assert any("cannot reach the lock" in m for m in lk.lines)


def test_default_timeout_covers_a_halyard_step():
    """--lock-timeout's help states the default in minutes: keep it true."""
    from typer.testing import CliRunner

    from spinboot.cli.main import app

    assert DEFAULT_TIMEOUT_SECONDS > HALYARD_STEP_SECONDS >= 600 + 3600 + 1200
    out = CliRunner().invoke(app, ["apply", "--help"], env={"COLUMNS": "300"}).output
    assert f"({DEFAULT_TIMEOUT_SECONDS // 60} min)" in " ".join(out.split())


def test_waits_for_a_configure_sh_left_running_in_the_pod(kube_cluster, admin_api, kube, ns, tmp_path):
    """What a killed holder started through exec outlives its lease (kubernetes#89031): wait_for_leftover sees it."""
    from spinboot.kube.podexec import exec_in_pod

    core = client.CoreV1Api(admin_api)
    core.create_namespaced_pod(ns, client.V1Pod(
        metadata=client.V1ObjectMeta(name="halyard-0"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="halyard", image="halyard")])))
    deadline = time.monotonic() + 30
    while core.read_namespaced_pod("halyard-0", ns).status.phase != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    home = tmp_path / "home"
    (home / "bundle").mkdir(parents=True)
    (home / "bundle" / "configure.sh").write_text("sleep 3\n")
    kube_cluster.add_exec(ns, "halyard-0", env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, workdir=home)
    deadline = time.monotonic() + 15
    while True:  # kwok learns about the rule through a watch
        try:
            if exec_in_pod(admin_api, ns, "halyard-0", ["true"], timeout=10).returncode == 0:
                break
        except Exception:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.3)

    lines: list[str] = []
    assert wait_for_leftover(kube, ns, "halyard-0", "$HOME/bundle/configure.sh", lines.append, 10) is None
    assert lines == []  # nothing running: nothing said

    runner = threading.Thread(target=exec_in_pod, args=(admin_api, ns, "halyard-0",
                                                        ["bash", "-c", 'exec bash "$HOME/bundle/configure.sh"']))
    runner.start()
    time.sleep(1)
    t0 = time.monotonic()
    wait_for_leftover(kube, ns, "halyard-0", "$HOME/bundle/configure.sh", lines.append, 20, poll=0.3)
    runner.join(10)
    assert time.monotonic() - t0 >= 1, lines
    assert lines[0].startswith("waiting for configure.sh left running in") and "has finished" in lines[-1], lines

    runner = threading.Thread(target=exec_in_pod, args=(admin_api, ns, "halyard-0",
                                                        ["bash", "-c", 'exec bash "$HOME/bundle/configure.sh"']))
    runner.start()
    time.sleep(1)
    with pytest.raises(LockError, match="still running .* kubectl -n"):
        wait_for_leftover(kube, ns, "halyard-0", "$HOME/bundle/configure.sh", lines.append, 0.5, poll=0.2)
    runner.join(10)


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl not installed")
def test_the_runbooks_kubectl_line_shows_the_holder(kube_cluster, kube, ns):
    """docs/runbook.md, "A stuck lock": the command printed there shows who holds the lock and what it does."""
    from ..conftest import ROOT

    line = next(ln for ln in (ROOT / "docs" / "runbook.md").read_text().splitlines()
                if ln.startswith("kubectl -n halyard get lease spinboot -o custom-columns="))
    args = shlex.split(line.replace("-n halyard", f"-n {ns}"))
    with lock(kube, ns, "alice@laptop pid 1", lease_seconds=30, operation="halyard step"):
        out = subprocess.run(args[:1] + ["--kubeconfig", str(kube_cluster.admin_kubeconfig_path)] + args[1:],
                             capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()
    assert header.split() == ["HOLDER", "DOING", "SINCE", "RENEWED", "LEASE"]
    assert row.startswith("alice@laptop pid 1") and "halyard step" in row and row.split()[-1] == "30", row
