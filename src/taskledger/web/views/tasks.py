"""The tasks page (being built)."""

from __future__ import annotations

from fastapi import Request, Response

from taskledger.web.deps import LoginDep
from taskledger.web.pages import page_router, pages_of

router = page_router()


@router.get("/tasks")
def tasks_page(request: Request, login: LoginDep) -> Response:
    return pages_of(request).render(request, "placeholder.html", {"page": "tasks"})
