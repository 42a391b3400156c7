"""API: status, pool, capacity history, scrub, settings, audit."""

from __future__ import annotations

import time
from typing import Any

from flask import request
from spectree import Response

from appliance import audit as audit_log
from appliance import status as status_report
from appliance.disks import pool as pool_service
from appliance.jobs import base as jobs_base
from appliance.system import settings
from appliance.system.runner import local_runner
from webui import state
from webui.api import bp, spec
from webui.api.schemas import (
    AuditList,
    AuditOut,
    AuditQuery,
    CapacityOut,
    CapacityQuery,
    CapacitySample,
    ErrorBody,
    JobCreated,
    PoolOut,
    SettingsOut,
    SettingsUpdate,
    StatusOut,
)
from webui.permissions import requires

ERRORS = {"HTTP_400": ErrorBody, "HTTP_401": ErrorBody, "HTTP_403": ErrorBody}


@bp.route("/status", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=StatusOut, **ERRORS), tags=["system"])
def get_status() -> Any:
    """The appliance's state: version, ZFS, pool, daemon, jobs."""
    report = status_report.report(state.paths(), state.store(), local_runner(), zfs=state.zfs())
    return StatusOut.model_validate(report)


@bp.route("/pool", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=PoolOut, **ERRORS), tags=["storage"])
def get_pool() -> Any:
    """The pool with its vdev tree, error counters and scrub state."""
    summary = pool_service.summary(state.zfs(), state.appliance_settings().pool.name)
    return PoolOut.model_validate(summary.to_dict())


@bp.route("/pool/capacity", methods=["GET"])
@requires("view")
@spec.validate(query=CapacityQuery, resp=Response(HTTP_200=CapacityOut, **ERRORS), tags=["storage"])
def get_capacity() -> Any:
    """Capacity samples (every 5 minutes) over the last ``days`` days."""
    days = request.context.query.days  # type: ignore[attr-defined]
    name = state.appliance_settings().pool.name
    samples = pool_service.samples(state.store(), name, time.time() - days * 86400)
    return CapacityOut(pool=name, samples=[CapacitySample.model_validate(s) for s in samples])


@bp.route("/pool/scrub", methods=["POST"])
@requires("jobs.run")
@spec.validate(resp=Response(HTTP_202=JobCreated, **ERRORS), tags=["storage"])
def start_scrub() -> Any:
    """Start a scrub of the pool (a job); follow it at /api/v1/jobs/{id}."""
    pool = state.appliance_settings().pool.name
    job_id = jobs_base.submit(state.store(), "pool.scrub", {"pool": pool}, created_by=state.actor())
    state.audit("pool.scrub", pool, job=job_id)
    return JobCreated(job=job_id), 202


def _settings_out() -> SettingsOut:
    config = state.appliance_settings()
    return SettingsOut(
        hostname=config.hostname,
        timezone=config.timezone,
        require_totp=config.require_totp,
        web_port=config.web_port,
        tunnel_listen_port=config.tunnel_listen_port,
        pool_name=config.pool.name,
        pool_layout=config.pool.layout,
    )


@bp.route("/settings", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=SettingsOut, **ERRORS), tags=["system"])
def get_settings() -> Any:
    """Appliance settings."""
    return _settings_out()


@bp.route("/settings", methods=["PATCH"])
@requires("settings.manage")
@spec.validate(json=SettingsUpdate, resp=Response(HTTP_200=SettingsOut, **ERRORS), tags=["system"])
def patch_settings() -> Any:
    """Change the host name, time zone or whether every sign-in needs a second factor."""
    body: SettingsUpdate = request.context.json  # type: ignore[attr-defined]
    changes = body.model_dump(exclude_none=True)
    if changes:
        settings.update(state.store(), **changes)
        state.audit("settings.update", None, **changes)
    return _settings_out()


@bp.route("/audit", methods=["GET"])
@requires("audit.view")
@spec.validate(query=AuditQuery, resp=Response(HTTP_200=AuditList, **ERRORS), tags=["system"])
def get_audit() -> Any:
    """The audit trail, newest first; page with ``before`` (an entry id)."""
    q: AuditQuery = request.context.query  # type: ignore[attr-defined]
    found = audit_log.entries(state.store(), limit=q.limit, before_id=q.before, actor=q.actor, action_prefix=q.action)
    return AuditList(entries=[AuditOut.model_validate(e.to_dict()) for e in found])
