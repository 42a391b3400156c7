"""The one permission table, used by the web pages and the API alike.

Every view declares the permission it needs with :func:`requires`; a view that declares nothing is
refused to everyone (fail closed), and a test walks every route with every role against this table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

ADMIN, OPERATOR, VIEWER = "admin", "operator", "viewer"
ALL = frozenset({ADMIN, OPERATOR, VIEWER})
STAFF = frozenset({ADMIN, OPERATOR})

PUBLIC = "public"  # no sign-in needed (login page, static assets, /metrics with its own optional token)
PENDING = "pending"  # signed in with the password, second factor still to come

PERMISSIONS: dict[str, frozenset[str]] = {
    "view": ALL,  # read any status page or API resource
    "self": ALL,  # one's own password and second factor
    "audit.view": STAFF,
    "jobs.run": STAFF,  # start jobs: scrubs, snapshots, prunes
    "jobs.cancel": STAFF,
    "users.manage": frozenset({ADMIN}),
    "tokens.manage": frozenset({ADMIN}),
    "settings.manage": frozenset({ADMIN}),
    "clients.manage": STAFF,  # add clients, change their settings, pin and unpin points, remove and reattach
    "clients.destroy": frozenset({ADMIN}),  # destroy data: a client's datasets, or one recovery point
    "restore.run": STAFF,  # browse recovery points, download from them, restore into live data
    "alerts.ack": STAFF,  # acknowledge, snooze and unsnooze alerts
    "alerts.manage": frozenset({ADMIN}),  # notification channels, report mails, the /metrics token
    "tunnel.manage": frozenset({ADMIN}),  # remote access: jump host, host key, on/off (changes on site only)
    "remote.switch": frozenset({ADMIN}),  # the on-site switch that allows or blocks remote sessions
    "keys.manage": frozenset({ADMIN}),  # offsite data keys: create, rotate, download the recovery kit
    "offsite.manage": frozenset({ADMIN}),  # offsite targets and each client's replication policy
    "disks.replace": frozenset({ADMIN}),  # the guided disk replacement: bay LEDs and zpool replace
    "agents.manage": frozenset({ADMIN}),  # backup agents: enrollment codes and revoking credentials
    # Each area adds its permissions together with the views that use them (a test checks that every
    # entry here is used), e.g. "clients.manage": STAFF, "clients.destroy": {ADMIN}, "restore.run": STAFF,
    # "alerts.ack": STAFF, "keys.manage": {ADMIN}, "network.manage": {ADMIN}.
}

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "bulwark_permission"


def requires(permission: str) -> Callable[[F], F]:
    """Declare what a view needs (one of PERMISSIONS, or PUBLIC / PENDING)."""
    if permission not in PERMISSIONS and permission not in (PUBLIC, PENDING):
        raise KeyError(f"unknown permission {permission!r}")

    def mark(fn: F) -> F:
        setattr(fn, ATTRIBUTE, permission)
        return fn

    return mark


def permission_of(view: Callable[..., Any] | None) -> str | None:
    return getattr(view, ATTRIBUTE, None) if view is not None else None


def allowed(role: str | None, permission: str) -> bool:
    if permission == PUBLIC:
        return True
    if role is None:
        return False
    return role in PERMISSIONS.get(permission, frozenset())
