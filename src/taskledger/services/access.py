"""Access decisions, in one place: who may see and change what (SPEC section 3).

A :class:`Principal` is who is calling: a user (logged in with a JWT), a project API key, or the
admin key. Routes resolve it once (``PrincipalDep``) and ask this module. The rules:

- Superusers may do everything. A project's owner may do everything in that project.
- An API key acts in its own project only, with its scopes: ``read`` (GET), ``write`` (also
  create, update and delete records), ``admin`` (also manage the project's keys). Each scope
  includes the ones before it.
- The admin key is accepted on admin routes (retention, holds, restore, stats) and nowhere else.
- A resource of a project the caller cannot see answers 404, so its existence is not revealed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import Select, false, select
from sqlalchemy.orm import Session

from taskledger.enums import Scope
from taskledger.errors import NotFoundError, PermissionDenied, ValidationFailed
from taskledger.store.models import Project

_IMPLIED: dict[Scope, frozenset[Scope]] = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.WRITE: frozenset({Scope.READ, Scope.WRITE}),
    Scope.ADMIN: frozenset({Scope.READ, Scope.WRITE, Scope.ADMIN}),
}


class PrincipalKind(StrEnum):
    USER = "user"
    API_KEY = "api_key"
    ADMIN_KEY = "admin_key"


def effective_scopes(scopes: list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[Scope]:
    """The scopes a key really has: each scope includes the ones below it."""
    result: set[Scope] = set()
    for scope in scopes:
        result |= _IMPLIED.get(Scope(scope), frozenset())
    return frozenset(result)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request (plain values, detached from any session)."""

    kind: PrincipalKind
    user_id: uuid.UUID | None = None
    email: str | None = None
    is_superuser: bool = False
    key_id: uuid.UUID | None = None
    key_prefix: str | None = None
    key_name: str | None = None
    project_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    scopes: frozenset[Scope] = field(default_factory=frozenset)

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        if self.kind is PrincipalKind.USER:
            return f"user:{self.email}"
        if self.kind is PrincipalKind.API_KEY:
            return f"key:{self.key_prefix}"
        return "admin-key"

    @property
    def is_user(self) -> bool:
        return self.kind is PrincipalKind.USER


ADMIN_KEY_PRINCIPAL = Principal(kind=PrincipalKind.ADMIN_KEY)
ADMIN_KEY_ONLY = "The admin key is accepted on admin routes only."


def require_user(principal: Principal) -> None:
    """Only a logged-in user (not a key) may do this."""
    if not principal.is_user:
        raise PermissionDenied("This needs a user login, not an API key.")


def require_superuser(principal: Principal) -> None:
    """Only a superuser may do this."""
    if not (principal.is_user and principal.is_superuser):
        raise PermissionDenied("This needs a superuser.")


def require_admin(principal: Principal) -> None:
    """Admin routes (retention, holds, restore, stats): a superuser or the admin key."""
    if principal.kind is PrincipalKind.ADMIN_KEY:
        return
    if principal.is_user and principal.is_superuser:
        return
    raise PermissionDenied("This needs a superuser or the admin key.")


def can_see_project(principal: Principal, project: Project) -> bool:
    """Whether the caller may know that ``project`` exists."""
    if principal.is_user:
        return principal.is_superuser or project.owner_id == principal.user_id
    if principal.kind is PrincipalKind.API_KEY:
        return project.id == principal.project_id
    return False


def require_project_access(principal: Principal, project: Project, need: Scope) -> None:
    """Allow ``need`` on ``project`` or raise: 404 when the project is not the caller's to see,
    403 when it is but the key's scopes fall short."""
    if principal.kind is PrincipalKind.ADMIN_KEY:
        raise PermissionDenied(ADMIN_KEY_ONLY)
    if not can_see_project(principal, project):
        raise NotFoundError("Project not found.")
    if principal.kind is PrincipalKind.API_KEY and need not in principal.scopes:
        raise PermissionDenied(f"This API key lacks the '{need.value}' scope.")


def require_project_owner(principal: Principal, project: Project) -> None:
    """Changing or deleting the project itself: its owner or a superuser."""
    require_project_access(principal, project, Scope.ADMIN)
    if not principal.is_user:
        raise PermissionDenied("Only the project's owner or a superuser may change the project.")


def get_project_for(
    *, session: Session, principal: Principal, project_id: uuid.UUID, need: Scope
) -> Project:
    """Load ``project_id`` if the caller may do ``need`` there (else 404 / 403)."""
    if principal.kind is PrincipalKind.ADMIN_KEY:
        raise PermissionDenied(ADMIN_KEY_ONLY)
    project = session.get(Project, project_id)
    if project is None:
        raise NotFoundError("Project not found.")
    require_project_access(principal, project, need)
    return project


def resolve_project(
    *, session: Session, principal: Principal, project_id: uuid.UUID | None, need: Scope
) -> Project:
    """The project a request acts in: the key's own, or ``project_id`` for a user.

    Raises:
        ValidationFailed: a user gave no ``project_id``.
        NotFoundError: the project does not exist or is not the caller's to see.
        PermissionDenied: the key lacks ``need``, or the caller is the admin key.
    """
    if principal.kind is PrincipalKind.ADMIN_KEY:
        raise PermissionDenied(ADMIN_KEY_ONLY)
    if principal.kind is PrincipalKind.API_KEY:
        if project_id is not None and project_id != principal.project_id:
            raise NotFoundError("Project not found.")
        project_id = principal.project_id
    if project_id is None:
        raise ValidationFailed("project_id is required when calling as a user.")
    return get_project_for(session=session, principal=principal, project_id=project_id, need=need)


def visible_projects(principal: Principal) -> Select[Project]:
    """A query for the projects the caller may see."""
    stmt = select(Project)
    if principal.is_user and principal.is_superuser:
        return stmt
    if principal.is_user:
        return stmt.where(Project.owner_id == principal.user_id)
    if principal.kind is PrincipalKind.API_KEY:
        return stmt.where(Project.id == principal.project_id)
    return stmt.where(false())  # the admin key sees no projects
