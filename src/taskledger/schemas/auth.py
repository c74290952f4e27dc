"""Login and "who am I" responses."""

from __future__ import annotations

import uuid

from pydantic import BaseModel

from taskledger.schemas.users import UserRead


class Token(BaseModel):
    """An OAuth2 bearer token."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int


class KeyIdentity(BaseModel):
    """The API key a request authenticated with."""

    id: uuid.UUID
    name: str
    prefix: str
    project_id: uuid.UUID
    agent_id: uuid.UUID | None
    scopes: list[str]


class Me(BaseModel):
    """Who the caller is: a user, a project API key, or the admin key."""

    kind: str
    user: UserRead | None = None
    key: KeyIdentity | None = None
