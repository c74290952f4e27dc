"""FastAPI dependencies as ``Annotated`` aliases, shared by every router."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from taskledger.api.state import AppState
from taskledger.metrics import Metrics
from taskledger.settings import Settings


def get_state(request: Request) -> AppState:
    """The :class:`AppState` of the app serving ``request``."""
    state: AppState = request.app.state.ledger
    return state


def get_session(state: Annotated[AppState, Depends(get_state)]) -> Iterator[Session]:
    """A session for one request; the route opens ``with session.begin():`` itself."""
    with state.session_factory() as session:
        yield session


def get_settings(state: Annotated[AppState, Depends(get_state)]) -> Settings:
    """The app's settings."""
    return state.settings


def get_metrics(state: Annotated[AppState, Depends(get_state)]) -> Metrics:
    """The app's metrics."""
    return state.metrics


StateDep = Annotated[AppState, Depends(get_state)]
SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
