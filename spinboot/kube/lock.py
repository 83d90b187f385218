"""One run at a time where two would collide: a lock held on a Kubernetes Lease in the Spinnaker cluster.

Cloud Build (on merge) and an operator (by hand) can run ``spinboot apply`` at the same moment. Two Halyard steps
at once would copy their bundles over each other in the Halyard pod and run two configure.sh and two
``hal deploy apply`` against one halconfig; a prune or a destroy next to them would delete what the other writes.
So the Halyard step, ``rbac apply --prune``'s prune and ``destroy`` hold this lock.

The lock is the Lease ``spinboot`` (``coordination.k8s.io/v1``) in Halyard's namespace, used the way Kubernetes'
own components use Leases for leader election (https://kubernetes.io/docs/concepts/architecture/leases/ and
client-go's ``tools/leaderelection``):

- **Acquire**: create the Lease with ``holderIdentity`` (who: ``user@host pid N``, or the Cloud Build id from
  ``$BUILD_ID``), ``leaseDurationSeconds``, ``acquireTime`` and ``renewTime``. If it exists and is free (released:
  no holder) or expired, take it with an update that carries the ``resourceVersion`` that was read: the API server
  accepts an update only while the object is unchanged and answers 409 Conflict otherwise
  (https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions), so of two takers exactly one
  wins; the other reads again and sees the winner.
- **Hold**: a background thread renews ``renewTime`` every third of the lease duration, each renewal again an update
  on the version it last wrote, so a holder that was taken over notices (409, another holder) and says so.
- **Expire**: a holder that dies (SIGKILL, a lost VM) stops renewing. A waiter takes over once it has itself seen
  the Lease unchanged for ``leaseDurationSeconds``, timed by its own clock as client-go does, so a clock difference
  between the two machines can never cut a live holder's lease short. A killed holder therefore blocks others for
  at most one lease duration after its last renewal, plus up to one lease duration if the waiter only arrives then.
- **Release**: on leaving the ``with`` block, whatever ends it (an exception, KeyboardInterrupt), the holder clears
  ``holderIdentity`` (again an update on its own version: a lease someone else took over is left alone).

The Lease is created by the identity running spinboot (the operator, or Cloud Build's service account), which
needs ``get``, ``create`` and ``update`` on ``leases`` in Halyard's namespace (cluster admins have them). Halyard's
and Spinnaker's service accounts get no rights on it.

A Lease cannot see what a killed holder left running in the pod: processes started through ``exec`` keep running
after the client is gone (https://github.com/kubernetes/kubernetes/issues/89031). ``wait_for_leftover`` waits for
such a process, under the lock, before anything is copied or run again.
"""

from __future__ import annotations

import copy
import pwd
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import urllib3
from kubernetes.client.exceptions import ApiException

from .halyard import POD_READY_SECONDS, ROLLOUT_SECONDS
from .resources import MANAGED_LABEL, Kube, collection_path

API_VERSION, KIND = "coordination.k8s.io/v1", "Lease"
LEASE_NAME = "spinboot"
OPERATION_ANNOTATION = "spinboot.dev/lock-operation"     # what the holder is doing (apply: halyard, destroy, ...)
LAST_HOLDER_ANNOTATION = "spinboot.dev/last-holder"      # who held it last, and when it was released

# How long a lease lasts without renewal. Renewed every third of it, so two renewals in a row may fail (a network
# blip) before anyone may take over; a killed holder blocks others for about this long. Short values are for tests.
LEASE_SECONDS_ENV = "SPINBOOT_LOCK_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 60

# How long a waiter waits by default: as long as the Halyard step it waits for can take while its holder is alive
# and renewing (the Halyard pod's readiness, configure.sh's exec timeout in spinboot.kube.halyard, the rollout, and
# the IAM propagation wait configure.sh may add), plus one lease duration for a holder that died meanwhile. A holder
# that stays alive longer than that is stuck, and the waiter says so and fails with exit 1 (--lock-timeout).
CONFIGURE_SH_SECONDS = 3600
IAM_WAIT_SECONDS = 420
HALYARD_STEP_SECONDS = POD_READY_SECONDS + CONFIGURE_SH_SECONDS + ROLLOUT_SECONDS + IAM_WAIT_SECONDS
DEFAULT_TIMEOUT_SECONDS = HALYARD_STEP_SECONDS + DEFAULT_LEASE_SECONDS

REQUEST_TIMEOUT = (5, 15)        # connect, read (seconds): one lock call never hangs a run
_REMIND_SECONDS = 60             # a waiter repeats its "waiting for" line this often (logs show it is alive)


class LockError(Exception):
    """The lock could not be had (timed out, refused), or was lost while held."""


class _Unavailable(Exception):
    """The API server could not be reached, or answered 429/5xx: the next attempt may do better."""


def lease_seconds_from_env() -> int:
    raw = os.environ.get(LEASE_SECONDS_ENV, "")
    try:
        return max(1, int(raw)) if raw else DEFAULT_LEASE_SECONDS
    except ValueError:
        return DEFAULT_LEASE_SECONDS


def holder_identity() -> str:
    """Who takes the lock, as an operator recognises it: the Cloud Build build, or ``user@host pid N``."""
    build = os.environ.get("BUILD_ID")
    if build:
        project = os.environ.get("PROJECT_ID")
        return f"Cloud Build {build}" + (f" in {project}" if project else "")
    try:
        user = os.environ.get("USER") or pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no user name for this uid (a container): the uid says enough
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _now() -> str:
    """A MicroTime: RFC 3339 with microseconds, UTC (what the Lease's acquireTime and renewTime hold)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _short(ts: str | None) -> str:
    """A MicroTime as people read it: to the second, UTC."""
    if not ts:
        return "an unknown time"
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return ts


def _age(ts: str | None) -> float | None:
    """Seconds since ``ts`` by this machine's clock (for messages only: never to decide expiry)."""
    try:
        return max(0.0, time.time() - datetime.fromisoformat((ts or "").replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


@dataclass(frozen=True)
class LeaseState:
    """The Lease as read, for messages, ``status`` and tests."""

    holder: str | None          # None: free (never taken, or released)
    operation: str
    acquired: str | None        # acquireTime
    renewed: str | None         # renewTime
    duration: int               # leaseDurationSeconds
    transitions: int            # leaseTransitions
    resource_version: str
    last_holder: str = ""

    @classmethod
    def of(cls, obj: dict) -> "LeaseState":
        spec, meta = obj.get("spec") or {}, obj.get("metadata") or {}
        notes = meta.get("annotations") or {}
        return cls(spec.get("holderIdentity") or None, notes.get(OPERATION_ANNOTATION, ""), spec.get("acquireTime"),
                   spec.get("renewTime"), int(spec.get("leaseDurationSeconds") or 0),
                   int(spec.get("leaseTransitions") or 0), meta.get("resourceVersion", ""),
                   notes.get(LAST_HOLDER_ANNOTATION, ""))

    def describe(self) -> str:
        what = f" ({self.operation})" if self.operation else ""
        return f"{self.holder}{what} since {_short(self.acquired)}"


class _Api:
    """The few REST calls the lock makes: short timeouts and no retry loop of their own (the callers poll), and
    409/404 returned rather than retried, because here they are answers, not failures."""

    def __init__(self, kube: Kube, namespace: str, name: str):
        self.kube, self.namespace, self.name = kube, namespace, name
        self.collection = collection_path(API_VERSION, KIND, namespace)
        self.path = f"{self.collection}/{name}"

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict]:
        api = self.kube.api
        try:
            _, url, headers, payload, _ = api.param_serialize(
                method=method, resource_path=path, header_params={"Content-Type": "application/json",
                                                                  "Accept": "application/json"},
                body=body, auth_settings=["BearerToken"])
            resp = api.call_api(method, url, header_params=headers, body=payload, _request_timeout=REQUEST_TIMEOUT)
            resp.read()
        except ApiException as exc:  # the REST layer's wrapper around TLS and protocol errors
            raise _Unavailable(f"HTTP {exc.status or 'error'}: {exc.reason}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Unavailable(f"{type(exc).__name__}: {exc}") from None
        text = (resp.data or b"").decode(errors="replace")
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {"message": text[:200]}
        if resp.status == 429 or resp.status >= 500:
            raise _Unavailable(f"HTTP {resp.status}: {data.get('message') or resp.reason}")
        return resp.status, data

    def get(self) -> tuple[int, dict]:
        return self.call("GET", self.path)

    def refused(self, verb: str, status: int, data: dict) -> LockError:
        why = data.get("message") or f"HTTP {status}"
        hint = ""
        if status in (401, 403):
            hint = (f"; the identity running spinboot needs get, create and update on leases.coordination.k8s.io in "
                    f"namespace {self.namespace}")
        return LockError(f"{self.kube.name}: cannot {verb} Lease {self.namespace}/{self.name}: HTTP {status}: "
                         f"{why}{hint}")


def read_lease(kube: Kube, namespace: str, name: str = LEASE_NAME) -> LeaseState | None:
    """The lock's Lease as it is now, or None when there is none."""
    status, data = _Api(kube, namespace, name).get()
    return LeaseState.of(data) if status == 200 else None


class LeaseLock:
    """``with LeaseLock(kube, namespace, operation="apply: halyard", progress=ctx.progress): ...``

    ``timeout``: seconds to wait for another holder (None: DEFAULT_TIMEOUT_SECONDS; 0: do not wait).
    ``progress(message)`` gets the lines people read ("waiting for the lock held by X since T"); ``report(event,
    **fields)`` gets ``lock`` events (state waiting, acquired, released, lost; the holder; ``at`` in UTC) for
    ``--output json``.
    """

    def __init__(self, kube: Kube, namespace: str, *, operation: str, name: str = LEASE_NAME,
                 identity: str | None = None, lease_seconds: int | None = None, timeout: float | None = None,
                 progress: Callable[[str], None] | None = None, report: Callable[..., None] | None = None):
        self.api = _Api(kube, namespace, name)
        self.operation = operation
        self.identity = identity or holder_identity()
        self.lease_seconds = int(lease_seconds or lease_seconds_from_env())
        self.timeout = DEFAULT_TIMEOUT_SECONDS if timeout is None else max(0.0, float(timeout))
        self._progress = progress or (lambda message: None)
        self._report = report or (lambda event, **fields: None)
        self._obj: dict | None = None            # the Lease as this holder last wrote it: its resourceVersion is the claim
        self._mutex = threading.Lock()           # between the renewer and release
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._last_renewal = 0.0
        self.lost: str | None = None             # why the lock was lost while held (another holder took it over)

    @property
    def ref(self) -> str:
        return f"Lease {self.api.namespace}/{self.api.name}"

    @property
    def held(self) -> bool:
        return self._obj is not None

    # --- acquire ----------------------------------------------------------------------------------------------

    def __enter__(self) -> "LeaseLock":
        self.acquire()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release()
        if self.lost and exc_type is None:
            raise LockError(self.lost)

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout`` seconds for the holder to release it or for its lease to
        expire; LockError when it does not come in time."""
        started = time.monotonic()
        deadline = started + self.timeout
        poll = min(2.0, max(0.2, self.lease_seconds / 10))
        seen_version, seen_at = None, started     # the Lease version this waiter last saw change, and when
        said, said_at, trouble = "", 0.0, ""
        state: LeaseState | None = None
        # A claim whose answer was lost (the connection broke after the server took it): this run's own write is
        # recognised by its holder and acquireTime, not mistaken for another holder to wait out.
        sent: tuple[str, LeaseState | None] | None = None
        while True:
            try:
                status, live = self.api.get()
                if status == 404:
                    claim = self._claim(None)
                    sent = (claim["spec"]["acquireTime"], None)
                    status, made = self.api.call("POST", self.api.collection, claim)
                    sent = None
                    if status in (200, 201):
                        return self._hold(made, None)
                    if status == 404:
                        raise LockError(f"{self.api.kube.name}: namespace {self.api.namespace} does not exist, so the "
                                        f"lock ({self.ref}) cannot be taken")
                    if status != 409:  # 409: another run created it first; read it again at once
                        raise self.api.refused("create", status, made)
                    continue
                if status != 200:
                    raise self.api.refused("read", status, live)
                state = LeaseState.of(live)
                now = time.monotonic()
                if sent is not None and state.holder == self.identity and state.acquired == sent[0]:
                    return self._hold(live, sent[1])
                sent = None
                if state.resource_version != seen_version:
                    seen_version, seen_at = state.resource_version, now
                duration = state.duration or self.lease_seconds
                if state.holder is None or now - seen_at >= duration:
                    claim = self._claim(live)
                    sent = (claim["spec"]["acquireTime"], state if state.holder else None)
                    status, taken = self.api.call("PUT", self.api.path, claim)
                    sent = None
                    if status == 200:
                        return self._hold(taken, state if state.holder else None, now - seen_at)
                    if status not in (404, 409):
                        raise self.api.refused("update", status, taken)
                    continue  # 409: another taker won, or the holder renewed just now; 404: deleted. Look again.
                if state.holder != said or now - said_at >= _REMIND_SECONDS:
                    self._waiting(state, now - seen_at, duration, deadline - now)
                    said, said_at = state.holder, now
                trouble = ""
            except _Unavailable as exc:
                if str(exc) != trouble:
                    trouble = str(exc)
                    self._progress(f"cannot reach the lock ({self.ref}): {trouble}; trying again")
            if time.monotonic() >= deadline:
                raise self._timed_out(state, time.monotonic() - started, trouble)
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))

    def _claim(self, live: dict | None) -> dict:
        """The Lease as this run holds it; from ``live``, keeping its resourceVersion (the update's precondition)."""
        now = _now()
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": now, "renewTime": now, "leaseTransitions": 0}
        meta: dict = {"name": self.api.name, "namespace": self.api.namespace,
                      "labels": {MANAGED_LABEL: "spinboot"}, "annotations": {OPERATION_ANNOTATION: self.operation}}
        if live is not None:
            old = live.get("metadata") or {}
            meta = {**meta, "resourceVersion": old["resourceVersion"],
                    "labels": {**(old.get("labels") or {}), **meta["labels"]},
                    "annotations": {**(old.get("annotations") or {}), **meta["annotations"]}}
            old_spec = live.get("spec") or {}
            spec = {**old_spec, **spec, "leaseTransitions": int(old_spec.get("leaseTransitions") or 0) + 1}
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec}

    def _hold(self, obj: dict, took_from: LeaseState | None, unrenewed: float = 0.0) -> None:
        with self._mutex:
            self._obj = obj
            self._last_renewal = time.monotonic()
            self.lost = None
        self._stop.clear()
        spec = obj.get("spec") or {}
        if took_from is not None:
            self._progress(f"took over the lock ({self.ref}) from {took_from.describe()}: not renewed for "
                           f"{unrenewed:.0f} s (its lease is {took_from.duration or self.lease_seconds} s)")
        else:
            self._progress(f"took the lock ({self.ref}) as {self.identity}")
        self._report("lock", state="acquired", lease=self.ref, holder=self.identity, operation=self.operation,
                     at=spec.get("acquireTime"), leaseDurationSeconds=self.lease_seconds,
                     **({"tookOverFrom": took_from.holder} if took_from is not None else {}))
        self._renewer = threading.Thread(target=self._renew_loop, name="spinboot-lock-renewer", daemon=True)
        self._renewer.start()

    def _waiting(self, state: LeaseState, unrenewed: float, duration: int, left: float) -> None:
        renewed = _age(state.renewed)
        last = f"last renewed {renewed:.0f} s ago" if renewed is not None else "renewal time unknown"
        self._progress(f"waiting for the lock held by {state.describe()} ({self.ref}, {last}; taken over in "
                       f"{max(0.0, duration - unrenewed):.0f} s unless renewed; giving up in {max(0.0, left):.0f} s, "
                       "see --lock-timeout)")
        self._report("lock", state="waiting", lease=self.ref, holder=state.holder, operation=state.operation,
                     since=state.acquired, renewed=state.renewed, leaseDurationSeconds=duration)

    def _timed_out(self, state: LeaseState | None, waited: float, trouble: str) -> LockError:
        if state is None or state.holder is None:
            why = f"the lock ({self.ref}) could not be read or taken" + (f": {trouble}" if trouble else "")
        else:
            why = (f"the lock is held by {state.describe()} ({self.ref}; it is renewed while that run works: wait "
                   f"for it, or see docs/runbook.md \"A stuck lock\")")
        self._report("lock", state="timeout", lease=self.ref, waited=round(waited, 1),
                     holder=state.holder if state else None)
        return LockError(f"gave up after {waited:.0f} s (--lock-timeout {self.timeout:g}): {why}")

    # --- hold -------------------------------------------------------------------------------------------------

    def _renew_loop(self) -> None:
        interval = max(0.3, self.lease_seconds / 3)
        while not self._stop.wait(interval):
            if not self.renew_once():
                return

    def renew_once(self) -> bool:
        """Renew the lease once; False when it is no longer held (released, forgotten, or lost)."""
        with self._mutex:
            if self._obj is None:
                return False
            body = copy.deepcopy(self._obj)
            body["spec"]["renewTime"] = _now()
            try:
                status, data = self.api.call("PUT", self.api.path, body)
            except _Unavailable as exc:
                self._renewal_failed(str(exc))
                return True
            if status == 200:
                self._obj, self._last_renewal = data, time.monotonic()
                return True
            if status == 409:
                try:
                    status, data = self.api.get()
                except _Unavailable as exc:
                    self._renewal_failed(str(exc))
                    return True
                live = LeaseState.of(data) if status == 200 else None
                mine = (self._obj.get("spec") or {}).get("acquireTime")
                if live is not None and live.holder == self.identity and live.acquired == mine:
                    self._obj = data  # changed by someone else (e.g. kubectl annotate), still ours: renew on it
                    return True
                self._lose(live)
                return False
            if status == 404:
                self._lose(None)
                return False
            self._renewal_failed(f"HTTP {status}: {data.get('message', '')}")
            return True

    def _renewal_failed(self, why: str) -> None:
        unrenewed = time.monotonic() - self._last_renewal
        if unrenewed >= self.lease_seconds:
            self._progress(f"could not renew the lock ({self.ref}) for {unrenewed:.0f} s ({why}): another run may "
                           "take it over")

    def _lose(self, live: LeaseState | None) -> None:
        who = f"by {live.describe()}" if live is not None and live.holder else "(the Lease was deleted)"
        self.lost = (f"lost the lock ({self.ref}) while {self.operation} ran: taken over {who}. Both runs may have "
                     "changed the same things: run spinboot apply again once the other run has finished")
        self._obj = None
        self._progress(self.lost)
        self._report("lock", state="lost", lease=self.ref, holder=live.holder if live else None, at=_now())

    # --- release ----------------------------------------------------------------------------------------------

    def _stop_renewing(self) -> None:
        self._stop.set()
        renewer, self._renewer = self._renewer, None
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join(timeout=sum(REQUEST_TIMEOUT) * 2 + 1)

    def release(self) -> None:
        """Give the lock up (clear the holder). Never raises: a lease that cannot be released expires by itself."""
        self._stop_renewing()
        with self._mutex:
            obj, self._obj = self._obj, None
        if obj is None:
            return
        body = copy.deepcopy(obj)
        now = _now()
        body["spec"].pop("holderIdentity", None)
        body["spec"]["renewTime"] = now
        body["metadata"].setdefault("annotations", {})[LAST_HOLDER_ANNOTATION] = (
            f"{self.identity} ({self.operation}), {_short(body['spec'].get('acquireTime'))} to {_short(now)}")
        why = ""
        for attempt in range(3):
            try:
                status, data = self.api.call("PUT", self.api.path, body)
            except _Unavailable as exc:
                why = str(exc)
                time.sleep(0.5 * (attempt + 1))
                continue
            except Exception as exc:  # release runs in finally blocks: it must not hide the run's own outcome
                why = f"{type(exc).__name__}: {exc}"
                break
            if status == 200:
                self._progress(f"released the lock ({self.ref})")
                self._report("lock", state="released", lease=self.ref, holder=self.identity, at=now)
                return
            if status == 409 and why:  # an earlier attempt's answer was lost: it may have gone through
                try:
                    status, data = self.api.get()
                except Exception:
                    status = 0
                notes = (data.get("metadata") or {}).get("annotations") or {}
                if status == 200 and notes.get(LAST_HOLDER_ANNOTATION) == \
                        body["metadata"]["annotations"][LAST_HOLDER_ANNOTATION]:
                    self._progress(f"released the lock ({self.ref})")
                    self._report("lock", state="released", lease=self.ref, holder=self.identity, at=now)
                return
            if status in (404, 409):  # deleted, or taken over after this run stopped renewing: not ours to clear
                return
            why = f"HTTP {status}: {data.get('message', '')}"
            break
        self._progress(f"could not release the lock ({self.ref}: {why}); it expires by itself "
                       f"{self.lease_seconds} s after its last renewal")

    def forget(self) -> None:
        """The Lease is gone with its cluster (destroy): stop renewing and release nothing."""
        self._stop_renewing()
        with self._mutex:
            self._obj = None


def wait_for_leftover(kube: Kube, namespace: str, pod: str, command_path: str, progress: Callable[[str], None],
                      timeout: float, poll: float = 2.0) -> None:
    """Wait until no process in the pod runs ``command_path`` (a path that may start with ``$HOME``).

    A holder killed mid-run loses its lease, but what it started through ``exec`` keeps running in the pod
    (https://github.com/kubernetes/kubernetes/issues/89031): the next holder must not copy a new bundle over it or
    run a second configure.sh beside it. Reads /proc with the shell's own tools (the Halyard image has no pgrep).
    A pod that is not running, or where the check itself cannot run, has nothing left running: the check is skipped.
    """
    from .podexec import exec_in_pod

    live = kube.get(f"/api/v1/namespaces/{namespace}/pods/{pod}") or {}
    if (live.get("status") or {}).get("phase") != "Running":
        return
    # The pattern is expanded in the shell, so this script's own command line (with the literal $HOME) never matches.
    script = (f'pat="{command_path}"; for p in /proc/[0-9]*; do [ "${{p#/proc/}}" = "$$" ] && continue; '
              'c=$(tr "\\000" " " < "$p/cmdline" 2>/dev/null) || continue; '
              'case "$c" in *"$pat"*) echo "${p#/proc/}";; esac; done')
    deadline = time.monotonic() + timeout
    said = False
    while True:
        try:
            result = exec_in_pod(kube.api, namespace, pod, ["sh", "-c", script], timeout=60)
        except Exception as exc:  # the check is best effort: ExecError, or the exec stream broke
            progress(f"could not check {namespace}/{pod} for a configure.sh left running: {exc}")
            return
        pids = result.stdout.split()
        if result.returncode != 0 or not pids:
            if said:
                progress(f"the {command_path.rsplit('/', 1)[-1]} left running in {namespace}/{pod} has finished")
            return
        if not said:
            progress(f"waiting for {command_path.rsplit('/', 1)[-1]} left running in {namespace}/{pod} by a run that "
                     f"was stopped (pids {', '.join(pids)}): it keeps running after its client is gone")
            said = True
        if time.monotonic() >= deadline:
            raise LockError(f"{command_path} is still running in {namespace}/{pod} (pids {', '.join(pids)}) after "
                            f"{timeout:.0f} s; stop it with: kubectl -n {namespace} exec {pod} -- kill "
                            f"{' '.join(pids)}")
        time.sleep(poll)
