"""Backup agents in the web UI: a client's Agents section (enrollment codes shown once with the command to run,
the credentials with their last contact, revocation with confirmation, the client's agent settings, its last
agent backups) and the agent backups of the jobs page (a bar with ETA while they run, the report once done)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, abort, flash, redirect, request, url_for

from appliance.clients import service
from appliance.ingest import agent_settings, credentials, progress
from appliance.ingest.credentials import EnrollCode
from appliance.system import tls
from appliance.system.errors import BulwarkError, InvalidInput
from webui import state
from webui.client_common import problem
from webui.identity import is_remote
from webui.permissions import requires
from webui.render import render

bp = Blueprint("agents", __name__)
NAME = "<string(maxlength=32):name>"
AGENT = "<string(maxlength=32):agent_id>"
RECENT_JOBS = 8


def server_url() -> str:
    """``https://HOST:PORT`` as an agent on the LAN reaches this appliance: the address the browser used, or,
    through the remote-access tunnel, the appliance's host name and web port."""
    if is_remote():
        config = state.appliance_settings()
        return f"https://{config.hostname}:{config.web_port}"
    return f"https://{request.host}"


def enroll_command(code: str) -> str:
    return f"bulwark-agent enroll --server {server_url()} --code {code}"


def new_code(name: str) -> EnrollCode:
    fingerprint = tls.fingerprint(state.paths().tls_cert.read_bytes())
    return credentials.create_code(state.store(), name, fingerprint, by=state.actor())


def settings_form(found: agent_settings.AgentSettings) -> dict[str, str]:
    return {
        "paths": "\n".join(found.paths),
        "bwlimit": str(found.bwlimit_kibps or ""),
        "window": found.window or "",
    }


def section(
    name: str,
    *,
    code: EnrollCode | None = None,
    error: BulwarkError | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    """The client's Agents section (a partial for htmx, else the page around it)."""
    store = state.store()
    client = service.get_client(store, name)
    found = agent_settings.get(store, name)
    context: dict[str, Any] = {
        "client": client,
        "agents": list(reversed(credentials.list_for(store, name))),
        "settings": found,
        "window": agent_settings.window_state(store, found),
        "form": form or settings_form(found),
        "jobs": progress.list_jobs(store, client=name, limit=RECENT_JOBS),
        "code": code,
        "command": enroll_command(code.code) if code else None,
        "problem": problem(error),
        "now": time.time(),
        "enabled": client.kind in ("agent", "both"),
    }
    return render("agents_client.html", "_agents_section.html", **context), status


@bp.route(f"/clients/{NAME}/agents")
@requires("view")
def client_agents(name: str) -> Any:
    return section(name)


@bp.route(f"/clients/{NAME}/agents/enroll-code", methods=["POST"])
@requires("agents.manage")
def create_code(name: str) -> Any:
    try:
        code = new_code(name)
    except BulwarkError as exc:
        return section(name, error=exc, status=exc.http_status)
    state.audit("agent.enroll_code.shown", f"client:{name}")
    return section(name, code=code)


@bp.route(f"/clients/{NAME}/agents/{AGENT}/revoke", methods=["POST"])
@requires("agents.manage")
def revoke(name: str, agent_id: str) -> Any:
    try:
        cred = credentials.get(state.store(), agent_id)
        if cred.client != name:
            raise InvalidInput(f"agent {agent_id} belongs to another client")
        if request.form.get("confirm") != agent_id:
            raise InvalidInput("confirm the revocation with the agent's id")
        credentials.revoke(state.store(), agent_id, by=state.actor())
    except BulwarkError as exc:
        return section(name, error=exc, status=exc.http_status)
    flash(f"Agent {agent_id} ({cred.hostname or 'no host name'}) is revoked: its next request is refused.")
    return redirect(url_for("clients.show", name=name) + "#agents")


@bp.route(f"/clients/{NAME}/agents/settings", methods=["POST"])
@requires("clients.manage")
def save_settings(name: str) -> Any:
    form = {key: request.form.get(key, "") for key in ("paths", "bwlimit", "window")}
    try:
        agent_settings.update(
            state.store(),
            name,
            by=state.actor(),
            paths=form["paths"],
            bwlimit_kibps=form["bwlimit"],
            window=form["window"].strip() or None,
        )
    except BulwarkError as exc:
        return section(name, error=exc, form=form, status=exc.http_status)
    flash("Agent settings saved; agents use them from their next backup.")
    return redirect(url_for("clients.show", name=name) + "#agents")


# -- the jobs page's agent backups -----------------------------------------------------------------------------


@bp.route("/jobs/agents")
@requires("view")
def jobs() -> Any:
    client = request.args.get("client", "").strip()[:32] or None
    found = progress.list_jobs(state.store(), client=client, limit=100)
    return render("agent_jobs.html", "_agent_jobs.html", jobs=found, now=time.time(), show_client=client is None)


@bp.route("/jobs/agents/<string(maxlength=64):agent_job>")
@requires("view")
def job(agent_job: str) -> Any:
    try:
        found = progress.get_job(state.store(), agent_job)
    except BulwarkError:
        abort(404, description=f"There is no agent job {agent_job}.")
    return render("agent_job.html", "_agent_job_report.html", job=found, now=time.time())
