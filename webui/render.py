"""One helper renders either the full page or, for an htmx request, just the partial."""

from __future__ import annotations

from typing import Any

from flask import render_template, request


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def render(template: str, partial: str | None = None, **context: Any) -> str:
    """Render ``template`` (a full page), or ``partial`` alone when htmx asks for a fragment."""
    if partial is not None and is_htmx() and request.headers.get("HX-Target"):
        return render_template(partial, **context)
    return render_template(template, **context)
