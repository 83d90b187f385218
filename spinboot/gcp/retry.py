"""Retries for Google API calls (google-api-core's Retry: exponential backoff with jitter, within a deadline)."""

from __future__ import annotations

import os

from google.api_core import exceptions, retry

# UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (429), INTERNAL and 5xx are transient; retrying them is safe
# because every call spinboot retries is a read, or a write whose duplicate is detected (ALREADY_EXISTS) or
# guarded by an etag.
TRANSIENT = (exceptions.ServiceUnavailable, exceptions.DeadlineExceeded, exceptions.TooManyRequests,
             exceptions.InternalServerError, exceptions.BadGateway, exceptions.GatewayTimeout)
DEADLINE_SECONDS = float(os.environ.get("SPINBOOT_GOOGLE_RETRY_DEADLINE", "120"))

RETRY = retry.Retry(predicate=retry.if_exception_type(*TRANSIENT), initial=0.2, maximum=10.0, multiplier=2.0,
                    timeout=DEADLINE_SECONDS)


def is_transient(exc: BaseException) -> bool:
    """A failure worth another try, from any Google client: gRPC ones (above) and the JSON API's (Cloud Storage
    through requests: a reset or dropped connection)."""
    import requests

    return isinstance(exc, (*TRANSIENT, requests.ConnectionError, ConnectionError))
