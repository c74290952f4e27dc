"""Project API keys: issue (secret shown once), list, revoke, and authenticate requests.

A key reads ``tl_<prefix>_<secret>``. Only the SHA-256 of the whole key is stored: keys carry
256 bits of randomness, so a slow password hash would add latency to every request without adding
safety. The prefix (unique, shown in listings) finds the row; the hash is compared in constant
time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from taskledger.enums import Scope
from taskledger.errors import AuthenticationError, NotFoundError
from taskledger.services.access import Principal, PrincipalKind, effective_scopes
from taskledger.services.pagination import Keyset, paginate
from taskledger.store.models import Agent, ApiKey, Project
from taskledger.store.types import utcnow

KEY_PREFIX = "tl_"
TOUCH_INTERVAL = timedelta(minutes=1)
API_KEYS_KEYSET = Keyset("api_keys", (ApiKey.created_at, ApiKey.id), descending=False)


def hash_key(raw: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(raw.encode()).hexdigest()


def looks_like_api_key(token: str) -> bool:
    """Whether a bearer token is an API key rather than a JWT."""
    return token.startswith(KEY_PREFIX)


def create_key(
    *,
    session: Session,
    project: Project,
    name: str,
    scopes: list[Scope],
    agent_id: uuid.UUID | None,
    created_by: uuid.UUID | None,
) -> tuple[ApiKey, str]:
    """Issue a key for ``project``; returns the row and the secret (the only time it exists)."""
    if agent_id is not None:
        agent = session.get(Agent, agent_id)
        if agent is None or agent.project_id != project.id:
            raise NotFoundError("Agent not found in this project.")
    ordered = sorted({Scope(s).value for s in scopes}, key=[s.value for s in Scope].index)
    for _attempt in range(5):
        prefix = secrets.token_hex(6)
        raw = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        key = ApiKey(
            project_id=project.id,
            agent_id=agent_id,
            created_by=created_by,
            name=name,
            prefix=prefix,
            key_hash=hash_key(raw),
            scopes=ordered,
        )
        try:
            with session.begin_nested():
                session.add(key)
                session.flush()
        except IntegrityError:  # pragma: no cover - a 48-bit prefix collision
            continue
        return key, raw
    raise RuntimeError("could not allocate a unique key prefix")  # pragma: no cover


def list_keys(
    *, session: Session, project_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[ApiKey], str | None]:
    """One page of the project's keys (revoked ones included), oldest first."""
    stmt = select(ApiKey).where(ApiKey.project_id == project_id)
    return paginate(
        session=session,
        stmt=stmt,
        keyset=API_KEYS_KEYSET,
        limit=limit,
        cursor=cursor,
        filters={"project_id": str(project_id)},
    )


def revoke_key(*, session: Session, project_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    """Revoke a key of the project (idempotent); it stops authenticating at once."""
    key = session.get(ApiKey, key_id)
    if key is None or key.project_id != project_id:
        raise NotFoundError("API key not found.")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key


def principal_from_key(*, session: Session, raw: str) -> tuple[Principal, bool]:
    """The principal of a presented key, and whether its ``last_used_at`` is due to be written
    (:func:`touch_key`); 401 for anything unknown, malformed or revoked. Only reads."""
    invalid = AuthenticationError("Invalid API key.")
    if not looks_like_api_key(raw):
        raise invalid
    parts = raw.split("_", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise invalid
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    if key is None or not hmac.compare_digest(key.key_hash, hash_key(raw)):
        raise invalid
    if key.revoked_at is not None:
        raise AuthenticationError("This API key has been revoked.")
    stale = key.last_used_at is None or utcnow() - key.last_used_at >= TOUCH_INTERVAL
    principal = Principal(
        kind=PrincipalKind.API_KEY,
        key_id=key.id,
        key_prefix=key.prefix,
        key_name=key.name,
        project_id=key.project_id,
        agent_id=key.agent_id,
        scopes=effective_scopes(key.scopes),
    )
    return principal, stale


def touch_key(*, session: Session, principal: Principal) -> None:
    """Record that the key of ``principal`` was just used, at most once per minute per key: the
    UPDATE is conditional, so concurrent requests on any replica write it once."""
    now = utcnow()
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == principal.key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - TOUCH_INTERVAL),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
