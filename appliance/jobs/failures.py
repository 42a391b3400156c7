"""The ``job.failed`` alert: a job that ended in failure raises it; the next success of the same kind of job on
the same resource clears it (a failed nightly snapshot of a client stays one alert until a snapshot of that
client works again)."""

from __future__ import annotations

from typing import Any

from appliance import alerts
from appliance.jobs.queue import JobRecord
from appliance.store import Store

JOB_FAILED = alerts.declare(
    "job.failed",
    level="warning",
    category="jobs",
    title="Job failed",
    template="{title} failed ({what}): {error}",
)


def alert_key(job: JobRecord) -> str:
    return f"job:{job.kind}:{job.resource or '-'}"


def _title(kind: str) -> str:
    from appliance.jobs import base

    known = base.REGISTRY.get(kind)
    return known.title if known is not None else kind


def job_failed(store: Store, job: JobRecord, error: dict[str, Any] | None) -> None:
    message = str((error or {}).get("message") or "no reason recorded")
    alerts.fire(
        store,
        JOB_FAILED,
        alert_key(job),
        subject=f"job:{job.id}",
        title=_title(job.kind),
        what=job.resource or f"job {job.id}",
        error=message,
    )


def job_succeeded(store: Store, job: JobRecord) -> None:
    alerts.clear(store, alert_key(job))
