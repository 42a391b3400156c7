"""Error answers: a page for people, JSON for the API; every error says what happened and what to do."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from appliance.system.errors import BulwarkError

HINTS = {
    400: "Check what you sent and try again; nothing was changed.",
    403: "Sign in with an account whose role allows this.",
    404: "Check the address, or go back to the dashboard.",
    405: "This address does not accept that method; see /api/v1/openapi.json.",
    409: "Reload to see the current state, then try again.",
    413: "The request is too large.",
    429: "Wait a moment, then try again.",
}


def _api() -> bool:
    return request.path.startswith("/api/")


def init_app(app: Flask) -> None:
    @app.errorhandler(BulwarkError)
    def bulwark_error(exc: BulwarkError) -> Any:
        if _api():
            resp = jsonify({"error": exc.to_dict()})
            resp.status_code = exc.http_status
            return resp
        return render_template(
            "error.html", title="Something went wrong", message=exc.message, hint=exc.hint
        ), exc.http_status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = exc.code or 500
        hint = HINTS.get(code, "Try again in a moment.")
        if _api():
            resp = jsonify(
                {
                    "error": {
                        "code": (exc.name or "error").lower().replace(" ", "_"),
                        "message": exc.description,
                        "hint": hint,
                        "retryable": code >= 500,
                    }
                }
            )
            resp.status_code = code
            return resp
        return render_template("error.html", title=exc.name, message=exc.description, hint=hint), code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        if isinstance(exc, HTTPException):
            return http_error(exc)
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        message = "An internal error occurred; it has been logged."
        hint = "Try again; if it keeps happening, send the appliance log to support."
        if _api():
            resp = jsonify({"error": {"code": "internal_error", "message": message, "hint": hint, "retryable": True}})
            resp.status_code = 500
            return resp
        return render_template("error.html", title="Internal error", message=message, hint=hint), 500
