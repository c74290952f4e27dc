"""Saved views: a user's named query strings of one page, kept on the server.

A user keeps up to :data:`MAX_VIEWS_PER_PAGE` views per page (Temporal keeps 20, in the
browser); saving under an existing name replaces that view's query.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taskledger.errors import ConflictError, NotFoundError, ValidationFailed
from taskledger.store.models import SavedView
from taskledger.store.types import utcnow

MAX_VIEWS_PER_PAGE = 50
MAX_NAME = 100
#: A query string longer than this is not a view anyone typed (URLs stop working near 8 KiB).
MAX_QUERY = 4000


def list_views(*, session: Session, user_id: uuid.UUID, page: str) -> list[SavedView]:
    """The user's views of ``page``, by name."""
    return list(
        session.scalars(
            select(SavedView)
            .where(SavedView.user_id == user_id, SavedView.page == page)
            .order_by(SavedView.name, SavedView.id)
        )
    )


def clean_name(name: str) -> str:
    """The name as stored: stripped, 1 to 100 characters (422 otherwise)."""
    cleaned = " ".join(name.split())
    if not 1 <= len(cleaned) <= MAX_NAME:
        raise ValidationFailed(
            f"A view's name is 1 to {MAX_NAME} characters.", loc=("body", "name")
        )
    return cleaned


def save_view(
    *, session: Session, user_id: uuid.UUID, page: str, name: str, query: str
) -> SavedView:
    """Save ``query`` as the view ``name`` of ``page``, replacing the view of that name if the
    user has one; a new view beyond :data:`MAX_VIEWS_PER_PAGE` is a 409."""
    name = clean_name(name)
    query = query.lstrip("?")
    if len(query) > MAX_QUERY or "\x00" in query:
        raise ValidationFailed(
            f"A view's query string is at most {MAX_QUERY} characters.", loc=("body", "query")
        )
    existing = session.scalar(
        select(SavedView).where(
            SavedView.user_id == user_id, SavedView.page == page, SavedView.name == name
        )
    )
    if existing is not None:
        existing.query = query
        session.flush()
        return existing
    count = session.scalar(
        select(func.count())
        .select_from(SavedView)
        .where(SavedView.user_id == user_id, SavedView.page == page)
    )
    if (count or 0) >= MAX_VIEWS_PER_PAGE:
        raise ConflictError(
            f"You already have {MAX_VIEWS_PER_PAGE} saved views on this page, the most there can "
            "be: delete one, or save under the name of one to replace it."
        )
    view = SavedView(user_id=user_id, page=page, name=name, query=query, created_at=utcnow())
    session.add(view)
    session.flush()
    return view


def delete_view(*, session: Session, user_id: uuid.UUID, view_id: int) -> SavedView:
    """Delete one of the user's views (404 when it is not theirs or does not exist)."""
    view = session.get(SavedView, view_id)
    if view is None or view.user_id != user_id:
        raise NotFoundError("Saved view not found.")
    session.delete(view)
    session.flush()
    return view
