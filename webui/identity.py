"""Who is asking: a signed-in user (server-side session) or an API token, and whether the request came
through the remote-access tunnel. One ``before_request`` hook resolves the identity, checks CSRF, the
second factor, a pending password change, the first-run wizard, and the permission the view declared."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, g, jsonify, redirect, request, url_for
from werkzeug.wrappers import Response

from appliance import users
from appliance.auth import sessions, tokens, totp
from appliance.auth.sessions import Session
from appliance.system.errors import BulwarkError
from appliance.tunnel import config as tunnel_config
from appliance.users import User
from webui import csrf, state
from webui.permissions import PENDING, PUBLIC, allowed, permission_of

COOKIE = "bulwark_sid"
SETUP_DONE_KEY = "setup.completed"


@dataclass(frozen=True)
class Identity:
    kind: str  # "user" or "token"
    name: str
    role: str
    user: User | None = None
    token_id: int | None = None
    session: Session | None = None
    remote: bool = False

    @property
    def actor(self) -> str:
        return f"user:{self.name}" if self.kind == "user" else f"token:{self.token_id}:{self.name}"


def is_remote() -> bool:
    """True when the request arrived on the listener reserved for the remote-access tunnel: the configured one,
    or the one this web server was started with (the same, except while the port is being changed)."""
    port = state.appliance_settings().tunnel_listen_port
    listeners = {str(port) if port is not None else None, os.environ.get(tunnel_config.LISTENER_ENV)} - {None}
    return request.environ.get("SERVER_PORT") in listeners


def is_api() -> bool:
    return request.path.startswith("/api/")


def api_error(status: int, code: str, message: str, hint: str) -> Response:
    resp = jsonify({"error": {"code": code, "message": message, "hint": hint, "retryable": False}})
    resp.status_code = status
    return resp


def _from_token(header: str) -> Identity | None:
    token = tokens.authenticate(state.store(), header.removeprefix("Bearer ").strip())
    if token is None:
        return None
    return Identity("token", token.name, token.role, token_id=token.id, remote=is_remote())


def _from_session() -> Identity | None:
    session = sessions.lookup(state.store(), request.cookies.get(COOKIE))
    if session is None:
        return None
    try:
        user = users.get_user_by_id(state.store(), session.user_id)
    except BulwarkError:
        return None
    if user.disabled or session.remote != is_remote():
        return None
    return Identity("user", user.username, user.role, user=user, session=session, remote=session.remote)


def _deny_unauthenticated() -> Response:
    if is_api():
        resp = api_error(
            401,
            "unauthenticated",
            "Sign in or send an API token.",
            "Send 'Authorization: Bearer <token>' (create one with 'bulwark token create').",
        )
        resp.headers["WWW-Authenticate"] = 'Bearer realm="bulwark"'
        return resp
    target = url_for("auth.login", next=request.full_path.rstrip("?") if request.method == "GET" else None)
    if request.headers.get("HX-Request") == "true":
        resp = Response(status=204)
        resp.headers["HX-Redirect"] = target
        return resp
    return redirect(target)


def _redirect(endpoint: str) -> Response:
    target = url_for(endpoint)
    if request.headers.get("HX-Request") == "true":
        resp = Response(status=204)
        resp.headers["HX-Redirect"] = target
        return resp
    return redirect(target)


def _remote_blocked() -> Response:
    message = "Remote sessions are switched off at the site."
    hint = "Ask the on-site administrator to allow remote sessions on the Remote access page."
    if is_api():
        return api_error(403, "remote_sessions_blocked", message, hint)
    return Response(
        f"<!doctype html><title>Remote access blocked</title><h1>Remote access blocked</h1><p>{message}</p>"
        f"<p>{hint}</p>",
        status=403,
        mimetype="text/html",
    )


def gate() -> Response | None:
    """The request hook. Returns a response to stop the request, or None to let it through."""
    if is_remote() and not tunnel_config.remote_sessions_allowed(state.store()):
        return _remote_blocked()  # the on-site switch: nothing at all through the tunnel
    if request.path.startswith("/agent/"):
        return None  # backup agents: no browser session or CSRF; webui/agent_ingest.py checks their credential
    endpoint = request.endpoint
    view = current_app.view_functions.get(endpoint) if endpoint else None
    permission = permission_of(view)
    g.identity = None
    g.user = None

    auth_header = request.headers.get("Authorization", "")
    if is_api() and auth_header.startswith("Bearer "):
        identity = _from_token(auth_header)
        if identity is None:
            return api_error(
                401,
                "invalid_token",
                "The API token is wrong, revoked or expired.",
                "Create a new token with 'bulwark token create' or on the Users page.",
            )
    else:
        identity = _from_session()
        if identity is not None or not is_api():
            # Browsers (cookies) must prove the request came from our own page. An API call with neither a
            # session nor a token carries no credentials to abuse: it gets the 401 below, not a CSRF error.
            csrf.protect()
    g.identity = identity
    g.user = identity.user if identity else None

    if view is None:  # Flask answers 404/405 itself, but only to someone signed in
        return _deny_unauthenticated() if identity is None else None
    if permission == PUBLIC:
        return None
    if identity is None:
        return _deny_unauthenticated()
    if permission is None:
        current_app.logger.error("view %s declares no permission; refused", endpoint)
        return _forbidden("This page is not available.")

    if identity.session is not None and not identity.session.mfa_done:
        open_now = {"auth.totp", "auth.logout"}
        assert identity.user is not None
        if not identity.remote and not totp.is_enabled(state.store(), identity.user.id):
            open_now |= {"account.totp_setup", "account.totp_enable"}  # mandatory enrolment
        if endpoint not in open_now:
            if is_api():
                return api_error(
                    401,
                    "second_factor_required",
                    "A second factor is required.",
                    "Finish signing in with your authenticator code in the web UI.",
                )
            return _redirect("auth.totp")
        return None
    if permission == PENDING:
        return None

    if identity.user is not None and identity.user.must_change_password:
        if endpoint not in ("auth.password", "auth.logout", "api.change_own_password"):
            if is_api():
                return api_error(
                    403,
                    "password_change_required",
                    "The one-time password must be changed first.",
                    "Change it in the web UI or with POST /api/v1/me/password.",
                )
            return _redirect("auth.password")
        return None

    if (
        not is_api()
        and identity.role == "admin"
        and identity.kind == "user"
        and not state.store().get_setting(SETUP_DONE_KEY, False)
        and endpoint not in ("setup.index", "auth.logout", "auth.password")
    ):
        return _redirect("setup.index")

    if not allowed(identity.role, permission):
        return _forbidden(f"Your role ({identity.role}) does not allow this.")
    return None


def _forbidden(message: str) -> Response:
    if is_api():
        return api_error(403, "permission_denied", message, "Ask an administrator for a role that allows it.")
    from flask import render_template

    resp = current_app.make_response(
        (
            render_template(
                "error.html",
                title="Not allowed",
                message=message,
                hint="Ask an administrator for a role that allows it.",
            ),
            403,
        )
    )
    return resp


def init_app(app: Flask) -> None:
    app.before_request(gate)

    @app.context_processor
    def inject() -> dict[str, Any]:
        identity = g.get("identity")
        return {
            "csrf_token": csrf.token,
            "current_user": g.get("user"),
            "identity": identity,
            "can": lambda permission: identity is not None and allowed(identity.role, permission),
        }
