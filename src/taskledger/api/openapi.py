"""The OpenAPI document, with every status a route can answer declared with the body it has.

FastAPI declares what a route's signature shows (its success status, and a 422 when it takes
parameters). The statuses that come from elsewhere are added here, by what each operation is:

- one that needs credentials can answer 401 (none, or unknown ones), 403 (a wrong admin key, or a
  scope or role that does not allow it) and 404 (a record, or a project, that is not there or not
  the caller's); one that takes the admin key alone answers 403 to a missing or wrong one;
- one with a body can answer 413 (over 1 MiB) and 422 (a body that is not acceptable JSON);
- one that writes can answer 409 (a clash with another record, e.g. two writers racing);
- one that pages with a cursor can answer 400 (a cursor that does not decode or belongs to
  other filters);
- every one that reads the database can answer 503 (unavailable, or busy past the lock wait).

Every such error has the body ``{"detail": "..."}`` (:class:`ErrorMessage`), but 409, whose
``detail`` may be an object (:class:`ConflictMessage`), and 422, which is the validation-error list
FastAPI declares. A route's own declaration of a status wins.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from taskledger.api.deps import ADMIN_KEY_SCHEME
from taskledger.schemas.base import ConflictMessage, ErrorMessage

_ERROR_REF = {"$ref": "#/components/schemas/ErrorMessage"}
_CONFLICT_REF = {"$ref": "#/components/schemas/ConflictMessage"}
_VALIDATION_REF = {"$ref": "#/components/schemas/HTTPValidationError"}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_DESCRIPTIONS = {
    400: "A cursor that is malformed, or made for other filters",
    401: "No credentials, or credentials that are not valid",
    403: "A wrong admin key, or a scope or role that does not allow this",
    404: "Not found, or not visible to the caller",
    409: "The request clashes with the current state of the record",
    413: "The body is larger than 1 MiB",
    422: "Validation Error",
    503: "The database is unavailable, or busy for longer than the request could wait",
}
#: Operations that never touch the database.
_NO_DATABASE = {("get", "/healthz"), ("get", "/metrics")}
_WRITES = {"post", "put", "patch", "delete"}


def _statuses(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    statuses: set[int] = set()
    names = {p.get("name") for p in operation.get("parameters", [])}
    schemes = {name for requirement in operation.get("security", []) for name in requirement}
    if schemes == {ADMIN_KEY_SCHEME}:
        statuses.add(403)  # the admin key alone: a missing or wrong one is a 403
    elif schemes:
        statuses |= {401, 403, 404}
    if "requestBody" in operation:
        statuses |= {413, 422}
    if names:
        statuses.add(422)
    if method in _WRITES and (method, path) not in _NO_DATABASE:
        statuses.add(409)
    if "cursor" in names:
        statuses.add(400)
    if (method, path) not in _NO_DATABASE:
        statuses.add(503)
    return statuses


def _response(status: int) -> dict[str, Any]:
    schema = {422: _VALIDATION_REF, 409: _CONFLICT_REF}.get(status, _ERROR_REF)
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS.get(status, "An error"),
        "content": {"application/json": {"schema": schema}},
    }
    if status in (429, 503):
        response["headers"] = _RETRY_AFTER
    return response


def declare_errors(document: dict[str, Any]) -> dict[str, Any]:
    """Add the error statuses of every operation of ``document`` (see the module docstring)."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("ErrorMessage", ErrorMessage.model_json_schema())
    components.setdefault("ConflictMessage", ConflictMessage.model_json_schema())
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            for status in sorted(_statuses(method, path, operation)):
                responses.setdefault(str(status), _response(status))
            for code, response in responses.items():
                # An error a route declared with a description only gets its body too.
                if code.isdigit() and int(code) >= 400 and "content" not in response:
                    response.update({**_response(int(code)), **response})
    _ensure_validation_schemas(components)
    return document


def _ensure_validation_schemas(components: dict[str, Any]) -> None:
    """The validation-error schemas, for a document where FastAPI declared no 422 itself."""
    components.setdefault(
        "ValidationError",
        {
            "title": "ValidationError",
            "type": "object",
            "required": ["loc", "msg", "type"],
            "properties": {
                "loc": {
                    "title": "Location",
                    "type": "array",
                    "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                },
                "msg": {"title": "Message", "type": "string"},
                "type": {"title": "Error Type", "type": "string"},
            },
        },
    )
    components.setdefault(
        "HTTPValidationError",
        {
            "title": "HTTPValidationError",
            "type": "object",
            "properties": {
                "detail": {
                    "title": "Detail",
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/ValidationError"},
                }
            },
        },
    )


def install_openapi(app: FastAPI) -> None:
    """Serve ``app``'s OpenAPI document with the error statuses declared (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = declare_errors(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
