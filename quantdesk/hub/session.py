"""The HTTP client every hub call shares, with the timeouts huggingface_hub leaves open.

huggingface_hub's client has no timeout, and many of its calls pass ``timeout=None`` explicitly: a
hub (or a mirror, or a captive portal) that accepts the connection and never answers would hang a
listing or a header read for as long as the socket lives. A request hook gives every request that
arrives without a timeout a connect and a read timeout; requests that set their own (downloads,
with their stall timeout) keep theirs.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

CONNECT_TIMEOUT = 5.0
_local = threading.local()


def read_timeout() -> float:
    """Seconds a hub API call may wait for the next byte (``QUANTDESK_HUB_TIMEOUT``, default 8)."""
    return float(os.environ.get("QUANTDESK_HUB_TIMEOUT", "8"))


@contextlib.contextmanager
def hub_deadline(seconds: float) -> Iterator[None]:
    """Every hub request this thread makes inside the block ends by then, retries included: each
    one's timeouts shrink to the time left (so a hub that never answers costs ``seconds``, not the
    read timeout times the tries)."""
    previous = getattr(_local, "deadline", None)
    _local.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.deadline = previous


def _bound_timeout(request: Any) -> None:
    timeout = request.extensions.get("timeout") or {}
    if all(value is None for value in timeout.values()):
        read = read_timeout()
        deadline = getattr(_local, "deadline", None)
        if deadline is not None:
            read = min(read, max(0.5, deadline - time.monotonic()))
        request.extensions["timeout"] = {"connect": min(CONNECT_TIMEOUT, read), "read": read,
                                         "write": read, "pool": read}


def hub_session() -> Any:
    """huggingface_hub's shared client, with the timeout hook installed (again, if the client was
    replaced since): call it before any hub request, including those HfApi makes."""
    from huggingface_hub import get_session

    session = get_session()
    hooks = session.event_hooks
    if _bound_timeout not in hooks.get("request", []):
        hooks["request"] = [*hooks.get("request", []), _bound_timeout]
        session.event_hooks = hooks
    return session
