"""Scheduled report mails: a client's SLA report, or the appliance summary, mailed daily, weekly or monthly
to an e-mail channel. ``bulwarkd`` queues the due ones in the outbox (:func:`send_due`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from appliance.alerts import channels, outbox
from appliance.clients import service
from appliance.reports import render, sla
from appliance.store import Store
from appliance.system.errors import AlreadyExists, InvalidInput, NotFound

PERIODS = {"daily": 1, "weekly": 7, "monthly": 30}  # also the days each report covers


@dataclass(frozen=True)
class ReportSchedule:
    id: int
    client: str | None  # None: the appliance summary
    channel_id: int
    every: str
    next_at: float
    last_sent_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client": self.client,
            "report": "client" if self.client else "summary",
            "channel_id": self.channel_id,
            "every": self.every,
            "next_at": self.next_at,
            "last_sent_at": self.last_sent_at,
        }


def _schedule(row: Any) -> ReportSchedule:
    return ReportSchedule(
        row["id"], row["client"], row["channel_id"], row["every"], row["next_at"], row["last_sent_at"]
    )


def list_schedules(store: Store) -> list[ReportSchedule]:
    return [_schedule(r) for r in store.query("SELECT * FROM report_schedules ORDER BY client IS NOT NULL, client, id")]


def add(
    store: Store, client: str | None, channel: str | int, every: str, *, first_at: float | None = None
) -> ReportSchedule:
    """Mail a report every day, week or month to an e-mail channel (the first one at ``first_at``, default now)."""
    if every not in PERIODS:
        raise InvalidInput(f"a report is sent {', '.join(PERIODS)}, not {every!r}")
    target = channels.get(store, channel)
    if target.kind != "email":
        raise InvalidInput(f"reports are mailed: channel {target.name} is a {target.kind} channel")
    if client:
        service.get_client(store, client)
    now = time.time()
    with store.write() as conn:
        if conn.execute(
            "SELECT 1 FROM report_schedules WHERE client IS ? AND channel_id = ?", (client or None, target.id)
        ).fetchone():
            raise AlreadyExists(f"a report of {client or 'the appliance'} to channel {target.name}")
        cur = conn.execute(
            "INSERT INTO report_schedules (client, channel_id, every, next_at, created_at) VALUES (?, ?, ?, ?, ?)",
            (client or None, target.id, every, now if first_at is None else first_at, now),
        )
        row = conn.execute("SELECT * FROM report_schedules WHERE id = ?", (cur.lastrowid,)).fetchone()
    return _schedule(row)


def delete(store: Store, schedule_id: int) -> None:
    with store.write() as conn:
        if conn.execute("DELETE FROM report_schedules WHERE id = ?", (schedule_id,)).rowcount == 0:
            raise NotFound(f"report schedule {schedule_id}")


def queue_report(store: Store, schedule: ReportSchedule, now: float) -> int:
    """Queue the schedule's report mail now; returns the outbox id."""
    days = PERIODS[schedule.every]
    if schedule.client:
        report = sla.client_report(store, schedule.client, days=days, now=now)
        subject = f"[Bulwark {report.hostname}] Backup report: {report.client}, last {days} day(s)"
        text, html, data = render.client_text(report), render.client_document(report), report.to_dict()
    else:
        summary = sla.summary(store, days=days, now=now)
        subject = f"[Bulwark {summary.hostname}] Appliance summary, last {days} day(s)"
        text, html, data = render.summary_text(summary), render.summary_document(summary), summary.to_dict()
    document = {"event": "report", "report": data}
    return outbox.enqueue_message(store, schedule.channel_id, "report", subject, text, html=html, document=document,
                                  now=now)  # fmt: skip


def send_due(store: Store, *, now: float | None = None) -> list[int]:
    """Queue every report whose time has come, and move its schedule on."""
    at = time.time() if now is None else now
    queued = []
    for schedule in list_schedules(store):
        if schedule.next_at > at:
            continue
        if schedule.client:
            try:
                service.get_client(store, schedule.client)
            except NotFound:
                continue  # the client was forgotten; the schedule stays for an admin to remove
        queued.append(queue_report(store, schedule, at))
        following = schedule.next_at
        while following <= at:
            following += PERIODS[schedule.every] * 86400
        with store.write() as conn:
            conn.execute(
                "UPDATE report_schedules SET last_sent_at = ?, next_at = ? WHERE id = ?", (at, following, schedule.id)
            )
    return queued
