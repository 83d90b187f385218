"""Retries for Google API calls (google-api-core's Retry: exponential backoff with jitter, within a deadline).

Two kinds of failure are told apart:
- transient: the service answered, or the connection broke, in a way that another try can fix (UNAVAILABLE,
  DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, 5xx, a reset connection). Retried for up to DEADLINE_SECONDS.
- unreachable: nothing answers at the address at all, because the name does not resolve or the port refuses the
  connection (no network, a wrong proxy, a sandbox that is not running). Another try a minute later almost never
  helps, and waiting two minutes per call to say "no network" is what an operator must never see: these are
  retried only within CONNECT_DEADLINE_SECONDS (a resolver blip), then fail with the cause.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import time

from google.api_core import exceptions, retry

# UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (429), INTERNAL and 5xx are transient; retrying them is safe
# because every call spinboot retries is a read, or a write whose duplicate is detected (ALREADY_EXISTS) or
# guarded by an etag.
TRANSIENT = (exceptions.ServiceUnavailable, exceptions.DeadlineExceeded, exceptions.TooManyRequests,
             exceptions.InternalServerError, exceptions.BadGateway, exceptions.GatewayTimeout)
DEADLINE_SECONDS = float(os.environ.get("SPINBOOT_GOOGLE_RETRY_DEADLINE", "120"))
CONNECT_DEADLINE_SECONDS = float(os.environ.get("SPINBOOT_CONNECT_RETRY_DEADLINE", "5"))

# How gRPC (its c-ares and native resolvers, its connector), urllib3 and the OS say "nothing answers there".
# Seen: "503 errors resolving iam.googleapis.com:443: [... Domain name not found]", "DNS resolution failed for
# ...", "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Failed to connect to remote
# host: Connection refused", "[Errno -2] Name or service not known".
_UNREACHABLE = re.compile(
    r"DNS resolution failed|errors? resolving |Domain name not found|hostname lookup error|Name or service not known|"
    r"nodename nor servname|Temporary failure in name resolution|No address associated with hostname|"
    r"Failed to resolve|Connection refused|Network is unreachable|No route to host", re.IGNORECASE)


def exception_chain(exc: BaseException):
    """The exception, what caused it, and what urllib3/requests/api-core wrapped in it."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), getattr(e, "cause", None)]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]


def is_unreachable(exc: BaseException) -> bool:
    """Nothing answers at the address: the name does not resolve, the port refuses, no route. From any client."""
    import urllib3

    for e in exception_chain(exc):
        if isinstance(e, (socket.gaierror, ConnectionRefusedError, urllib3.exceptions.NewConnectionError)):
            return True  # NameResolutionError is a NewConnectionError
        if isinstance(e, OSError) and getattr(e, "errno", None) in (101, 111, 113):  # ENETUNREACH, ECONNREFUSED, EHOSTUNREACH
            return True
        if isinstance(e, (exceptions.ServiceUnavailable, exceptions.RetryError)) and _UNREACHABLE.search(str(e)):
            return True
    return False


class _Retry(retry.Retry):
    """google-api-core's Retry, except that an unreachable address is retried only within CONNECT_DEADLINE_SECONDS
    of the first time it was seen in the call (each call gets its own clock)."""

    def __call__(self, func, on_error=None):
        @functools.wraps(func)
        def wrapped(*args, **kwargs):
            first_unreachable: list[float] = []

            def predicate(exc: Exception) -> bool:
                if is_unreachable(exc):
                    now = time.monotonic()
                    first_unreachable[:1] = first_unreachable[:1] or [now]
                    return now - first_unreachable[0] < CONNECT_DEADLINE_SECONDS
                return self._predicate(exc)

            per_call = retry.Retry(predicate=predicate, initial=self._initial, maximum=self._maximum,
                                   multiplier=self._multiplier, timeout=self._timeout, on_error=self._on_error)
            return per_call(func, on_error)(*args, **kwargs)

        return wrapped


RETRY = _Retry(predicate=retry.if_exception_type(*TRANSIENT), initial=0.2, maximum=10.0, multiplier=2.0,
               timeout=DEADLINE_SECONDS)


def is_transient(exc: BaseException) -> bool:
    """A failure worth another try, from any Google client: gRPC ones (above) and the JSON API's (Cloud Storage
    through requests: a reset or dropped connection). Never an unreachable address (see the module's doc)."""
    import requests

    if is_unreachable(exc):
        return False
    return isinstance(exc, (*TRANSIENT, requests.ConnectionError, ConnectionError))
