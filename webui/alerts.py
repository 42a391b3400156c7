"""Alerts: the list (active, acknowledged, snoozed, history) with acknowledge and snooze; one alert's history;
notification channels (add, edit, test, delete) and the /metrics token."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, request, url_for
from werkzeug.wrappers import Response

from appliance import alerts, metrics
from appliance.alerts import channels, outbox
from appliance.system.errors import BulwarkError, InvalidInput
from webui import state
from webui.permissions import requires
from webui.render import render

bp = Blueprint("alerts", __name__, url_prefix="/alerts")
TABS = {"active": "Active", "acknowledged": "Acknowledged", "snoozed": "Snoozed", "cleared": "History"}
SNOOZE_CHOICES = (("1h", "1 hour"), ("4h", "4 hours"), ("1d", "1 day"), ("3d", "3 days"), ("1w", "1 week"))
LEVEL_BADGE = {"critical": "bad", "warning": "warn", "info": "info"}
FIELDS = ("host", "port", "security", "username", "from", "to", "url", "transport", "facility", "ca_pem")


@bp.app_template_filter("level_badge")
def level_badge(level: str) -> str:
    return LEVEL_BADGE.get(level, "")


@bp.app_context_processor
def alert_counts() -> dict[str, Any]:
    """The nav's and the pages' alert counts (one cheap query per page)."""

    def counts() -> dict[str, Any]:
        return alerts.counts(state.store())

    return {"alert_counts": counts}


def _back(default: str) -> Response:
    target = request.form.get("next") or default
    if not target.startswith("/") or target.startswith("//"):
        target = default
    return redirect(target)


# -- the alert list --------------------------------------------------------------------------------------------


@bp.route("/")
@requires("view")
def index() -> Any:
    tab = request.args.get("tab", "active")
    if tab not in TABS:
        tab = "active"
    found = alerts.list_alerts(state.store(), status=tab, limit=200)
    return render(
        "alerts.html",
        tab=tab,
        tabs=TABS,
        found=found,
        counts=alerts.counts(state.store()),
        snooze_choices=SNOOZE_CHOICES,
        error=request.args.get("error"),
    )


@bp.route("/<int:alert_id>")
@requires("view")
def show(alert_id: int) -> Any:
    try:
        alert = alerts.get(state.store(), alert_id)
    except BulwarkError:
        abort(404, description=f"There is no alert {alert_id}.")
    known = {c.id: c.name for c in channels.list_channels(state.store())}
    sent = outbox.list_notifications(state.store(), alert_id=alert_id)
    return render(
        "alert.html",
        alert=alert,
        events=alerts.events(state.store(), alert_id),
        sent=sent,
        channel_names=known,
        snooze_choices=SNOOZE_CHOICES,
    )


def _act(alert_id: int, action: str) -> Response:
    try:
        if action == "acknowledge":
            alerts.acknowledge(state.store(), alert_id, by=state.actor())
            state.audit("alert.acknowledge", str(alert_id))
        elif action == "unsnooze":
            alerts.unsnooze(state.store(), alert_id, by=state.actor())
            state.audit("alert.unsnooze", str(alert_id))
        else:
            until = alerts.snooze_end(
                until=request.form.get("until") or None,
                duration=None if request.form.get("until") else request.form.get("duration") or "",
                tz=state.appliance_settings().timezone,
            )
            alerts.snooze(state.store(), alert_id, until=until, by=state.actor())
            state.audit("alert.snooze", str(alert_id), until=until)
    except BulwarkError as exc:
        return redirect(url_for("alerts.index", error=f"{exc.message} {exc.hint}"))
    return _back(url_for("alerts.index"))


@bp.route("/<int:alert_id>/acknowledge", methods=["POST"])
@requires("alerts.ack")
def acknowledge(alert_id: int) -> Response:
    return _act(alert_id, "acknowledge")


@bp.route("/<int:alert_id>/snooze", methods=["POST"])
@requires("alerts.ack")
def snooze(alert_id: int) -> Response:
    return _act(alert_id, "snooze")


@bp.route("/<int:alert_id>/unsnooze", methods=["POST"])
@requires("alerts.ack")
def unsnooze(alert_id: int) -> Response:
    return _act(alert_id, "unsnooze")


# -- channels --------------------------------------------------------------------------------------------------


def _form_config(kind: str | None = None) -> dict[str, Any]:
    """The channel settings of the form (on the add form, syslog has its own host and port fields)."""
    form = request.form
    config: dict[str, Any] = {k: form.get(k, "").strip() for k in FIELDS if form.get(k, "").strip()}
    if kind == "syslog":
        config["host"] = form.get("syslog_host", "").strip()
        config["port"] = form.get("syslog_port", "").strip()
    config["verify_tls"] = form.get("verify_tls") == "on"  # (an unticked checkbox is not sent)
    return config


def _channels_page(error: str | None = None, status: int = 200, **extra: Any) -> Any:
    extra.setdefault("message", None)
    extra.setdefault("shown_once", None)
    page = render(
        "alert_channels.html",
        found=channels.list_channels(state.store()),
        kinds=channels.KINDS,
        levels=alerts.LEVELS,
        facilities=sorted(channels.FACILITIES),
        security=channels.SECURITY,
        recent=outbox.list_notifications(state.store(), limit=15),
        token_required=metrics.token_required(state.store()),
        classes=alerts.all_classes(),
        error=error,
        editing=extra.pop("editing", None),
        form=extra.pop("form", {}),
        **extra,
    )
    return (page, status) if status != 200 else page


@bp.route("/channels")
@requires("view")
def channel_list() -> Any:
    return _channels_page(message=request.args.get("message"))


@bp.route("/channels", methods=["POST"])
@requires("alerts.manage")
def channel_add() -> Any:
    try:
        channel = channels.create(
            state.store(),
            request.form.get("name", "").strip(),
            request.form.get("kind", ""),
            _form_config(request.form.get("kind")),
            secret=request.form.get("secret") or None,
            min_level=request.form.get("min_level", "warning"),
            notify_cleared=request.form.get("notify_cleared") == "on",
            quiet_hours=request.form.get("quiet_hours") or None,
        )
    except BulwarkError as exc:
        return _channels_page(f"{exc.message} {exc.hint}", exc.http_status, form=request.form)
    state.audit("channel.create", channel.name, kind=channel.kind)
    return redirect(url_for("alerts.channel_list", message=f"Channel {channel.name} added."))


@bp.route("/channels/<int:channel_id>")
@requires("view")
def channel_edit(channel_id: int) -> Any:
    try:
        channel = channels.get(state.store(), channel_id)
    except BulwarkError:
        abort(404, description=f"There is no alert channel {channel_id}.")
    return render(
        "alert_channel.html",
        channel=channel,
        levels=alerts.LEVELS,
        facilities=sorted(channels.FACILITIES),
        security=channels.SECURITY,
        recent=outbox.list_notifications(state.store(), channel_id=channel_id, limit=20),
        error=None,
    )


@bp.route("/channels/<int:channel_id>", methods=["POST"])
@requires("alerts.manage")
def channel_save(channel_id: int) -> Any:
    try:
        channel = channels.get(state.store(), channel_id)
        secret: Any = channels.UNCHANGED
        if request.form.get("clear_secret") == "on":
            secret = None
        elif request.form.get("secret"):
            secret = request.form["secret"]
        config = _form_config()
        if channel.kind != "email":
            config.pop("security", None)
        if "ca_pem" not in config:
            config["ca_pem"] = ""
        channels.update(
            state.store(),
            channel_id,
            config=config,
            secret=secret,
            min_level=request.form.get("min_level", channel.min_level),
            notify_cleared=request.form.get("notify_cleared") == "on",
            quiet_hours=request.form.get("quiet_hours") or None,
            enabled=request.form.get("enabled") == "on",
        )
    except BulwarkError as exc:
        if isinstance(exc, channels.ChannelNotFound):
            abort(404, description=exc.message)
        page = render(
            "alert_channel.html",
            channel=channels.get(state.store(), channel_id),
            levels=alerts.LEVELS,
            facilities=sorted(channels.FACILITIES),
            security=channels.SECURITY,
            recent=[],
            error=f"{exc.message} {exc.hint}",
        )
        return page, exc.http_status
    state.audit("channel.update", channel.name)
    return redirect(url_for("alerts.channel_list", message=f"Channel {channel.name} saved."))


@bp.route("/channels/<int:channel_id>/delete", methods=["POST"])
@requires("alerts.manage")
def channel_delete(channel_id: int) -> Any:
    try:
        channel = channels.delete(state.store(), channel_id)
    except BulwarkError as exc:
        abort(404, description=exc.message)
    state.audit("channel.delete", channel.name)
    return redirect(url_for("alerts.channel_list", message=f"Channel {channel.name} removed."))


@bp.route("/channels/<int:channel_id>/test", methods=["POST"])
@requires("alerts.manage")
def channel_test(channel_id: int) -> Any:
    """Queue a test message (bulwarkd sends it) and show its result as it comes."""
    try:
        channel = channels.get(state.store(), channel_id)
    except BulwarkError as exc:
        abort(404, description=exc.message)
    queued = outbox.enqueue_test(state.store(), channel, by=state.actor())
    state.audit("channel.test", channel.name, notification=queued)
    return redirect(url_for("alerts.notification", notification_id=queued))


@bp.route("/notifications/<int:notification_id>")
@requires("view")
def notification(notification_id: int) -> Any:
    try:
        sent = outbox.get(state.store(), notification_id)
        channel = channels.get(state.store(), sent.channel_id)
    except BulwarkError:
        abort(404, description=f"There is no notification {notification_id}.")
    return render("alert_notification.html", "_notification_state.html", n=sent, channel=channel)


@bp.route("/metrics-token", methods=["POST"])
@requires("alerts.manage")
def metrics_token() -> Any:
    if request.form.get("action") == "clear":
        metrics.clear_token(state.store())
        state.audit("metrics.token_clear")
        return redirect(url_for("alerts.channel_list", message="/metrics needs no token now."))
    if request.form.get("action") != "new":
        raise InvalidInput("action must be 'new' or 'clear'")
    token = metrics.new_token(state.store())
    state.audit("metrics.token_set")
    return _channels_page(shown_once=("Token for /metrics", token), message=None)
