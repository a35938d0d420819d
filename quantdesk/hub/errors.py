"""How the hub says no, as sentences with a next step; retries for the answers it gives under load."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from quantdesk.base.errors import QuantDeskError
from quantdesk.hub.endpoint import hub_endpoint
from quantdesk.hub.session import hub_deadline, hub_session, read_timeout

T = TypeVar("T")


class HubUnreachable(QuantDeskError):
    """The hub did not answer (no network, DNS, timeout, 5xx): callers may fall back to the offline catalog."""


def translate_hub_error(exc: Exception, what: str) -> QuantDeskError:
    """One sentence with the next step for each way the hub can say no."""
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return QuantDeskError(f"{what} is gated: accept its terms on the hub and set a token (HF_TOKEN or Settings)")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return QuantDeskError(f"{what} was not found on the hub (or is private and needs a token)")
    if isinstance(exc, errors.RevisionNotFoundError):
        return QuantDeskError(f"{what}: that revision does not exist")
    if isinstance(exc, errors.EntryNotFoundError):
        return QuantDeskError(f"{what}: file not found in the repository")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, errors.HfHubHTTPError) and status is not None and status < 500:
        return QuantDeskError(f"the hub refused {what} ({status}): {exc}")
    if _is_timeout(exc):
        return HubUnreachable(f"the hub at {hub_endpoint()} did not answer {what} in time ({type(exc).__name__})",
                              next_step=UNREACHABLE_NEXT_STEP)
    return HubUnreachable(f"cannot reach the hub at {hub_endpoint()} for {what}: {exc}", next_step=UNREACHABLE_NEXT_STEP)


UNREACHABLE_NEXT_STEP = ("Check the network connection and the hub endpoint (Settings, or HF_ENDPOINT), then try "
                         "again; Discover and `search` work offline from the bundled catalog meanwhile.")


def _is_timeout(exc: BaseException) -> bool:
    return "Timeout" in type(exc).__name__ or isinstance(exc, TimeoutError)


def _is_transient(exc: BaseException) -> bool:
    """A timeout or a dropped connection (any HTTP library's TransportError) — worth another try. A
    refused connection or an unknown host is not: nothing listens there, and the caller's offline
    fallback should not wait for backoffs."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "ConnectError" in names or isinstance(exc, ConnectionRefusedError):
        return False
    return bool(names & {"TransportError", "ConnectionError"}) or isinstance(exc, (TimeoutError, ConnectionError))


API_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
API_ATTEMPTS = 4


def retry_deadline() -> float:
    """Seconds a hub API call may take, retries included: a read timeout and a shorter second try
    (a silent hub is told in ~12 s by default; a slow answer gets its full read timeout)."""
    return read_timeout() + 4


def with_retries(call: Callable[[], T], what: str) -> T:
    """``call`` (a hub API request), again after a 429 or 5xx with backoff (honouring Retry-After, up
    to 10 s), or after a timeout or a dropped connection, until ``API_ATTEMPTS`` tries or the
    deadline: the hub answers those under load, and one of them should not fail a download. Other
    errors, and the last retryable one, become a sentence (:func:`translate_hub_error`)."""
    hub_session()  # every request gets a timeout
    deadline = time.monotonic() + retry_deadline()
    for attempt in range(1, API_ATTEMPTS + 1):
        try:
            with hub_deadline(deadline - time.monotonic()):
                return call()
        except Exception as exc:
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", None)
            retryable = status in API_RETRY_STATUSES or (status is None and _is_transient(exc))
            try:
                wait = float(response.headers.get("Retry-After"))
            except (AttributeError, TypeError, ValueError):
                wait = 0.5 * 2 ** (attempt - 1)
            wait = min(10.0, max(0.0, wait))
            if not retryable or attempt == API_ATTEMPTS or time.monotonic() + wait >= deadline:
                raise translate_hub_error(exc, what) from None
            time.sleep(wait)
    raise AssertionError("unreachable")


def probe_hub(timeout: float = 5.0) -> None:
    """Fail fast when the hub does not answer: the client's listing retries connection errors for ~25 s."""
    try:
        hub_session().get(f"{hub_endpoint()}/api/models", params={"limit": 1}, timeout=timeout)
    except Exception as exc:
        raise HubUnreachable(f"cannot reach the hub at {hub_endpoint()}: {exc}", next_step=UNREACHABLE_NEXT_STEP) from None
