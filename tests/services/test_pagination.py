"""Keyset cursors: each row once, in order, even with inserts between pages; misuse is 400."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from taskledger.errors import BadRequestError
from taskledger.services.pagination import paginate
from taskledger.services.users import USERS_KEYSET, create_user
from taskledger.store import make_session_factory
from taskledger.store.models import User


def _all_pages(session: Session, limit: int, filters: dict[str, object]) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        rows, cursor = paginate(
            session=session,
            stmt=select(User),
            keyset=USERS_KEYSET,
            limit=limit,
            cursor=cursor,
            filters=filters,
        )
        seen.extend(u.email for u in rows)
        if cursor is None:
            return seen


def test_pages_cover_every_row_once_in_order(engine: Engine) -> None:
    with make_session_factory(engine).begin() as session:
        for i in range(23):
            create_user(session=session, email=f"u{i:02d}@example.com", password="long enough")
    with Session(engine) as session:
        seen = _all_pages(session, 5, {})
        assert seen == [f"u{i:02d}@example.com" for i in range(23)]


def test_rows_inserted_between_pages_are_neither_skipped_nor_repeated(engine: Engine) -> None:
    with make_session_factory(engine).begin() as session:
        for i in range(10):
            create_user(session=session, email=f"a{i}@example.com", password="long enough")
    seen: list[str] = []
    cursor = None
    inserted = 0
    while True:
        with Session(engine) as session:
            rows, cursor = paginate(
                session=session,
                stmt=select(User),
                keyset=USERS_KEYSET,
                limit=3,
                cursor=cursor,
                filters={},
            )
        seen.extend(u.email for u in rows)
        if cursor is None:
            break
        with make_session_factory(engine).begin() as session:
            create_user(
                session=session, email=f"late{inserted}@example.com", password="long enough"
            )
            inserted += 1
    assert len(seen) == len(set(seen)) == 10 + inserted


def test_cursor_misuse_is_400(engine: Engine) -> None:
    with make_session_factory(engine).begin() as session:
        for i in range(3):
            create_user(session=session, email=f"u{i}@example.com", password="long enough")
    with Session(engine) as session:
        _, cursor = paginate(
            session=session,
            stmt=select(User),
            keyset=USERS_KEYSET,
            limit=1,
            cursor=None,
            filters={"status": ["a"]},
        )
        assert cursor is not None
        with pytest.raises(BadRequestError, match="other filters"):
            paginate(
                session=session,
                stmt=select(User),
                keyset=USERS_KEYSET,
                limit=1,
                cursor=cursor,
                filters={"status": ["b"]},
            )
        tampered = base64.urlsafe_b64encode(
            json.dumps({"v": ["not a time", "x"], "f": "0"}).encode()
        ).decode()
        for bad in ("@@@", "e30", tampered, "a" * 7, base64.urlsafe_b64encode(b"[1]").decode()):
            with pytest.raises(BadRequestError, match="Malformed"):
                paginate(
                    session=session,
                    stmt=select(User),
                    keyset=USERS_KEYSET,
                    limit=1,
                    cursor=bad,
                    filters={"status": ["a"]},
                )
