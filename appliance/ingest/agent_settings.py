"""Per-client settings for its backup agents, set on the appliance: the default paths, a bandwidth limit and a
backup window.

- **Paths**: what ``bulwark-agent backup`` protects when it is given no PATH (the agent learns them from
  ``GET /agent/v1/hello``). Absolute paths of the client's system: ``/home`` or ``C:\\Users``.
- **Bandwidth limit** (KiB/s): the agent sends at most the lower of its own ``--bwlimit`` and this.
- **Backup window** (the syntax of :mod:`appliance.schedules`, read in the appliance's time zone): a job opened
  outside it is refused with a retryable error that says when the window opens. A job opened inside the window
  runs to its end.

The settings live in the database next to the agents' credentials (which do not travel with the pool either).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from appliance import schedules
from appliance.clients import service
from appliance.clients.model import check_name
from appliance.store import Store
from appliance.system.errors import Busy, InvalidInput

MAX_PATHS = 64
MAX_PATH_LENGTH = 1024
MAX_BWLIMIT_KIBPS = 100 * 1024 * 1024  # 100 GiB/s: anything above is a typo
_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")


class OutsideBackupWindow(Busy):
    """Client {} takes agent backups only within {} ({}); the window opens at {}."""

    code = "outside_backup_window"
    hint = (
        "Nothing was started. The agent's timer tries again at its next run; to back up now, widen or clear the "
        "backup window on the client's page (Agents) or with 'bulwark client agent-settings CLIENT --window any'."
    )

    def __init__(self, client: str, window: str, zone: str, opens_at: float, now: float) -> None:
        shown = dt.datetime.fromtimestamp(opens_at, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
        super().__init__(client, window, zone, shown)
        self.opens_at = opens_at
        self.retry_after = max(1, math.ceil(opens_at - now))


@dataclass(frozen=True)
class AgentSettings:
    client: str
    paths: tuple[str, ...] = ()
    bwlimit_kibps: int | None = None  # None: no limit set on the appliance
    window: str | None = None  # canonical window text; None: any time
    updated_at: float | None = None
    updated_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "paths": list(self.paths),
            "bwlimit_kibps": self.bwlimit_kibps,
            "window": self.window,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }


def check_paths(value: Any) -> tuple[str, ...]:
    """Absolute paths (POSIX ``/srv`` or Windows ``D:\\data``), one line each, no ``..``; duplicates dropped."""
    if isinstance(value, str):
        value = value.replace("\r", "\n").split("\n")
    if not isinstance(value, list | tuple):
        raise InvalidInput("paths must be a list of absolute paths")
    out: list[str] = []
    for raw in value:
        if not isinstance(raw, str):
            raise InvalidInput("each path must be text")
        path = raw.strip()
        if not path:
            continue
        shown = repr(path[:80])
        if len(path) > MAX_PATH_LENGTH:
            raise InvalidInput(f"path {shown}… is longer than {MAX_PATH_LENGTH} characters")
        if any(not ch.isprintable() for ch in path):
            raise InvalidInput(f"path {shown} contains control characters (one path per line)")
        if not (path.startswith("/") or _WINDOWS_ABSOLUTE.match(path)):
            raise InvalidInput(f"path {shown} is not absolute: write /home or C:\\Users")
        if ".." in re.split(r"[\\/]", path):
            raise InvalidInput(f"path {shown} contains '..': write the path it leads to")
        if path not in out:
            out.append(path)
    if len(out) > MAX_PATHS:
        raise InvalidInput(f"at most {MAX_PATHS} paths (give parent directories instead)")
    return tuple(out)


def check_bwlimit(value: Any) -> int | None:
    """KiB/s as a whole number; ``None``, ``""``, ``none`` and ``0`` mean no limit."""
    if value is None or isinstance(value, bool):
        if isinstance(value, bool):
            raise InvalidInput("the bandwidth limit must be a number of KiB/s")
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "none", "0", "off"):
            return None
        if not text.isdigit():
            raise InvalidInput(f"bandwidth limit {value[:40]!r} must be a whole number of KiB/s (e.g. 2048) or 'none'")
        value = int(text)
    if not isinstance(value, int):
        raise InvalidInput("the bandwidth limit must be a whole number of KiB/s")
    if value < 0:
        raise InvalidInput("the bandwidth limit must not be negative")
    if value > MAX_BWLIMIT_KIBPS:
        raise InvalidInput(f"the bandwidth limit must be at most {MAX_BWLIMIT_KIBPS} KiB/s (or 'none')")
    return value or None


def check_window(value: Any) -> str | None:
    window = schedules.parse_window(value)
    return None if window is None else window.text


def _from_row(client: str, row: Any) -> AgentSettings:
    if row is None:
        return AgentSettings(client)
    return AgentSettings(
        client,
        tuple(json.loads(row["paths"])),
        row["bwlimit_kibps"],
        row["backup_window"],
        row["updated_at"],
        row["updated_by"],
    )


def get(store: Store, client: str) -> AgentSettings:
    """The client's agent settings (defaults when none were set); the client must exist."""
    found = service.get_client(store, check_name(client))
    row = store.query_one("SELECT * FROM agent_settings WHERE client = ?", (found.name,))
    return _from_row(found.name, row)


_UNSET: Any = object()


def update(
    store: Store,
    client: str,
    *,
    by: str,
    paths: Any = _UNSET,
    bwlimit_kibps: Any = _UNSET,
    window: Any = _UNSET,
    now: float | None = None,
) -> AgentSettings:
    """Change the given settings (each validated first: on bad input nothing changes) and audit the change."""
    current = get(store, client)
    new_paths = current.paths if paths is _UNSET else check_paths(paths)
    new_limit = current.bwlimit_kibps if bwlimit_kibps is _UNSET else check_bwlimit(bwlimit_kibps)
    new_window = current.window if window is _UNSET else check_window(window)
    if (new_paths, new_limit, new_window) == (current.paths, current.bwlimit_kibps, current.window):
        return current
    at = time.time() if now is None else now
    with store.write() as db:
        db.execute(
            "INSERT INTO agent_settings (client, paths, bwlimit_kibps, backup_window, updated_at, updated_by)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (client) DO UPDATE SET paths = excluded.paths,"
            " bwlimit_kibps = excluded.bwlimit_kibps, backup_window = excluded.backup_window,"
            " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (current.client, json.dumps(list(new_paths)), new_limit, new_window, at, by),
        )
    store.audit(
        by,
        "agent.settings",
        f"client:{current.client}",
        paths=list(new_paths),
        bwlimit_kibps=new_limit,
        window=new_window,
    )
    return get(store, client)


def effective_bwlimit(agent_kibps: int, appliance_kibps: int | None) -> int:
    """The limit an agent applies (KiB/s, 0 for none): the lower of its own and the appliance's."""
    limits = [v for v in (agent_kibps, appliance_kibps or 0) if v and v > 0]
    return min(limits) if limits else 0


def next_opening(window: schedules.Window, now: float, tz: str | dt.tzinfo) -> float:
    """When ``window`` next opens after ``now`` (a span starts on one of its days, in the zone's local time)."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    today = dt.datetime.fromtimestamp(now, zone).date()
    for k in range(8):
        day = today + dt.timedelta(days=k)
        if day.weekday() not in window.days:
            continue
        start = dt.datetime(day.year, day.month, day.day, window.start // 60, window.start % 60, tzinfo=zone)
        at = start.timestamp()
        if at > now:
            return at
    raise AssertionError("a window opens at least once a week")  # pragma: no cover


def window_state(store: Store, settings: AgentSettings, now: float | None = None) -> dict[str, Any]:
    """``{"window", "open", "opens_at", "timezone"}`` for the hello message and the client's page."""
    at = time.time() if now is None else now
    zone = service.timezone(store)
    window = schedules.parse_window(settings.window)
    if window is None or window.contains(at, zone):
        return {"window": settings.window, "open": True, "opens_at": None, "timezone": zone}
    return {"window": settings.window, "open": False, "opens_at": next_opening(window, at, zone), "timezone": zone}


def check_open_now(store: Store, client: str, now: float | None = None) -> None:
    """Refuse (:class:`OutsideBackupWindow`, retryable) a job opened outside the client's backup window."""
    at = time.time() if now is None else now
    settings = get(store, client)
    found = window_state(store, settings, at)
    if not found["open"]:
        assert settings.window is not None
        raise OutsideBackupWindow(client, settings.window, found["timezone"], found["opens_at"], at)


def for_agent(store: Store, client: str, now: float | None = None) -> dict[str, Any]:
    """What ``GET /agent/v1/hello`` tells an agent about its client's settings."""
    found = get(store, client)
    window = window_state(store, found, now)
    return {
        "paths": list(found.paths),
        "bwlimit_kibps": found.bwlimit_kibps,
        "window": found.window,
        "window_open": window["open"],
        "window_opens_at": window["opens_at"],
        "timezone": window["timezone"],
    }
