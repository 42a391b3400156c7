"""Request and response models of the alerts, channels, reports and metrics-token API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from webui.api.schemas import Strict

Level = Literal["info", "warning", "critical"]
Status = Literal["active", "acknowledged", "snoozed", "cleared"]
Kind = Literal["email", "webhook", "syslog"]


class AlertFull(BaseModel):
    id: int
    key: str
    level: Level
    category: str
    subject: str | None
    message: str
    state: Literal["active", "cleared"] = Field(description="the condition: active while it lasts")
    status: Status = Field(description="what people did about it: active, acknowledged, snoozed, or cleared")
    alert_class: str | None = Field(description="the declared alert class, e.g. rpo.stale")
    raised_at: float
    last_seen_at: float
    cleared_at: float | None
    count: int
    acknowledged_at: float | None
    acknowledged_by: str | None
    snoozed_until: float | None
    snoozed_by: str | None


class AlertFullList(BaseModel):
    alerts: list[AlertFull]


class AlertStatusQuery(Strict):
    category: str | None = Field(None, pattern=r"^[a-z][a-z0-9_.-]{0,31}$")
    limit: int = Field(100, ge=1, le=500)


class AlertEvent(BaseModel):
    at: float
    event: str
    actor: str | None
    level: Level
    message: str


class NotificationOut(BaseModel):
    id: int
    channel_id: int
    alert_id: int | None
    event: str
    subject: str
    state: Literal["pending", "sending", "sent", "failed", "dropped"]
    attempts: int
    max_attempts: int
    created_at: float
    not_before: float
    sent_at: float | None
    last_error: str | None
    note: str | None


class AlertDetail(AlertFull):
    events: list[AlertEvent]
    notifications: list[NotificationOut]


class SnoozeRequest(Strict):
    duration: str | None = Field(None, max_length=16, description="e.g. 4h, 2d")
    until: str | None = Field(None, max_length=40, description="'2026-11-27 08:00' (appliance time) or ISO 8601")


class AlertCounts(BaseModel):
    active: int
    acknowledged: int
    snoozed: int
    open: int
    by_level: dict[str, int]


class AlertClassOut(BaseModel):
    name: str
    level: Level
    category: str
    title: str
    template: str


class AlertClassList(BaseModel):
    classes: list[AlertClassOut]


class ChannelOut(BaseModel):
    id: int
    name: str
    kind: Kind
    enabled: bool
    min_level: Level
    notify_cleared: bool
    quiet_hours: str | None
    config: dict[str, Any]
    secret: str | None = Field(description="never the secret itself: '********' when one is set")
    secret_set: bool
    target: str
    created_at: float
    updated_at: float
    last_success_at: float | None
    last_failure_at: float | None
    last_error: str | None


class ChannelList(BaseModel):
    channels: list[ChannelOut]


class ChannelCreate(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")
    kind: Kind
    config: dict[str, Any] = Field(
        description="email: host, port, security (starttls|tls|none), username, from, to, verify_tls, ca_pem; "
        "webhook: url, verify_tls, ca_pem; syslog: host, port, transport (udp|tcp), facility"
    )
    secret: str | None = Field(None, min_length=1, max_length=512, description="SMTP password or webhook HMAC key")
    min_level: Level = "warning"
    notify_cleared: bool = True
    quiet_hours: str | None = Field(None, max_length=64, description="e.g. '22:00-07:00' or 'mon-fri 19:00-08:00'")
    enabled: bool = True


class ChannelUpdate(Strict):
    config: dict[str, Any] | None = Field(None, description="settings to change (merged into the current ones)")
    secret: str | None = Field(None, min_length=1, max_length=512, description="a new secret")
    clear_secret: bool = False
    min_level: Level | None = None
    notify_cleared: bool | None = None
    quiet_hours: str | None = Field(None, max_length=64, description="'' to remove them")
    enabled: bool | None = None


class TestQueued(BaseModel):
    notification: int = Field(description="follow it at /api/v1/notifications/{id}")


class ReportQuery(Strict):
    days: int = Field(30, ge=1, le=400)


class ClientReportOut(BaseModel):
    client: str
    kind: str
    appliance: str
    period: dict[str, float]
    generated_at: float
    rpo_target_seconds: int
    rpo_target: str
    points_made: int
    points_by_source: dict[str, int]
    verification: dict[str, int]
    rpo_met_percent: float | None
    longest_gap_seconds: float
    last_good_at: float | None
    rpo_state: Literal["ok", "stale", "no_point"]
    used_bytes: int | None
    used_change_bytes: int | None
    usage: list[dict[str, float]]
    open_alerts: list[dict[str, Any]]
    alerts_in_period: int
    history_since: float | None


class SummaryOut(BaseModel):
    appliance: str
    generated_at: float
    days: int
    rpo_met_percent: float | None
    clients: list[dict[str, Any]]
    alerts: dict[str, Any]
    pool: dict[str, Any] | None


class ScheduleOut(BaseModel):
    id: int
    client: str | None
    report: Literal["client", "summary"]
    channel_id: int
    every: Literal["daily", "weekly", "monthly"]
    next_at: float
    last_sent_at: float | None


class ScheduleList(BaseModel):
    schedules: list[ScheduleOut]


class ScheduleCreate(Strict):
    client: str | None = Field(None, pattern=r"^[a-z][a-z0-9-]{0,31}$", description="omit for the appliance summary")
    channel: str = Field(min_length=1, max_length=32, description="an e-mail channel's name")
    every: Literal["daily", "weekly", "monthly"] = "weekly"


class MetricsToken(BaseModel):
    token: str = Field(description="shown once; Prometheus sends it as 'Authorization: Bearer <token>'")
