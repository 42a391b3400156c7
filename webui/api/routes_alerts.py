"""API: alerts (by status, one with its history, acknowledge, snooze), notification channels (with a test send),
report data and report mails, and the /metrics token. (``GET /alerts``, the open alerts, is in routes_clients.)"""

from __future__ import annotations

from typing import Any

from flask import request
from spectree import Response

from appliance import alerts, metrics
from appliance.alerts import channels, outbox
from appliance.reports import schedule, sla
from webui import state
from webui.api import bp, spec
from webui.api.schemas import Done, ErrorBody
from webui.api.schemas_alerts import (
    AlertClassList,
    AlertClassOut,
    AlertCounts,
    AlertDetail,
    AlertEvent,
    AlertFull,
    AlertFullList,
    AlertStatusQuery,
    ChannelCreate,
    ChannelList,
    ChannelOut,
    ChannelUpdate,
    ClientReportOut,
    MetricsToken,
    NotificationOut,
    ReportQuery,
    ScheduleCreate,
    ScheduleList,
    ScheduleOut,
    SnoozeRequest,
    SummaryOut,
    TestQueued,
)
from webui.permissions import requires

ERRORS = {
    "HTTP_400": ErrorBody,
    "HTTP_401": ErrorBody,
    "HTTP_403": ErrorBody,
    "HTTP_404": ErrorBody,
    "HTTP_409": ErrorBody,
}
STATUS = "<any(active,acknowledged,snoozed,cleared):status>"
CLIENT = "<string(maxlength=32):client>"


def _alert(alert: alerts.Alert) -> AlertFull:
    data = alert.to_dict()
    data["alert_class"] = data.pop("class")
    return AlertFull.model_validate(data)


@bp.route(f"/alerts/status/{STATUS}", methods=["GET"])
@requires("view")
@spec.validate(query=AlertStatusQuery, resp=Response(HTTP_200=AlertFullList, **ERRORS), tags=["alerts"])
def alerts_by_status(status: str) -> Any:
    """Alerts of one status (``cleared`` is the history), newest first."""
    q: AlertStatusQuery = request.context.query  # type: ignore[attr-defined]
    found = alerts.list_alerts(state.store(), status=status, category=q.category, limit=q.limit)
    return AlertFullList(alerts=[_alert(a) for a in found])


@bp.route("/alerts/counts", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=AlertCounts, **ERRORS), tags=["alerts"])
def alert_counts() -> Any:
    """Open alerts by status, and those needing attention by level."""
    return AlertCounts.model_validate(alerts.counts(state.store()))


@bp.route("/alerts/classes", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=AlertClassList, **ERRORS), tags=["alerts"])
def alert_classes() -> Any:
    """Every alert the appliance can raise: class, default level, category and message template."""
    return AlertClassList(classes=[AlertClassOut.model_validate(c.to_dict()) for c in alerts.all_classes()])


def _detail(alert_id: int) -> AlertDetail:
    alert = alerts.get(state.store(), alert_id)
    return AlertDetail(
        **_alert(alert).model_dump(),
        events=[AlertEvent.model_validate(e) for e in alerts.events(state.store(), alert_id)],
        notifications=[
            NotificationOut.model_validate(n.to_dict())
            for n in outbox.list_notifications(state.store(), alert_id=alert_id)
        ],
    )


@bp.route("/alerts/<int:alert_id>", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=AlertDetail, **ERRORS), tags=["alerts"])
def get_alert(alert_id: int) -> Any:
    """One alert with its history and the notifications sent about it."""
    return _detail(alert_id)


@bp.route("/alerts/<int:alert_id>/acknowledge", methods=["POST"])
@requires("alerts.ack")
@spec.validate(resp=Response(HTTP_200=AlertFull, **ERRORS), tags=["alerts"])
def acknowledge_alert(alert_id: int) -> Any:
    """Someone is on it: no reminders. Ends a snooze."""
    alert = alerts.acknowledge(state.store(), alert_id, by=state.actor())
    state.audit("alert.acknowledge", str(alert_id))
    return _alert(alert)


@bp.route("/alerts/<int:alert_id>/snooze", methods=["POST"])
@requires("alerts.ack")
@spec.validate(json=SnoozeRequest, resp=Response(HTTP_200=AlertFull, **ERRORS), tags=["alerts"])
def snooze_alert(alert_id: int) -> Any:
    """Silence an alert for a ``duration`` or ``until`` a time (at most 30 days)."""
    body: SnoozeRequest = request.context.json  # type: ignore[attr-defined]
    until = alerts.snooze_end(until=body.until, duration=body.duration, tz=state.appliance_settings().timezone)
    alert = alerts.snooze(state.store(), alert_id, until=until, by=state.actor())
    state.audit("alert.snooze", str(alert_id), until=until)
    return _alert(alert)


@bp.route("/alerts/<int:alert_id>/unsnooze", methods=["POST"])
@requires("alerts.ack")
@spec.validate(resp=Response(HTTP_200=AlertFull, **ERRORS), tags=["alerts"])
def unsnooze_alert(alert_id: int) -> Any:
    """End a snooze early."""
    alert = alerts.unsnooze(state.store(), alert_id, by=state.actor())
    state.audit("alert.unsnooze", str(alert_id))
    return _alert(alert)


# -- channels --------------------------------------------------------------------------------------------------


def _channel(channel: channels.Channel) -> ChannelOut:
    return ChannelOut.model_validate(channel.to_dict())


@bp.route("/channels", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=ChannelList, **ERRORS), tags=["channels"])
def list_channels() -> Any:
    """Notification channels (secrets masked)."""
    return ChannelList(channels=[_channel(c) for c in channels.list_channels(state.store())])


@bp.route("/channels", methods=["POST"])
@requires("alerts.manage")
@spec.validate(json=ChannelCreate, resp=Response(HTTP_201=ChannelOut, **ERRORS), tags=["channels"])
def create_channel() -> Any:
    """Add an e-mail, webhook or syslog channel."""
    body: ChannelCreate = request.context.json  # type: ignore[attr-defined]
    channel = channels.create(
        state.store(),
        body.name,
        body.kind,
        body.config,
        secret=body.secret,
        min_level=body.min_level,
        notify_cleared=body.notify_cleared,
        quiet_hours=body.quiet_hours,
        enabled=body.enabled,
    )
    state.audit("channel.create", channel.name, kind=channel.kind)
    return _channel(channel), 201


@bp.route("/channels/<int:channel_id>", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=ChannelOut, **ERRORS), tags=["channels"])
def get_channel(channel_id: int) -> Any:
    """One channel (secret masked)."""
    return _channel(channels.get(state.store(), channel_id))


@bp.route("/channels/<int:channel_id>", methods=["PATCH"])
@requires("alerts.manage")
@spec.validate(json=ChannelUpdate, resp=Response(HTTP_200=ChannelOut, **ERRORS), tags=["channels"])
def update_channel(channel_id: int) -> Any:
    """Change a channel; a secret is replaced only when given, removed with ``clear_secret``."""
    body: ChannelUpdate = request.context.json  # type: ignore[attr-defined]
    changes: dict[str, Any] = {
        "config": body.config,
        "min_level": body.min_level,
        "notify_cleared": body.notify_cleared,
        "enabled": body.enabled,
    }
    if body.clear_secret:
        changes["secret"] = None
    elif body.secret is not None:
        changes["secret"] = body.secret
    if body.quiet_hours is not None:
        changes["quiet_hours"] = body.quiet_hours or None
    channel = channels.update(state.store(), channel_id, **changes)
    state.audit("channel.update", channel.name, fields=sorted(body.model_dump(exclude_none=True)))
    return _channel(channel)


@bp.route("/channels/<int:channel_id>", methods=["DELETE"])
@requires("alerts.manage")
@spec.validate(resp=Response(HTTP_200=Done, **ERRORS), tags=["channels"])
def delete_channel(channel_id: int) -> Any:
    """Remove a channel and its queued notifications."""
    channel = channels.delete(state.store(), channel_id)
    state.audit("channel.delete", channel.name)
    return Done()


@bp.route("/channels/<int:channel_id>/test", methods=["POST"])
@requires("alerts.manage")
@spec.validate(resp=Response(HTTP_202=TestQueued, **ERRORS), tags=["channels"])
def test_channel(channel_id: int) -> Any:
    """Queue a test message (bulwarkd sends it within a second); follow the notification for the result."""
    channel = channels.get(state.store(), channel_id)
    queued = outbox.enqueue_test(state.store(), channel, by=state.actor())
    state.audit("channel.test", channel.name, notification=queued)
    return TestQueued(notification=queued), 202


@bp.route("/notifications/<int:notification_id>", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=NotificationOut, **ERRORS), tags=["channels"])
def get_notification(notification_id: int) -> Any:
    """One notification: pending, sent, failed (with why) or dropped."""
    return NotificationOut.model_validate(outbox.get(state.store(), notification_id).to_dict())


# -- reports ---------------------------------------------------------------------------------------------------


@bp.route(f"/reports/clients/{CLIENT}", methods=["GET"])
@requires("view")
@spec.validate(query=ReportQuery, resp=Response(HTTP_200=ClientReportOut, **ERRORS), tags=["reports"])
def client_report(client: str) -> Any:
    """A client's SLA figures over the last ``days`` days."""
    q: ReportQuery = request.context.query  # type: ignore[attr-defined]
    return ClientReportOut.model_validate(sla.client_report(state.store(), client, days=q.days).to_dict())


@bp.route("/reports/summary", methods=["GET"])
@requires("view")
@spec.validate(query=ReportQuery, resp=Response(HTTP_200=SummaryOut, **ERRORS), tags=["reports"])
def report_summary() -> Any:
    """Every client's figures, the open alerts and the pool's capacity."""
    q: ReportQuery = request.context.query  # type: ignore[attr-defined]
    return SummaryOut.model_validate(sla.summary(state.store(), days=q.days).to_dict())


@bp.route("/report-schedules", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=ScheduleList, **ERRORS), tags=["reports"])
def list_report_schedules() -> Any:
    """Report mails and when each goes out next."""
    return ScheduleList(
        schedules=[ScheduleOut.model_validate(s.to_dict()) for s in schedule.list_schedules(state.store())]
    )


@bp.route("/report-schedules", methods=["POST"])
@requires("alerts.manage")
@spec.validate(json=ScheduleCreate, resp=Response(HTTP_201=ScheduleOut, **ERRORS), tags=["reports"])
def create_report_schedule() -> Any:
    """Mail a client's report (or the appliance summary) every day, week or month; the first goes out now."""
    body: ScheduleCreate = request.context.json  # type: ignore[attr-defined]
    made = schedule.add(state.store(), body.client, body.channel, body.every)
    state.audit("report.schedule", made.client or "summary", every=made.every, channel=made.channel_id)
    return ScheduleOut.model_validate(made.to_dict()), 201


@bp.route("/report-schedules/<int:schedule_id>", methods=["DELETE"])
@requires("alerts.manage")
@spec.validate(resp=Response(HTTP_200=Done, **ERRORS), tags=["reports"])
def delete_report_schedule(schedule_id: int) -> Any:
    """Stop a report mail."""
    schedule.delete(state.store(), schedule_id)
    state.audit("report.unschedule", str(schedule_id))
    return Done()


@bp.route("/metrics/token", methods=["POST"])
@requires("alerts.manage")
@spec.validate(resp=Response(HTTP_201=MetricsToken, **ERRORS), tags=["metrics"])
def create_metrics_token() -> Any:
    """Require a bearer token for /metrics (replacing any earlier one); the token is returned once."""
    token = metrics.new_token(state.store())
    state.audit("metrics.token_set")
    return MetricsToken(token=token), 201


@bp.route("/metrics/token", methods=["DELETE"])
@requires("alerts.manage")
@spec.validate(resp=Response(HTTP_200=Done, **ERRORS), tags=["metrics"])
def delete_metrics_token() -> Any:
    """Open /metrics again (no token)."""
    metrics.clear_token(state.store())
    state.audit("metrics.token_clear")
    return Done()
