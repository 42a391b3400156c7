"""Alerts: conditions that need a person, raised and cleared by the code that watches them.

Each area declares its alert classes (:func:`declare`: level, category, message template) and raises them with
a dedup key, so that one condition is one alert however often it is seen (:mod:`appliance.alerts.engine`).
People acknowledge or snooze alerts; the condition's end clears them. Channels (e-mail, webhooks, syslog)
receive notifications through a durable outbox that ``bulwarkd`` delivers (:mod:`.channels`, :mod:`.outbox`,
:mod:`.delivery`). See docs/alerts.md.
"""

from __future__ import annotations

from appliance.alerts.classes import LEVELS, AlertClass, all_classes, declare
from appliance.alerts.engine import (
    STATES,
    STATUSES,
    Alert,
    AlertCleared,
    AlertNotFound,
    InvalidSnooze,
    acknowledge,
    clear,
    clear_missing,
    counts,
    events,
    expire_snoozes,
    fire,
    get,
    get_active,
    list_alerts,
    raise_alert,
    snooze,
    snooze_end,
    unsnooze,
)

__all__ = [
    "LEVELS",
    "STATES",
    "STATUSES",
    "Alert",
    "AlertClass",
    "AlertCleared",
    "AlertNotFound",
    "InvalidSnooze",
    "acknowledge",
    "all_classes",
    "clear",
    "clear_missing",
    "counts",
    "declare",
    "events",
    "expire_snoozes",
    "fire",
    "get",
    "get_active",
    "list_alerts",
    "raise_alert",
    "snooze",
    "snooze_end",
    "unsnooze",
]
