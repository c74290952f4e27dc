"""The route class of every router, and the method index behind correct 405 answers.

:class:`LedgerRoute` parses JSON bodies with a guard: a body nested too deeply for the parser to
follow answers 422 naming where, instead of 400 "error parsing the body" (values nested deeper
than the limit but parseable are refused by the schemas, field by field). :class:`MethodIndex`
knows every method of every path, so that a 405 names all the methods a path allows, not only
those of the first route that matched it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from starlette.routing import Route

from taskledger.schemas.limits import MAX_JSON_DEPTH

#: How much of the path to a too-deep value a 422 shows: enough to name the field
#: (``runs[0].inputs`` is the deepest field that holds JSON).
_SHOWN_PATH = 3


class LedgerRequest(Request):
    """A request whose JSON body, if nested past what the parser can follow, is a 422."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = json.loads(body)
            except json.JSONDecodeError:
                raise  # FastAPI answers 422 with where the text stops parsing
            except UnicodeDecodeError as exc:
                raise HTTPException(
                    status_code=422,
                    detail=[
                        {
                            "loc": ["body"],
                            "msg": f"the body is not UTF-8 text: {exc.reason}",
                            "type": "json_invalid",
                        }
                    ],
                ) from None
            except RecursionError:
                path = path_to_depth(body, MAX_JSON_DEPTH + _SHOWN_PATH + 1)
                raise HTTPException(
                    status_code=422,
                    detail=[
                        {
                            "loc": ["body", *path[:_SHOWN_PATH]],
                            "msg": f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
                            "type": "json_too_deep",
                        }
                    ],
                ) from None
        return self._json


def refuse_nul_in_url(request: Request) -> None:
    """A 422 for a NUL character in a query or path parameter, before any route sees it:
    PostgreSQL cannot compare text holding one, and SQLite must answer the same (bodies are
    checked by the schemas)."""
    problems = [
        {"loc": [where, name], "msg": "text may not contain NUL (\\u0000)", "type": "value_error"}
        for where, items in (
            ("query", request.query_params.multi_items()),
            ("path", request.path_params.items()),
        )
        for name, value in items
        if "\x00" in str(value) or "\x00" in name
    ]
    if problems:
        raise HTTPException(status_code=422, detail=problems)


class LedgerRoute(APIRoute):
    """An API route whose handler sees a :class:`LedgerRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            refuse_nul_in_url(request)
            return await handler(LedgerRequest(request.scope, request.receive))

        return handle


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_COLON = re.compile(rb"\s*:")


def path_to_depth(body: bytes, depth: int) -> list[str | int]:
    """The keys and indexes leading to the first point where ``body`` (JSON text) nests
    ``depth`` levels deep, or to where its text ends. It scans the text, and never recurses."""
    stack: list[list[Any]] = []  # per open container: its kind and the current key or index
    position = 0
    while position < len(body):
        char = body[position]
        if char == 0x22:  # a string: a key if a colon follows
            match = _STRING.match(body, position)
            if match is None:
                break
            position = match.end()
            if stack and stack[-1][0] == "object" and _COLON.match(body, position):
                try:
                    stack[-1][1] = json.loads(match.group())
                except ValueError:
                    stack[-1][1] = "?"
            continue
        if char in b"[{":
            if len(stack) >= depth:
                break
            stack.append(["array", 0] if char == 0x5B else ["object", None])
        elif char in b"]}":
            if stack:
                stack.pop()
        elif char == 0x2C and stack:  # a comma: the next item, or the next key
            stack[-1][1] = stack[-1][1] + 1 if stack[-1][0] == "array" else None
        position += 1
    return [position_in for _, position_in in stack if position_in is not None]


class MethodIndex:
    """Every route's path pattern and methods, to say which methods a path allows."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = [(route.path_regex, set(route.methods or ())) for route in routes]

    def allowed(self, path: str) -> list[str]:
        """The methods some route accepts at ``path``, sorted."""
        methods: set[str] = set()
        for pattern, route_methods in self.routes:
            if pattern.match(path):
                methods |= route_methods
        return sorted(methods)
