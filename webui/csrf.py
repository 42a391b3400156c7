"""CSRF protection: a per-session token required on every state-changing request.

Forms carry it in a hidden ``csrf_token`` field; htmx sends it as the ``X-CSRF-Token`` header (set once
in the base template)."""

from __future__ import annotations

import hmac
import secrets

from flask import abort, request, session

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def token() -> str:
    value = session.get("csrf")
    if not isinstance(value, str):
        value = secrets.token_urlsafe(32)
        session["csrf"] = value
    return value


def protect() -> None:
    """Abort with 400 if a state-changing request lacks the session's token."""
    if request.method in SAFE_METHODS:
        return
    expected = session.get("csrf")
    given = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, given):
        abort(
            400, description="The form has expired or did not come from this appliance. Reload the page and try again."
        )
