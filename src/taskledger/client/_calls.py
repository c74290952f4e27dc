"""Every request the client can make, built once: method, path, query, body, how to read the
answer, and whether repeating it is safe. The sync and async resources both send these."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Generic, Literal, TypedDict, TypeVar

import httpx
from pydantic import BaseModel

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

Params = list[tuple[str, str | int | float | bool | None]]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request, and how to turn its answer into a ``T``.

    ``idempotent`` says whether the request may be repeated after it may have reached the
    server (a read, a heartbeat, a run create carrying an idempotency key). Any request is
    retried when it never got through or the server answered 429 or 503 (nothing written).
    ``scope`` says where the client's default ``project_id`` goes, when it has one.
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Params = field(default_factory=list)
    json: Any = None
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    idempotent: bool = False
    scope: Literal["body", "query"] | None = None


def text(value: Any) -> str:
    """A query value as the server reads it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def query(**values: Any) -> Params:
    """Query parameters, leaving out ``None``; a list or tuple repeats its name."""
    out: Params = []
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            out.extend((name, text(v)) for v in value)
        else:
            out.append((name, text(value)))
    return out


def body(model: type[M], given: M | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> Any:
    """The JSON of a request body: ``given`` (a model or a dict) and ``fields``, validated by
    ``model`` here so that a mistake fails before it is sent. Only the fields set are sent, so
    that a partial update leaves the others alone and an explicit ``None`` clears a field."""
    if isinstance(given, BaseModel):
        if fields:
            given = given.model_copy(update=dict(fields))
        instance = model.model_validate(given.model_dump(exclude_unset=True))
    else:
        instance = model.model_validate({**(given or {}), **fields})
    return instance.model_dump(mode="json", exclude_unset=True)


def reader(model: Any) -> Callable[[httpx.Response], Any]:
    """Parse a response body as ``model`` (a pydantic model class)."""
    validate = model.model_validate_json

    def parse(response: httpx.Response) -> Any:
        # By field name too: a response model may name an ORM attribute as its validation
        # alias (InstructionRead's ``metadata_``), while the JSON carries the field's name.
        return validate(response.content, by_name=True)

    return parse


def nothing(_response: httpx.Response) -> None:
    return None


def as_json(response: httpx.Response) -> Any:
    return response.json()


def get(path: str, model: type[M], params: Params | None = None, **kw: Any) -> Call[M]:
    return Call("GET", path, reader(model), params or [], idempotent=True, **kw)


def post(path: str, model: type[M], json: Any, **kw: Any) -> Call[M]:
    return Call("POST", path, reader(model), json=json, **kw)


def patch(path: str, model: type[M], json: Any, **kw: Any) -> Call[M]:
    # A PATCH sets fields to given values: repeating it gives the same record.
    return Call("PATCH", path, reader(model), json=json, idempotent=True, **kw)


def delete(path: str, **kw: Any) -> Call[None]:
    return Call("DELETE", path, nothing, **kw)


def ident(value: uuid.UUID | str | int) -> str:
    return str(value)


class RunQuery(TypedDict, total=False):
    """The filters of ``runs.list``, ``runs.iter`` and ``runs.export`` (SPEC section 4)."""

    since: datetime | str
    until: datetime | str
    status: Sequence[str] | str
    task: Sequence[str] | str
    agent: str
    run_id: str
    approval_state: str
    q: str
    project_id: uuid.UUID | str


def run_params(filters: RunQuery, **more: Any) -> Params:
    return query(**dict(filters), **more)


def pages_of(first: Call[Any], cursor: str | None) -> Call[Any]:
    """``first`` asking for the page after ``cursor``."""
    params = [(k, v) for k, v in first.params if k != "cursor"]
    if cursor is not None:
        params.append(("cursor", cursor))
    return Call(first.method, first.path, first.parse, params, idempotent=True, scope=first.scope)


def items_of(page: Any) -> tuple[Iterable[Any], str | None]:
    return page.items, page.next_cursor
