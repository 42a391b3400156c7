"""Signing in (password, then the second factor where needed), signing out, and the forced change of a
one-time password."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, redirect, request, session, url_for
from werkzeug.wrappers import Response

from appliance import users
from appliance.auth import sessions, throttle
from appliance.auth import totp as totp_factor
from appliance.system.errors import BulwarkError
from webui import state
from webui.identity import COOKIE, is_remote
from webui.permissions import PENDING, PUBLIC, requires
from webui.render import render

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    """Only a path on this appliance: no scheme, no host, no tricks that browsers read as a host."""
    if (
        target
        and target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and not any(ch in target for ch in "\\\t\r\n")
    ):
        return target
    return url_for("dashboard.index")


def start_session(user: users.User, *, mfa_done: bool) -> Response:
    """A fresh session (the old one, if any, ends): new cookie secret, new CSRF token."""
    old = request.cookies.get(COOKIE)
    if old:
        sessions.revoke(state.store(), old)
    session.clear()
    secret = sessions.create(
        state.store(),
        user.id,
        address=request.remote_addr,
        remote=is_remote(),
        mfa_done=mfa_done,
        user_agent=request.headers.get("User-Agent"),
    )
    if not mfa_done:
        target = url_for("auth.totp")
    elif user.must_change_password:
        target = url_for("auth.password")
    else:
        target = _safe_next(request.args.get("next"))
    resp = redirect(target)
    resp.set_cookie(
        COOKIE, secret, secure=current_app.config["SESSION_COOKIE_SECURE"], httponly=True, samesite="Lax", path="/"
    )
    return resp


@bp.route("/login", methods=["GET", "POST"])
@requires(PUBLIC)
def login() -> Any:
    error = None
    status = 200
    remote = is_remote()
    if request.method == "POST":
        username = request.form.get("username", "").strip().lower()[:64]
        password = request.form.get("password", "")
        address = request.remote_addr or "?"
        verdict = throttle.check(state.store(), username, address)
        if not verdict.allowed:
            minutes = max(1, int(verdict.retry_after // 60) + 1)
            error = f"Sign-in is locked: {verdict.reason}. Try again in {minutes} minute(s)."
            status = 429
        else:
            user = users.verify_password(state.store(), username, password)
            if user is None or user.disabled:
                throttle.record_failure(state.store(), username, address)
                state.store().audit(f"anonymous@{address}", "login.failed", username, address=address)
                error, status = "Wrong user name or password.", 401
            else:
                settings = state.appliance_settings()
                needs_mfa = remote or settings.require_totp or user.totp_enabled
                if remote and not user.totp_enabled:
                    state.store().audit(f"user:{username}", "login.refused_remote_no_totp", username, address=address)
                    error = (
                        "Remote sign-in needs a second factor, and this account has none. "
                        "Set one up under Account on the appliance's LAN first."
                    )
                    status = 403
                else:
                    if not needs_mfa:  # failures are forgiven once the whole sign-in succeeded, not before
                        throttle.clear(state.store(), username)
                    state.store().audit(f"user:{username}", "login", None, address=address, remote=remote)
                    return start_session(user, mfa_done=not needs_mfa)
    return render("login.html", error=error, remote=remote), status


@bp.route("/login/totp", methods=["GET", "POST"])
@requires(PENDING)
def totp() -> Any:
    identity = g.identity
    if identity.session is None or identity.session.mfa_done:
        return redirect(url_for("dashboard.index"))
    user = identity.user
    if not user.totp_enabled:
        return redirect(url_for("account.totp_setup"))  # sign-ins need it, and this account has none yet
    error, status = None, 200
    if request.method == "POST":
        address = request.remote_addr or "?"
        verdict = throttle.check(state.store(), user.username, address)
        if not verdict.allowed:
            error, status = "Too many wrong codes. Sign in again later.", 429
        elif totp_factor.verify(state.store(), user.id, request.form.get("code", "")):
            throttle.clear(state.store(), user.username)
            sessions.mark_mfa_done(state.store(), identity.session.id)
            state.audit("login.second_factor")
            return redirect(url_for("auth.password") if user.must_change_password else url_for("dashboard.index"))
        else:
            throttle.record_failure(state.store(), user.username, address)
            error, status = "That code is wrong or was already used. Enter the current code.", 401
    return render("totp.html", error=error), status


@bp.route("/logout", methods=["POST"])
@requires(PENDING)
def logout() -> Response:
    secret = request.cookies.get(COOKIE)
    if secret:
        sessions.revoke(state.store(), secret)
        state.audit("logout")
    session.clear()
    resp = redirect(url_for("auth.login"))
    resp.delete_cookie(COOKIE, path="/")
    return resp


@bp.route("/password", methods=["GET", "POST"])
@requires("self")
def password() -> Any:
    error = None
    status = 200
    user = g.user
    if user is None:
        return redirect(url_for("dashboard.index"))  # API tokens have no password
    if request.method == "POST":
        current = request.form.get("current", "")
        new = request.form.get("new", "")
        confirm = request.form.get("confirm", "")
        if users.verify_password(state.store(), user.username, current) is None:
            error, status = "The current password is wrong.", 400
        elif new != confirm:
            error, status = "The two new passwords differ.", 400
        elif new == current:
            error, status = "Choose a password different from the current one.", 400
        else:
            try:
                users.set_password(state.store(), user.username, new)
            except BulwarkError as exc:
                error, status = exc.message, 400
            else:
                state.audit("user.password_changed", user.username)
                sessions.revoke_user(state.store(), user.id, except_id=g.identity.session.id)
                return redirect(url_for("dashboard.index"))
    return render("password.html", error=error, min_length=users.MIN_PASSWORD), status
