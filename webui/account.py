"""One's own account: password and the TOTP second factor."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, redirect, request, session, url_for
from werkzeug.wrappers import Response

from appliance import users
from appliance.auth import sessions, throttle, totp
from webui import state
from webui.permissions import requires
from webui.render import render

bp = Blueprint("account", __name__, url_prefix="/account")
PENDING_SECRET = "totp_pending_secret"  # noqa: S105 - a session key name, not a secret


@bp.route("/")
@requires("self")
def index() -> Any:
    if g.user is None:
        return redirect(url_for("dashboard.index"))
    return render("account.html", user=users.get_user(state.store(), g.user.username))


@bp.route("/totp", methods=["GET"])
@requires("self")
def totp_setup() -> Any:
    """Show a new secret (and QR code) to add to an authenticator app."""
    user = g.user
    if user is None:
        return redirect(url_for("dashboard.index"))
    if user.totp_enabled:
        return redirect(url_for("account.index"))
    secret = session.get(PENDING_SECRET) or totp.new_secret()
    session[PENDING_SECRET] = secret
    uri = totp.provisioning_uri(secret, user.username, state.appliance_settings().hostname)
    forced = g.identity.session is not None and not g.identity.session.mfa_done
    return render("totp_setup.html", secret=secret, uri=uri, qr=totp.qr_svg(uri), error=None, forced=forced)


@bp.route("/totp", methods=["POST"])
@requires("self")
def totp_enable() -> Any:
    user = g.user
    secret = session.get(PENDING_SECRET)
    if user is None or not secret:
        return redirect(url_for("account.totp_setup"))
    forced = g.identity.session is not None and not g.identity.session.mfa_done
    step = totp.check_code(secret, request.form.get("code", ""))
    if step is None:
        uri = totp.provisioning_uri(secret, user.username, state.appliance_settings().hostname)
        error = "That code does not match. Check the phone's clock, then enter the code shown now."
        return render("totp_setup.html", secret=secret, uri=uri, qr=totp.qr_svg(uri), error=error, forced=forced), 400
    totp.enable(state.store(), user.id, secret, request.form.get("code", ""))
    session.pop(PENDING_SECRET, None)
    if g.identity.session is not None and not g.identity.session.mfa_done:
        throttle.clear(state.store(), user.username)  # the sign-in this enrolment completes succeeded
        sessions.mark_mfa_done(state.store(), g.identity.session.id)
    state.audit("user.totp_enabled", user.username)
    return redirect(url_for("auth.password") if user.must_change_password else url_for("account.index"))


@bp.route("/totp/disable", methods=["POST"])
@requires("self")
def totp_disable() -> Response:
    user = g.user
    if user is None:
        return redirect(url_for("dashboard.index"))
    if g.identity.remote:
        return redirect(url_for("account.index"))  # a remote session cannot drop its own second factor
    if users.verify_password(state.store(), user.username, request.form.get("password", "")) is None:
        return redirect(url_for("account.index", error="password"))
    totp.disable(state.store(), user.id)
    state.audit("user.totp_disabled", user.username)
    return redirect(url_for("account.index"))
