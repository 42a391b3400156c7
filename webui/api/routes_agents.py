"""API: backup agents — enrollment codes, credentials and revocation, per-client agent settings, agent jobs."""

from __future__ import annotations

import time
from typing import Any

from flask import request
from spectree import Response

from appliance.clients import service
from appliance.ingest import agent_settings, credentials, progress
from appliance.system.errors import InvalidInput
from webui import agents, state
from webui.api import bp, spec
from webui.api.schemas import ErrorBody
from webui.api.schemas_agents import (
    AgentJobList,
    AgentJobOut,
    AgentJobQuery,
    AgentList,
    AgentOut,
    AgentSettingsOut,
    AgentSettingsUpdate,
    EnrollCodeOut,
)
from webui.permissions import requires

ERRORS = {"HTTP_400": ErrorBody, "HTTP_401": ErrorBody, "HTTP_403": ErrorBody, "HTTP_404": ErrorBody}
NAME = "<string(maxlength=32):name>"
AGENT = "<string(maxlength=32):agent_id>"


def _settings_out(name: str) -> AgentSettingsOut:
    store = state.store()
    found = agent_settings.get(store, name)
    window = agent_settings.window_state(store, found)
    return AgentSettingsOut(
        **found.to_dict(), window_open=window["open"], window_opens_at=window["opens_at"], timezone=window["timezone"]
    )


def _job_out(job: progress.AgentJob) -> AgentJobOut:
    return AgentJobOut(**job.to_dict(), stalled=job.stalled(time.time()))


@bp.route(f"/clients/{NAME}/agents", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=AgentList, **ERRORS), tags=["agents"])
def list_agents(name: str) -> Any:
    """The client's agent credentials (active and revoked), newest first, with when each was last seen."""
    client = service.get_client(state.store(), name)
    found = reversed(credentials.list_for(state.store(), client.name))
    return AgentList(client=client.name, agents=[AgentOut.model_validate(c.to_dict()) for c in found])


@bp.route(f"/clients/{NAME}/agents/enroll-codes", methods=["POST"])
@requires("agents.manage")
@spec.validate(resp=Response(HTTP_201=EnrollCodeOut, **ERRORS), tags=["agents"])
def create_enroll_code(name: str) -> Any:
    """A one-time enrollment code (24 hours) for an agent of the client, and the command to run on the client."""
    code = agents.new_code(name)
    return EnrollCodeOut(
        code=code.code,
        client=code.client,
        expires_at=code.expires_at,
        server=agents.server_url(),
        command=agents.enroll_command(code.code),
    ), 201


@bp.route(f"/clients/{NAME}/agents/{AGENT}/revoke", methods=["POST"])
@requires("agents.manage")
@spec.validate(resp=Response(HTTP_200=AgentOut, **ERRORS), tags=["agents"])
def revoke_agent(name: str, agent_id: str) -> Any:
    """Revoke an agent's credential: its next request is refused, even on an open connection."""
    cred = credentials.get(state.store(), agent_id)
    if cred.client != name:
        raise InvalidInput(f"agent {agent_id} belongs to another client")
    return AgentOut.model_validate(credentials.revoke(state.store(), agent_id, by=state.actor()).to_dict())


@bp.route(f"/clients/{NAME}/agent-settings", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=AgentSettingsOut, **ERRORS), tags=["agents"])
def get_agent_settings(name: str) -> Any:
    """The client's agent settings: default paths, bandwidth limit, backup window (and whether it is open)."""
    return _settings_out(name)


@bp.route(f"/clients/{NAME}/agent-settings", methods=["PATCH"])
@requires("clients.manage")
@spec.validate(json=AgentSettingsUpdate, resp=Response(HTTP_200=AgentSettingsOut, **ERRORS), tags=["agents"])
def update_agent_settings(name: str) -> Any:
    """Change the client's agent settings; only the fields given change, nothing changes if one is invalid."""
    body: AgentSettingsUpdate = request.context.json  # type: ignore[attr-defined]
    agent_settings.update(state.store(), name, by=state.actor(), **body.model_dump(exclude_unset=True))
    return _settings_out(name)


@bp.route("/agent-jobs", methods=["GET"])
@requires("view")
@spec.validate(query=AgentJobQuery, resp=Response(HTTP_200=AgentJobList, **ERRORS), tags=["agents"])
def list_agent_jobs() -> Any:
    """Agent backup jobs, open ones first, then newest first: progress while open, the report once finished."""
    q: AgentJobQuery = request.context.query  # type: ignore[attr-defined]
    found = progress.list_jobs(state.store(), client=q.client, open_only=q.open, limit=q.limit)
    return AgentJobList(jobs=[_job_out(j) for j in found])


@bp.route("/agent-jobs/<string(maxlength=64):agent_job>", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=AgentJobOut, **ERRORS), tags=["agents"])
def get_agent_job(agent_job: str) -> Any:
    """One agent job: its progress while open, its report (files, bytes, duration, point or error) once done."""
    return _job_out(progress.get_job(state.store(), agent_job))
