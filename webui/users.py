"""Users and API tokens (admins only)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, redirect, request, url_for

from appliance import users
from appliance.auth import sessions, tokens, totp
from appliance.system.errors import BulwarkError
from webui import state
from webui.permissions import requires
from webui.render import render

bp = Blueprint("users", __name__, url_prefix="/users")


def _page(**extra: Any) -> Any:
    return render(
        "users.html",
        users=users.list_users(state.store()),
        tokens=tokens.list_tokens(state.store()),
        roles=users.ROLES,
        **{"message": None, "error": None, "shown_once": None, **extra},
    )


@bp.route("/")
@requires("users.manage")
def index() -> Any:
    return _page()


@bp.route("/add", methods=["POST"])
@requires("users.manage")
def add() -> Any:
    username = request.form.get("username", "").strip()
    role = request.form.get("role", "")
    password = users.generate_password()
    try:
        users.create_user(state.store(), username, password, role, must_change=True)
    except BulwarkError as exc:
        return _page(error=exc.message), exc.http_status
    state.audit("user.create", username, role=role)
    return _page(shown_once=(f"One-time password for {username}", password))


@bp.route("/<username>/role", methods=["POST"])
@requires("users.manage")
def set_role(username: str) -> Any:
    try:
        users.update_user(state.store(), username, role=request.form.get("role", ""))
    except BulwarkError as exc:
        return _page(error=exc.message), exc.http_status
    state.audit("user.role", username, role=request.form.get("role"))
    return redirect(url_for("users.index"))


@bp.route("/<username>/disable", methods=["POST"])
@requires("users.manage")
def disable(username: str) -> Any:
    value = request.form.get("disabled") == "1"
    try:
        user = users.update_user(state.store(), username, disabled=value)
    except BulwarkError as exc:
        return _page(error=exc.message), exc.http_status
    if value:
        sessions.revoke_user(state.store(), user.id)
    state.audit("user.disable" if value else "user.enable", username)
    return redirect(url_for("users.index"))


@bp.route("/<username>/reset-password", methods=["POST"])
@requires("users.manage")
def reset_password(username: str) -> Any:
    password = users.generate_password()
    try:
        users.set_password(state.store(), username, password, must_change=True)
        user = users.get_user(state.store(), username)
    except BulwarkError as exc:
        return _page(error=exc.message), exc.http_status
    sessions.revoke_user(state.store(), user.id)
    state.audit("user.reset_password", username)
    return _page(shown_once=(f"New one-time password for {username}", password))


@bp.route("/<username>/reset-totp", methods=["POST"])
@requires("users.manage")
def reset_totp(username: str) -> Any:
    if g.identity.remote and g.user is not None and g.user.username == username:
        # the rule of the account page: a remote session cannot drop its own second factor
        return _page(error="A remote session cannot remove its own second factor."), 403
    try:
        user = users.get_user(state.store(), username)
    except BulwarkError as exc:
        return _page(error=exc.message), exc.http_status
    totp.disable(state.store(), user.id)
    sessions.revoke_user(state.store(), user.id)
    state.audit("user.totp_reset", username)
    return _page(message=f"The second factor of {username} was removed; they must set it up again if required.")


@bp.route("/<username>/delete", methods=["POST"])
@requires("users.manage")
def delete(username: str) -> Any:
    if g.user is not None and g.user.username == username:
        return _page(error="You cannot delete your own account."), 409
    if request.form.get("confirm") != username:
        return _page(error=f"Type the user name ({username}) to confirm the deletion."), 400
    try:
        users.delete_user(state.store(), username)
    except BulwarkError as exc:
        return _page(error=exc.message), exc.http_status
    state.audit("user.delete", username)
    return redirect(url_for("users.index"))


@bp.route("/tokens", methods=["POST"])
@requires("tokens.manage")
def create_token() -> Any:
    days_text = request.form.get("expires_days", "").strip()
    try:
        days = int(days_text) if days_text else None
        token, secret = tokens.create(
            state.store(),
            name=request.form.get("name", "").strip(),
            role=request.form.get("role", ""),
            created_by=g.identity.actor,
            expires_days=days,
        )
    except ValueError:
        return _page(error="Expiry must be a whole number of days."), 400
    except BulwarkError as exc:
        return _page(error=exc.message), exc.http_status
    state.audit("token.create", str(token.id), name=token.name, role=token.role)
    return _page(shown_once=(f"API token '{token.name}' (copy it now; it is not shown again)", secret))


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@requires("tokens.manage")
def revoke_token(token_id: int) -> Any:
    try:
        tokens.revoke(state.store(), token_id)
    except BulwarkError as exc:
        return _page(error=exc.message), exc.http_status
    state.audit("token.revoke", str(token_id))
    return redirect(url_for("users.index"))
