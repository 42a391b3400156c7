"""Delivery of the outbox, run by ``bulwarkd``: claim a due notification, send it, record the outcome.

A channel that fails raises its own alert (``channel.failed``, one per channel) so that a broken mail server
or webhook never fails silently; the alert goes to the other channels and clears at the channel's next
success. A notification that is no longer worth sending is dropped with a note: an alert that was acknowledged,
snoozed or cleared before its (quiet-hours-held) notice went out.
"""

from __future__ import annotations

import logging
import time

from appliance.alerts import channels, engine, outbox, senders
from appliance.alerts.classes import declare
from appliance.alerts.outbox import Notification
from appliance.store import Store
from appliance.system.errors import BulwarkError

log = logging.getLogger("bulwark.alerts")

CHANNEL_FAILED = declare(
    "channel.failed",
    level="warning",
    category="channels",
    title="Alert channel failing",
    template="alert channel {channel} ({kind}) cannot deliver: {reason}",
)


def _stale(store: Store, notification: Notification, now: float) -> str | None:
    """Why a queued alert notification should not go out any more (None: it should)."""
    if notification.alert_id is None or notification.event not in outbox.RAISING_EVENTS:
        return None
    try:
        alert = engine.get(store, notification.alert_id)
    except BulwarkError:
        return "the alert no longer exists"
    status = alert.status(now)
    return None if status == "active" else f"not sent: the alert is {status} now"


def deliver(store: Store, notification_id: int, *, now: float | None = None) -> Notification | None:
    """Deliver one pending notification (None if another process claimed it first)."""
    at = time.time() if now is None else now
    notification = outbox.claim(store, notification_id, at)
    if notification is None:
        return None
    try:
        channel = channels.get(store, notification.channel_id)
    except channels.ChannelNotFound:
        outbox.mark_dropped(store, notification.id, "the channel was removed")
        return outbox.get(store, notification.id)
    why_not = _stale(store, notification, at)
    if why_not is None and not channel.enabled and notification.event != "test":
        why_not = "the channel is disabled"
    if why_not is not None:
        outbox.mark_dropped(store, notification.id, why_not)
        return outbox.get(store, notification.id)
    facts = {"hostname": "bulwark"}
    with store.write() as conn:
        facts = outbox.appliance_facts(conn)
    delivery_id = f"{facts['hostname']}:{notification.id}"
    try:
        detail = senders.send(channel, notification.payload, delivery_id, hostname=facts["hostname"])
    except senders.DeliveryFailed as exc:
        reason = str(exc.args[1]) if len(exc.args) > 1 else exc.message
        state = outbox.mark_failed(store, notification, reason, at)
        channels.record_result(store, channel.id, reason, at)
        later = "" if state == "failed" else f"; retrying in {outbox.backoff(notification.attempts):.0f} s"
        log.warning(
            "notification %d (%s) to channel %s failed (attempt %d of %d): %s",
            notification.id,
            notification.event,
            channel.name,
            notification.attempts,
            notification.max_attempts,
            reason,
        )
        engine.fire(
            store,
            CHANNEL_FAILED,
            channels.failure_key(channel.id),
            subject=f"channel:{channel.name}",
            now=at,
            channel=channel.name,
            kind=channel.kind,
            reason=reason + later,
        )
        return outbox.get(store, notification.id)
    outbox.mark_sent(store, notification.id, time.time() if now is None else now, note=detail)
    channels.record_result(store, channel.id, None, at)
    engine.clear(store, channels.failure_key(channel.id), now=at)
    log.info("notification %d (%s) delivered to %s: %s", notification.id, notification.event, channel.name, detail)
    return outbox.get(store, notification.id)


def deliver_due(store: Store, *, now: float | None = None, limit: int = 20) -> list[Notification]:
    """Deliver what is due now, oldest first."""
    at = time.time() if now is None else now
    done = []
    for notification_id in outbox.due(store, at, limit):
        result = deliver(store, notification_id, now=now)
        if result is not None:
            done.append(result)
    return done


def wait_for(store: Store, notification_id: int, timeout: float, *, poll: float = 0.2) -> Notification:
    """Follow a notification until it leaves the queue (sent, failed, dropped) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        notification = outbox.get(store, notification_id)
        if notification.state in ("sent", "failed", "dropped") or time.monotonic() > deadline:
            return notification
        time.sleep(poll)
