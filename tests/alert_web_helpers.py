"""Objects the route walk (tests/unit/test_permissions.py) makes for the alerts, channels and reports routes: a
fresh alert, a channel, a notification, a report schedule and a client row, one set per request."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from appliance import alerts
from appliance.alerts import channels, outbox
from appliance.clients import service
from appliance.clients.model import Client, ClientSettings
from appliance.reports import schedule
from appliance.store import Store

ALERT_ARGUMENTS = frozenset({"alert_id", "channel_id", "notification_id", "schedule_id", "status", "client"})


def add_client_row(db: Store, name: str) -> Client:
    """A client as the database knows it (reports need no ZFS)."""
    now = time.time()
    client = Client(name, str(uuid.uuid4()), f"tank/clients/{name}", "active",
                    ClientSettings.build(kind="smb", schedule="off"), now, now)  # fmt: skip
    service.save_row(db, client)
    return client


def mail_channel(db: Store, name: str) -> channels.Channel:
    config = {"host": "127.0.0.1", "port": 9, "from": "bulwark@example.net", "to": "noc@example.net"}
    return channels.create(db, name, "email", config, secret="walk-secret")


def fill_alert_argument(db: Store, name: str) -> Any:
    tag = secrets.token_hex(3)
    if name == "alert_id":
        return alerts.raise_alert(db, f"walk:{tag}", level="warning", category="walk", message="walk")[0].id
    if name == "channel_id":
        return mail_channel(db, f"walk-{tag}").id
    if name == "notification_id":
        return outbox.enqueue_test(db, mail_channel(db, f"walk-{tag}"), by="walk")
    if name == "schedule_id":
        return schedule.add(db, None, mail_channel(db, f"walk-{tag}").name, "weekly", first_at=time.time() + 3600).id
    if name == "client":
        return add_client_row(db, f"walk-{tag}").name
    if name == "status":
        return "active"
    raise KeyError(name)
