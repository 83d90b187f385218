"""Retries for Kubernetes calls: transient failures are retried with exponential backoff and jitter, within a
deadline; anything else fails at once with the server's message.

An API server that cannot be reached at all (its name does not resolve, its port refuses the connection) is
retried only within CONNECT_DEADLINE_SECONDS of the call's start, not the whole deadline: that is a wrong
endpoint, no network or a sandbox that is not running, and saying so in seconds beats two minutes of silence.
"""

from __future__ import annotations

import os

import urllib3
from kubernetes.client.exceptions import ApiException
from tenacity import retry, retry_if_exception, wait_random_exponential

from ..gcp.retry import CONNECT_DEADLINE_SECONDS, is_unreachable

# 409 Conflict (optimistic concurrency), 429 Too Many Requests, and server-side errors are transient.
TRANSIENT_STATUS = {409, 429, 500, 502, 503, 504}
DEADLINE_SECONDS = float(os.environ.get("SPINBOOT_KUBE_RETRY_DEADLINE", "120"))


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUS or exc.status == 0  # 0: the connection failed
    if isinstance(exc, ValueError):  # e.g. urllib3's LocationValueError: a bad address never gets better
        return False
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


def _stop(state) -> bool:
    """Stop after DEADLINE_SECONDS, or after CONNECT_DEADLINE_SECONDS when nothing answers at the address."""
    elapsed = state.seconds_since_start or 0.0
    exc = state.outcome.exception() if state.outcome is not None else None
    if exc is not None and is_unreachable(exc):
        return elapsed >= CONNECT_DEADLINE_SECONDS
    return elapsed >= DEADLINE_SECONDS


kube_retry = retry(
    retry=retry_if_exception(is_transient),
    wait=wait_random_exponential(multiplier=0.2, max=5),
    stop=_stop,
    reraise=True,
)
