"""API: users, API tokens, and one's own identity, password and second factor."""

from __future__ import annotations

from typing import Any

from flask import g, request
from spectree import Response

from appliance import users
from appliance.auth import sessions, tokens, totp
from appliance.system.errors import InvalidInput, PermissionDenied
from webui import state
from webui.api import bp, spec
from webui.api.schemas import (
    Done,
    ErrorBody,
    MeOut,
    OneTimePassword,
    PasswordChange,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
    TotpEnable,
    TotpSetup,
    UserCreate,
    UserCreated,
    UserList,
    UserOut,
    UserUpdate,
)
from webui.permissions import requires

ERRORS = {
    "HTTP_400": ErrorBody,
    "HTTP_401": ErrorBody,
    "HTTP_403": ErrorBody,
    "HTTP_404": ErrorBody,
    "HTTP_409": ErrorBody,
}
USERNAME = "<string(maxlength=32):username>"


@bp.route("/users", methods=["GET"])
@requires("users.manage")
@spec.validate(resp=Response(HTTP_200=UserList, **ERRORS), tags=["users"])
def list_users() -> Any:
    """All accounts."""
    return UserList(users=[UserOut.model_validate(u.to_dict()) for u in users.list_users(state.store())])


@bp.route("/users", methods=["POST"])
@requires("users.manage")
@spec.validate(json=UserCreate, resp=Response(HTTP_201=UserCreated, **ERRORS), tags=["users"])
def create_user() -> Any:
    """Add an account; without a password it gets a one-time password (returned once)."""
    body: UserCreate = request.context.json  # type: ignore[attr-defined]
    one_time = None if body.password else users.generate_password()
    user = users.create_user(
        state.store(), body.username, body.password or one_time or "", body.role, must_change=one_time is not None
    )
    state.audit("user.create", user.username, role=user.role)
    return UserCreated(user=UserOut.model_validate(user.to_dict()), one_time_password=one_time), 201


@bp.route(f"/users/{USERNAME}", methods=["PATCH"])
@requires("users.manage")
@spec.validate(json=UserUpdate, resp=Response(HTTP_200=UserOut, **ERRORS), tags=["users"])
def update_user(username: str) -> Any:
    """Change an account's role, or disable/enable it (disabling ends its sessions)."""
    body: UserUpdate = request.context.json  # type: ignore[attr-defined]
    user = users.update_user(state.store(), username, role=body.role, disabled=body.disabled)
    if body.disabled:
        sessions.revoke_user(state.store(), user.id)
    state.audit("user.update", username, **body.model_dump(exclude_none=True))
    return UserOut.model_validate(user.to_dict())


@bp.route(f"/users/{USERNAME}", methods=["DELETE"])
@requires("users.manage")
@spec.validate(resp=Response(HTTP_200=Done, **ERRORS), tags=["users"])
def delete_user(username: str) -> Any:
    """Remove an account (not your own, not the last admin)."""
    if g.identity.kind == "user" and g.identity.name == username:
        raise InvalidInput("you cannot delete your own account")
    users.delete_user(state.store(), username)
    state.audit("user.delete", username)
    return Done()


@bp.route(f"/users/{USERNAME}/reset-password", methods=["POST"])
@requires("users.manage")
@spec.validate(resp=Response(HTTP_200=OneTimePassword, **ERRORS), tags=["users"])
def reset_password(username: str) -> Any:
    """Give an account a new one-time password (its sessions end)."""
    password = users.generate_password()
    users.set_password(state.store(), username, password, must_change=True)
    sessions.revoke_user(state.store(), users.get_user(state.store(), username).id)
    state.audit("user.reset_password", username)
    return OneTimePassword(username=username, one_time_password=password)


@bp.route(f"/users/{USERNAME}/totp", methods=["DELETE"])
@requires("users.manage")
@spec.validate(resp=Response(HTTP_200=Done, **ERRORS), tags=["users"])
def reset_totp(username: str) -> Any:
    """Remove an account's second factor (they set it up again where it is required)."""
    if g.identity.remote and g.identity.kind == "user" and g.identity.name == username:
        raise PermissionDenied("a remote session cannot remove its own second factor")
    user = users.get_user(state.store(), username)
    totp.disable(state.store(), user.id)
    sessions.revoke_user(state.store(), user.id)
    state.audit("user.totp_reset", username)
    return Done()


@bp.route("/tokens", methods=["GET"])
@requires("tokens.manage")
@spec.validate(resp=Response(HTTP_200=TokenList, **ERRORS), tags=["tokens"])
def list_tokens() -> Any:
    """API tokens (never their secrets)."""
    return TokenList(tokens=[TokenOut.model_validate(t.to_dict()) for t in tokens.list_tokens(state.store())])


@bp.route("/tokens", methods=["POST"])
@requires("tokens.manage")
@spec.validate(json=TokenCreate, resp=Response(HTTP_201=TokenCreated, **ERRORS), tags=["tokens"])
def create_token() -> Any:
    """Create an API token; its secret is in this answer only."""
    body: TokenCreate = request.context.json  # type: ignore[attr-defined]
    token, secret = tokens.create(
        state.store(), name=body.name, role=body.role, created_by=state.actor(), expires_days=body.expires_days
    )
    state.audit("token.create", str(token.id), name=token.name, role=token.role)
    return TokenCreated(token=TokenOut.model_validate(token.to_dict()), secret=secret), 201


@bp.route("/tokens/<int:token_id>", methods=["DELETE"])
@requires("tokens.manage")
@spec.validate(resp=Response(HTTP_200=TokenOut, **ERRORS), tags=["tokens"])
def revoke_token(token_id: int) -> Any:
    """Revoke an API token at once."""
    token = tokens.revoke(state.store(), token_id)
    state.audit("token.revoke", str(token_id))
    return TokenOut.model_validate(token.to_dict())


@bp.route("/me", methods=["GET"])
@requires("self")
@spec.validate(resp=Response(HTTP_200=MeOut, **ERRORS), tags=["me"])
def me() -> Any:
    """Who this request is: a user or an API token, and its role."""
    identity = g.identity
    return MeOut(
        kind=identity.kind,
        name=identity.name,
        role=identity.role,
        remote=identity.remote,
        totp_enabled=identity.user.totp_enabled if identity.user else None,
    )


def _own_user() -> users.User:
    if g.identity.user is None:
        raise PermissionDenied("API tokens have no password or second factor")
    user: users.User = g.identity.user
    return user


@bp.route("/me/password", methods=["POST"])
@requires("self")
@spec.validate(json=PasswordChange, resp=Response(HTTP_200=Done, **ERRORS), tags=["me"])
def change_own_password() -> Any:
    """Change your own password (also the way to replace a one-time password)."""
    body: PasswordChange = request.context.json  # type: ignore[attr-defined]
    user = _own_user()
    if users.verify_password(state.store(), user.username, body.current) is None:
        raise InvalidInput("the current password is wrong")
    if body.new == body.current:
        raise InvalidInput("the new password must differ from the current one")
    users.set_password(state.store(), user.username, body.new)
    keep = g.identity.session.id if g.identity.session else None
    sessions.revoke_user(state.store(), user.id, except_id=keep)
    state.audit("user.password_changed", user.username)
    return Done()


@bp.route("/me/totp/setup", methods=["POST"])
@requires("self")
@spec.validate(resp=Response(HTTP_200=TotpSetup, **ERRORS), tags=["me"])
def totp_setup() -> Any:
    """A new TOTP secret to add to an authenticator; confirm it with /me/totp/enable."""
    user = _own_user()
    secret = totp.new_secret()
    return TotpSetup(
        secret=secret, uri=totp.provisioning_uri(secret, user.username, state.appliance_settings().hostname)
    )


@bp.route("/me/totp/enable", methods=["POST"])
@requires("self")
@spec.validate(json=TotpEnable, resp=Response(HTTP_200=Done, **ERRORS), tags=["me"])
def totp_enable() -> Any:
    """Turn the second factor on with a code from the authenticator."""
    body: TotpEnable = request.context.json  # type: ignore[attr-defined]
    user = _own_user()
    if user.totp_enabled:
        raise InvalidInput("a second factor is already set up; remove it first")
    totp.enable(state.store(), user.id, body.secret, body.code)
    state.audit("user.totp_enabled", user.username)
    return Done()
