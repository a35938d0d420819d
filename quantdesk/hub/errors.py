"""How the hub says no, as sentences with a next step; retries for the answers it gives under load."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from quantdesk.base.errors import QuantDeskError
from quantdesk.hub.endpoint import hub_endpoint

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
    return HubUnreachable(f"cannot reach the hub at {hub_endpoint()} for {what}: {exc}")


API_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
API_ATTEMPTS = 4


def with_retries(call: Callable[[], T], what: str) -> T:
    """``call`` (a hub API request), again after a 429 or 5xx with backoff (honouring Retry-After, up
    to 10 s): the hub answers those under load, and one of them should not fail a download. Other
    errors, and the last retryable one, become a sentence (:func:`translate_hub_error`)."""
    for attempt in range(1, API_ATTEMPTS + 1):
        try:
            return call()
        except Exception as exc:
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", None)
            if status not in API_RETRY_STATUSES or attempt == API_ATTEMPTS:
                raise translate_hub_error(exc, what) from None
            try:
                wait = float(response.headers.get("Retry-After"))
            except (TypeError, ValueError):
                wait = 0.5 * 2 ** (attempt - 1)
            time.sleep(min(10.0, max(0.0, wait)))
    raise AssertionError("unreachable")


def probe_hub(timeout: float = 5.0) -> None:
    """Fail fast when the hub does not answer: the client's listing retries connection errors for ~25 s."""
    from huggingface_hub.utils import get_session

    try:
        get_session().get(f"{hub_endpoint()}/api/models", params={"limit": 1}, timeout=timeout)
    except Exception as exc:
        raise HubUnreachable(f"cannot reach the hub at {hub_endpoint()}: {exc}") from None
