"""The root Click group, the shared context object and the error-to-exit-code mapping."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from taskledger import __version__
from taskledger.errors import ErrorKind, TaskledgerError
from taskledger.settings import Settings
from taskledger.store import migrate
from taskledger.store.engine import make_engine, make_session_factory

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3

#: The exit code of each kind of error: a safeguard's refusal is 3, anything else 1.
EXIT_CODES: Mapping[ErrorKind, int] = {
    ErrorKind.INTERNAL: EXIT_ERROR,
    ErrorKind.NOT_FOUND: EXIT_ERROR,
    ErrorKind.CONFLICT: EXIT_ERROR,
    ErrorKind.INVALID: EXIT_ERROR,
    ErrorKind.BAD_REQUEST: EXIT_ERROR,
    ErrorKind.UNAUTHENTICATED: EXIT_ERROR,
    ErrorKind.FORBIDDEN: EXIT_ERROR,
    ErrorKind.REFUSED: EXIT_REFUSED,
    ErrorKind.THROTTLED: EXIT_REFUSED,
    ErrorKind.UNAVAILABLE: EXIT_ERROR,
}


@dataclass
class CliContext:
    """Settings, plus an engine built on first use."""

    settings: Settings
    console: Console = field(default_factory=lambda: Console(stderr=False))
    _engine: Engine | None = None
    _sessions: sessionmaker[Session] | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self.settings.ensure_data_dir()
            self._engine = make_engine(
                self.settings.resolved_database_url,
                sqlite_busy_timeout_ms=self.settings.sqlite_busy_timeout_ms,
            )
        return self._engine

    def sessions(self) -> sessionmaker[Session]:
        """A session factory, once the database is known to be at the newest revision."""
        if self._sessions is None:
            current, head = migrate.current_revision(self.engine), migrate.head_revision()
            if current != head:
                raise TaskledgerError(
                    f"the database is at revision {current or '(empty)'}, not {head}; "
                    "run `taskledger db upgrade` first"
                )
            self._sessions = make_session_factory(self.engine)
        return self._sessions

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class LedgerGroup(click.Group):
    """A group that turns taskledger errors into a message and the exit code of their kind."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TaskledgerError as exc:
            code = EXIT_CODES[exc.kind]
            click.echo(f"{'refused' if code == EXIT_REFUSED else 'error'}: {exc.detail}", err=True)
            sys.exit(code)
        except SQLAlchemyError as exc:
            click.echo(f"error: database: {exc.__class__.__name__}: {exc.args[0]}", err=True)
            sys.exit(EXIT_ERROR)


def progress_bar(enabled: bool) -> Progress:
    """The commands' progress bar, drawn on stderr only when ``enabled`` (a terminal, no JSON)."""
    return Progress(
        *Progress.get_default_columns()[:1],
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=True,
    )


def emit_json(data: Any) -> None:
    """Write ``data`` as JSON on stdout (the ``--json`` output of every command)."""
    click.echo(json.dumps(data, indent=2, default=str))


pass_ctx = click.make_pass_decorator(CliContext)


@click.group(cls=LedgerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="taskledger")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """taskledger: the durable record of AI-agent orchestration.

    Configuration comes from TASKLEDGER_* environment variables (see docs/configuration.md).
    """
    try:
        settings = Settings()
    except ValidationError as exc:
        raise click.UsageError(f"invalid configuration:\n{exc}") from exc
    context = CliContext(settings=settings)
    ctx.obj = context
    ctx.call_on_close(context.close)
