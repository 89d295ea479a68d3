"""Is the Hugging Face Hub answering? One request with a hard time bound, asked before a download.

huggingface_hub (1.x, 2.x) answers a failed metadata request, when nothing is cached, by asking again
with retries: 5 more tries 1, 2, 4, 8 and 8 s apart (about 24 s and a dozen log lines when there is no
network), each waiting up to 60 s for a server that accepts but does not answer. Probing first lets an
unreachable Hub be known within seconds; the download then looks in the cache only, as offline mode does.
"""

from __future__ import annotations

import threading

from ..errors import first_line

# How long the Hub may take to answer the probe (DNS, connection, TLS and the reply together); a user
# who sets HF_HUB_ETAG_TIMEOUT (the Hub client's own metadata timeout) for a slow link gets that instead.
PROBE_SECONDS = 2.0
# An answer at or above this status is a Hub that is down (the client would retry it too).
SERVER_ERROR = 500


def probe_seconds() -> float:
    """The probe's bound: ``PROBE_SECONDS``, or HF_HUB_ETAG_TIMEOUT when the user set it."""
    from huggingface_hub import constants

    default = getattr(constants, "DEFAULT_ETAG_TIMEOUT", None)
    chosen = getattr(constants, "HF_HUB_ETAG_TIMEOUT", default)
    return float(chosen) if chosen and chosen != default else PROBE_SECONDS


def hub_unreachable(endpoint: str, seconds: float | None = None) -> str | None:
    """Why the Hub at ``endpoint`` cannot be used now (e.g. "did not answer within 2 s"), or None if it answers.

    One HEAD request through huggingface_hub's own HTTP session (its proxies, certificates and headers
    apply), run in a daemon thread so that name resolution, which no HTTP timeout covers, is bounded too.
    """
    from huggingface_hub.utils import get_session

    bound = probe_seconds() if seconds is None else seconds
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            status = get_session().head(endpoint.rstrip("/") + "/", timeout=bound).status_code
        except Exception as exc:  # requests (hub 0.x) and httpx (1.x, 2.x) raise unrelated exception families
            outcome.append(first_line(exc))
            return
        outcome.append(f"it answered HTTP {status}" if status >= SERVER_ERROR else None)

    worker = threading.Thread(target=probe, name="rmbg-hub-probe", daemon=True)
    worker.start()
    worker.join(bound)
    return outcome[0] if outcome else f"no answer within {bound:g} s"

