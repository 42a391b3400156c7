"""A browser for the Flask test client: its own cookies, the CSRF token read from the page like htmx does,
signing in (with a TOTP code where asked), and optionally arriving through the remote-access tunnel."""

from __future__ import annotations

import hashlib
import html
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pyotp
from flask import Flask
from werkzeug.test import TestResponse

from appliance import users
from appliance.auth import totp
from appliance.store import Store
from appliance.system import settings

COOKIE = "bulwark_sid"
TUNNEL_PORT = 8444  # settings.tunnel_listen_port in the tests that use remote sessions
LAN_BASE = "https://localhost"  # SERVER_PORT 443: the LAN listener
_META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def location(response: TestResponse) -> str:
    return response.headers["Location"]


def totp_code(secret: str, steps: int = 0) -> str:
    """The code an authenticator shows now (``steps`` 30-second steps later or earlier)."""
    generator = pyotp.TOTP(secret)
    return generator.at(time.time() + steps * generator.interval)


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def dump(db: Store) -> list[str]:
    """The whole database as SQL statements: equal dumps mean nothing changed."""
    return list(db.conn().iterdump())


class Web:
    """One browser: cookies persist across requests, and every POST carries the page's CSRF token
    unless ``csrf=False``. ``remote=True`` sends every request to the tunnel's listener port."""

    def __init__(self, app: Flask, *, remote: bool = False) -> None:
        self.app = app
        self.client = app.test_client()
        self.base_url = f"https://localhost:{TUNNEL_PORT}" if remote else LAN_BASE

    def open(self, path: str, method: str = "GET", **kwargs: Any) -> TestResponse:
        kwargs.setdefault("base_url", self.base_url)
        return self.client.open(path, method=method, **kwargs)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open(path, "GET", **kwargs)

    def post(self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True, **kwargs: Any) -> TestResponse:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf())
        return self.open(path, "POST", data=form, **kwargs)

    def csrf(self) -> str:
        """The token every page carries in its ``<meta name="csrf-token">`` (the login page is public)."""
        response = self.get("/login")
        assert response.status_code == 200, response.status_code
        match = _META_CSRF.search(text(response))
        assert match, "no CSRF token on the page"
        return match.group(1)

    @property
    def sid(self) -> str | None:
        cookie = self.client.get_cookie(COOKIE)
        return None if cookie is None else cookie.value

    def set_sid(self, value: str) -> None:
        self.client.set_cookie(COOKIE, value)

    def sign_in(
        self, username: str, password: str, *, code: str | None = None, next_url: str | None = None
    ) -> TestResponse:
        """The login form, then the code form if the appliance asks for one and ``code`` is given."""
        path = "/login" + (f"?next={quote(next_url, safe='')}" if next_url is not None else "")
        response = self.post(path, {"username": username, "password": password})
        if code is not None and response.status_code == 302 and location(response) == "/login/totp":
            response = self.post("/login/totp", {"code": code})
        return response

    def sign_out(self) -> TestResponse:
        return self.post("/logout")

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> TestResponse:
        """An API call, with a bearer token or (without) this browser's session cookie."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.open(path, method, headers=headers, **kwargs)


def live_sessions(db: Store, username: str) -> list[dict[str, Any]]:
    """The session rows of a user."""
    rows = db.query("SELECT s.* FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = ?", (username,))
    return [dict(r) for r in rows]


NEW_PASSWORD = "a-much-better-password"
Browser = Callable[..., Web]
SignedIn = Callable[[str], Web]


def audit_rows(db: Store, action: str) -> list[dict[str, object]]:
    return [dict(r) for r in db.query("SELECT * FROM audit WHERE action = ? ORDER BY id", (action,))]


def flash_error(page: str) -> str:
    match = re.search(r'<p class="flash error" role="alert">([^<]*)</p>', page)
    return html.unescape(match.group(1)) if match else ""


def set_setting(db: Store, **changes: object) -> None:
    settings.update(db, **changes)


def enrol_totp(db: Store, username: str) -> str:
    """Give an account a second factor the way the account page does (code of the previous step)."""
    secret = pyotp.random_base32()
    totp.enable(db, users.get_user(db, username).id, secret, totp_code(secret, -1))
    return secret
