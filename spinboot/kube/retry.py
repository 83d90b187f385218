"""Retries for Kubernetes calls: transient failures are retried with exponential backoff and jitter, within a
deadline; anything else fails at once with the server's message."""

from __future__ import annotations

import os

import urllib3
from kubernetes.client.exceptions import ApiException
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random_exponential

# 409 Conflict (optimistic concurrency), 429 Too Many Requests, and server-side errors are transient.
TRANSIENT_STATUS = {409, 429, 500, 502, 503, 504}
DEADLINE_SECONDS = float(os.environ.get("SPINBOOT_KUBE_RETRY_DEADLINE", "120"))


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUS or exc.status == 0  # 0: the connection failed
    if isinstance(exc, ValueError):  # e.g. urllib3's LocationValueError: a bad address never gets better
        return False
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


kube_retry = retry(
    retry=retry_if_exception(is_transient),
    wait=wait_random_exponential(multiplier=0.2, max=5),
    stop=stop_after_delay(DEADLINE_SECONDS),
    reraise=True,
)
