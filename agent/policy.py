"""What the appliance sets for this agent's client (``GET /hello``): the default paths, the bandwidth limit and
the backup window. The appliance enforces the window itself when a job opens; the agent checks it first only to
avoid scanning for nothing."""

from __future__ import annotations

import time
from typing import Any

from agent.transport import AgentError, Connection

TEMPFAIL = 75  # exit status (EX_TEMPFAIL) when the appliance says "not now": try again later
RETRY_LATER = frozenset({"outside_backup_window", "too_many_jobs", "auth_throttled"})


def fetch(enrolled: dict[str, Any]) -> dict[str, Any]:
    """The client's agent settings as the appliance serves them (``{}`` from an appliance that sends none)."""
    conn = Connection(enrolled["server"], enrolled["fingerprint"], enrolled["credential"])
    try:
        hello = conn.request("GET", "/hello")
    finally:
        conn.close()
    settings = hello.get("settings") if isinstance(hello, dict) else None
    return settings if isinstance(settings, dict) else {}


def bwlimit(own_kibps: int, settings: dict[str, Any]) -> int:
    """Bytes per second to send at most (0: no limit): the lower of the agent's own limit and the appliance's."""
    theirs = settings.get("bwlimit_kibps")
    limits = [v for v in (own_kibps, theirs) if isinstance(v, int) and v > 0]
    return min(limits) * 1024 if limits else 0


def paths(given: list[str], settings: dict[str, Any]) -> list[str]:
    if given:
        return given
    found = settings.get("paths")
    if isinstance(found, list) and found and all(isinstance(p, str) for p in found):
        return list(found)
    raise AgentError(
        "no paths to back up",
        "give the directories to protect (e.g. bulwark-agent backup /home), or set the client's default paths on "
        "the appliance (the client's page, Agents)",
    )


def check_window(settings: dict[str, Any]) -> None:
    """Refuse before any work when the appliance said its backup window is closed now."""
    if settings.get("window_open", True):
        return
    opens = settings.get("window_opens_at")
    when = time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(opens)) if isinstance(opens, int | float) else "later"
    raise AgentError(
        f"the appliance takes this client's backups only within {settings.get('window')} "
        f"({settings.get('timezone', 'its time zone')}); the window opens at {when}",
        "nothing was sent; the timer runs the backup again, or change the window on the appliance",
        code="outside_backup_window",
    )
