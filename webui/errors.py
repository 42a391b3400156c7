"""Error pages: every error says what happened and what to do next."""

from __future__ import annotations

from typing import Any

from flask import Flask, render_template
from werkzeug.exceptions import HTTPException

from appliance.system.errors import BulwarkError


def init_app(app: Flask) -> None:
    @app.errorhandler(BulwarkError)
    def bulwark_error(exc: BulwarkError) -> Any:
        return render_template(
            "error.html", title="Something went wrong", message=exc.message, hint=exc.hint
        ), exc.http_status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        hint = {
            404: "Check the address, or go back to the dashboard.",
            400: "Reload the page and try again.",
            403: "Sign in with an account that is allowed to do this.",
        }.get(exc.code or 500, "Try again in a moment.")
        return render_template("error.html", title=exc.name, message=exc.description, hint=hint), exc.code
