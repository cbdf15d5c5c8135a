"""Who can read the Profile API: a worker refuses to start with it open to a network.

Every profile, email trait included, is served to whoever reaches the port
when no token is set. On a loopback address that is the machine's own
users; on any other address it is whoever can route to it, so the worker
needs ``KAIROS_API_TOKEN``, or ``KAIROS_API_OPEN=true`` to say the API is
meant to be open (a private network, an authenticating proxy in front).
/metrics and /ready are open either way: Prometheus and the probes carry
no token.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streams.settings import env_name

if TYPE_CHECKING:
    from streams.settings import Settings

TOKEN, OPEN, HOST = (env_name((f,)) for f in ("api_token", "api_open", "web_host"))


@dataclass(frozen=True)
class Exposure:
    """A reason not to start (``refusal``), or one to warn about (``warning``)."""

    refusal: str = ""
    warning: str = ""


def is_loopback(host: str) -> bool:
    """Only this machine can connect to ``host``. A name other than localhost
    may resolve anywhere, so it counts as reachable from beyond."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_exposure(settings: Settings) -> Exposure:
    """Whether a worker with ``settings`` may start, and what to warn about."""
    if settings.api_token is not None or is_loopback(settings.web_host):
        return Exposure()
    where = f"{HOST}={settings.web_host}"
    if settings.api_open:
        return Exposure(
            warning=f"the Profile API is open to anyone who can reach {where} "
            f"({OPEN}=true, no {TOKEN}): every profile is readable"
        )
    return Exposure(
        refusal=f"{where} is not a loopback address, and {TOKEN} is unset: "
        "the Profile API would serve every profile to anyone who can reach the port; "
        f"set {TOKEN}, or {OPEN}=true if it is meant to be open"
    )
