"""Signing in and out, and the forced change of a one-time password."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Flask, g, redirect, request, session, url_for
from werkzeug.wrappers import Response

from appliance import users
from appliance.system.errors import BulwarkError
from webui import csrf, state
from webui.render import render

bp = Blueprint("auth", __name__)
F = TypeVar("F", bound=Callable[..., Any])

# Failed logins per (client address, user name) within the window before a temporary lockout.
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0
_failures: dict[tuple[str, str], list[float]] = {}

PUBLIC_ENDPOINTS = {"auth.login", "static"}


def init_app(app: Flask) -> None:
    @app.before_request
    def load_user() -> Response | None:
        csrf.protect()
        g.user = None
        username = session.get("user")
        if isinstance(username, str):
            try:
                g.user = users.get_user(state.store(), username)
            except BulwarkError:
                session.clear()
        endpoint = request.endpoint or ""
        if endpoint in PUBLIC_ENDPOINTS:
            return None
        if g.user is None:
            return redirect(url_for("auth.login", next=request.path))
        if g.user.must_change_password and endpoint not in ("auth.password", "auth.logout"):
            return redirect(url_for("auth.password"))
        return None

    @app.context_processor
    def inject() -> dict[str, Any]:
        return {"csrf_token": csrf.token, "current_user": g.get("user")}


def login_required(fn: F) -> F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("user") is None:
            return redirect(url_for("auth.login"))
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _throttled(key: tuple[str, str]) -> bool:
    now = time.monotonic()
    recent = [t for t in _failures.get(key, []) if now - t < FAILURE_WINDOW]
    _failures[key] = recent
    return len(recent) >= MAX_FAILURES


def _safe_next(target: str | None) -> str:
    # Browsers read "/\host" as "//host", and drop tabs and newlines (so "/<TAB>/host" is "//host" too).
    if target and target.startswith("/") and not target.startswith(("//", "/\\")) and target.isprintable():
        return target
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    status = 200
    if request.method == "POST":
        username = request.form.get("username", "").strip().lower()
        password = request.form.get("password", "")
        key = (request.remote_addr or "?", username)
        if _throttled(key):
            error = "Too many failed sign-ins. Wait five minutes, then try again."
            status = 429
        else:
            user = users.verify_password(state.store(), username, password)
            if user is None:
                _failures.setdefault(key, []).append(time.monotonic())
                error = "Wrong user name or password."
                status = 401
                state.store().audit(f"web:{request.remote_addr}", "login.failed", username)
            else:
                _failures.pop(key, None)
                session.clear()  # a fresh session on every sign-in
                session.permanent = True
                session["user"] = user.username
                state.store().audit(f"user:{user.username}", "login", None, address=request.remote_addr)
                if user.must_change_password:
                    return redirect(url_for("auth.password"))
                return redirect(_safe_next(request.args.get("next")))
    return render("login.html", error=error), status


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/password", methods=["GET", "POST"])
def password() -> Any:
    error = None
    status = 200
    if request.method == "POST":
        current = request.form.get("current", "")
        new = request.form.get("new", "")
        confirm = request.form.get("confirm", "")
        user = g.user
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
                state.store().audit(f"user:{user.username}", "user.password_changed", user.username)
                session.clear()
                session.permanent = True
                session["user"] = user.username
                return redirect(url_for("dashboard.index"))
    return render("password.html", error=error, min_length=users.MIN_PASSWORD), status
