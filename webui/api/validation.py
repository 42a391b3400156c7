"""Request validation where SpecTree's does not fit: routes that answer with a stream, and DELETE bodies.

For a route that answers with a stream (a file, a zip of any size), ``spec.validate`` would read the returned
response whole in order to validate it, holding a download of any size in memory. :func:`streamed` documents the
route with the same models (the OpenAPI document cannot tell the difference) but validates only the request, the
same way and with the same error body, and then hands the streamed response through untouched.

SpecTree documents a JSON body on a DELETE route but does not validate it (``request.context.json`` stays
None): :func:`json_body` does, with the same error body.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from flask import abort, jsonify, request
from pydantic import BaseModel, ValidationError
from spectree import Response
from spectree.plugins.base import Context

from webui.api import spec

M = TypeVar("M", bound=BaseModel)


def _invalid(err: ValidationError) -> Any:
    details = err.errors(include_url=False, include_input=False, include_context=False)
    resp = jsonify(
        {
            "error": {
                "code": "invalid_input",
                "message": "The request does not match the API's schema.",
                "hint": "See /api/v1/openapi.json for the fields and their types; nothing was changed.",
                "retryable": False,
                "details": details,
            }
        }
    )
    resp.status_code = 400
    return resp


def streamed(
    *,
    resp: Response,
    tags: Sequence[str],
    query: type[BaseModel] | None = None,
    json: type[BaseModel] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Like ``spec.validate(query=…, json=…, resp=…, tags=…)`` for a view that returns a streamed response;
    the validated models are in ``request.context`` as with SpecTree."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        documented = spec.validate(query=query, json=json, resp=resp, tags=tags)(func)

        @functools.wraps(func)
        def view(*args: Any, **kwargs: Any) -> Any:
            try:
                request.context = Context(  # type: ignore[attr-defined]
                    query.model_validate(request.args.to_dict()) if query is not None else None,
                    json.model_validate(request.get_json(silent=True) or {}) if json is not None else None,
                    None,
                    None,
                    None,
                )
            except ValidationError as err:
                return _invalid(err)
            return func(*args, **kwargs)

        view.__wrapped__ = documented  # SpecTree finds its metadata through this
        return view

    return decorate


def json_body(model: type[M]) -> M:
    """The request's JSON body as ``model``, validated here if SpecTree did not (a DELETE request's body)."""
    context = getattr(request, "context", None)
    given = getattr(context, "json", None)
    if isinstance(given, model):
        return given
    try:
        return model.model_validate(request.get_json(silent=True) or {})
    except ValidationError as err:
        abort(_invalid(err))
