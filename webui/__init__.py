"""Bulwark's web UI: a Flask app factory with one blueprint per area."""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from jinja2 import StrictUndefined

from appliance.store import Store
from appliance.system.paths import Paths
from webui.permissions import PUBLIC, requires


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. ``config`` may set ``DATA_DIR`` (else ``BULWARK_DATA_DIR``/the default) and any
    Flask setting; tests pass ``TESTING`` and get ``StrictUndefined`` templates."""
    app = Flask(__name__)
    cfg = dict(config or {})
    paths = Paths.resolve(cfg.pop("DATA_DIR", None))
    paths.require_initialized()
    app.config.update(
        SECRET_KEY=paths.secret_key.read_text().strip(),
        SESSION_COOKIE_NAME="bulwark_session",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=datetime.timedelta(hours=8),
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    app.config.update(cfg)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if app.testing:
        app.jinja_env.undefined = StrictUndefined
    app.extensions["bulwark.paths"] = paths
    app.extensions["bulwark.store"] = Store.open(paths.db)

    from webui import (
        account,
        agent_ingest,
        agents,
        api,
        audit,
        auth,
        dashboard,
        disks,
        errors,
        identity,
        jobs,
        metrics_view,
        offsite,
        remote_access,
        reports,
        settings,
        setup,
        smb,
        storage,
    )
    from webui import alerts as alert_pages
    from webui import clients as client_pages
    from webui import users as users_pages

    errors.init_app(app)
    identity.init_app(app)
    for blueprint in (
        auth.bp,
        account.bp,
        setup.bp,
        dashboard.bp,
        client_pages.bp,
        jobs.bp,
        storage.bp,
        settings.bp,
        users_pages.bp,
        audit.bp,
        alert_pages.bp,
        reports.bp,
        metrics_view.bp,
        remote_access.bp,
        offsite.bp,
        disks.bp,
        agent_ingest.bp,
        agents.bp,
        smb.bp,
    ):
        app.register_blueprint(blueprint)
    api.init_app(app)
    requires(PUBLIC)(app.view_functions["static"])  # stylesheets and scripts, also for the login page

    @app.route("/favicon.ico")
    @requires(PUBLIC)
    def favicon() -> Any:
        return app.send_static_file("favicon.svg")

    @app.after_request
    def security_headers(response):  # type: ignore[no-untyped-def]
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        )
        if os.environ.get("BULWARK_NO_HSTS") != "1":
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    return app
