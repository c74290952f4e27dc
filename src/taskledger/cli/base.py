"""The root Click group, the shared context object, and how errors become messages and exit codes.

Only Click and the standard library are imported here, and by every command module at import
time: ``taskledger --version`` and ``--help`` must answer at once, so the settings, the engine,
Rich and the engine's modules are imported by the commands that use them, when they run.

Errors reach the user one way, whatever the command: a line on standard error (``error: ...`` or
``refused: ...``), and, under ``--json``, an object on standard output as well::

    {"error": {"kind": "refused", "message": "...", "exit_code": 3}}
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from taskledger import __version__
from taskledger.errors import ErrorKind, TaskledgerError, ValidationFailed

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from taskledger.settings import Settings

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
#: Wide enough for any value: outside a terminal, tables are printed whole, never cut or wrapped.
UNLIMITED_WIDTH = 1_000_000

F = TypeVar("F", bound=Callable[..., Any])


class InvalidConfiguration(click.ClickException):
    """The settings cannot be used: one line naming the setting, exit code 2 (a usage error)."""

    exit_code = EXIT_USAGE

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class CliContext:
    """The settings (read on first use), the ``--json`` flag, and an engine built on first use.

    Args:
        settings: Settings to use instead of reading them from the environment.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.preset_settings = settings
        #: Set by ``--json`` as soon as it is parsed, so that an error is reported as JSON too.
        self.as_json = False
        self._console: Console | None = None
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None

    @property
    def settings(self) -> Settings:
        if self.preset_settings is None:
            self.preset_settings = load_settings()
        return self.preset_settings

    @property
    def console(self) -> Console:
        """Where tables go: standard output, at full width when it is not a terminal."""
        if self._console is None:
            from rich.console import Console

            console = Console()
            if not console.is_terminal:
                # A pipe or a CI log: Rich would assume 80 columns and cut values to fit.
                console = Console(width=UNLIMITED_WIDTH)
            self._console = console
        return self._console

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from taskledger.store.engine import make_engine

            self.settings.ensure_data_dir()
            self._engine = make_engine(
                self.settings.resolved_database_url,
                sqlite_busy_timeout_ms=self.settings.sqlite_busy_timeout_ms,
            )
        return self._engine

    def sessions(self) -> sessionmaker[Session]:
        """A session factory, once the database is known to be at the newest revision."""
        if self._sessions is None:
            from taskledger.store import migrate
            from taskledger.store.engine import make_session_factory

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


def load_settings() -> Settings:
    """The settings from the environment; an unusable value is an :class:`InvalidConfiguration`
    naming each setting at fault, one line each."""
    from pydantic import ValidationError

    from taskledger.settings import Settings, describe_errors

    try:
        return Settings()
    except ValidationError as exc:
        raise InvalidConfiguration(f"invalid configuration: {describe_errors(exc)}") from None


def error_message(exc: TaskledgerError) -> str:
    """The message of ``exc`` for people: a list of problems becomes ``where: what; ...``,
    never the repr of a list."""
    if isinstance(exc, ValidationFailed) and not isinstance(exc.detail, str):
        problems = []
        for item in exc.error_items():
            where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
            problems.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg")))
        return "; ".join(problems)
    return str(exc.detail)


def report_error(ctx: click.Context, kind: str, message: str, exit_code: int) -> None:
    """Report an error the documented way: a line on standard error and, under ``--json``, a
    JSON error object on standard output."""
    obj = ctx.find_object(CliContext)
    if obj is not None and obj.as_json:
        emit_json({"error": {"kind": kind, "message": message, "exit_code": exit_code}})
    click.echo(f"{'refused' if exit_code == EXIT_REFUSED else 'error'}: {message}", err=True)


def _is_database_error(exc: Exception) -> bool:
    # Only an error of a loaded module can have been raised: no need to import SQLAlchemy.
    exc_module = sys.modules.get("sqlalchemy.exc")
    return exc_module is not None and isinstance(exc, exc_module.SQLAlchemyError)


class LedgerGroup(click.Group):
    """A group that turns errors into a message (and, under ``--json``, a JSON error object) and
    the documented exit code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Kept for an error Click finds before --json is processed (an unknown option).
        ctx.meta["taskledger.args"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:  # a usage error, or settings that cannot be used
            obj = ctx.find_object(CliContext)
            flagged = obj is not None and obj.as_json
            if flagged or "--json" in ctx.meta.get("taskledger.args", ()):
                error = {"kind": "usage", "message": exc.format_message()}
                emit_json({"error": {**error, "exit_code": exc.exit_code}})
            raise  # Click prints the message on standard error, with the usage line if any
        except TaskledgerError as exc:
            code = EXIT_CODES[exc.kind]
            report_error(ctx, exc.kind.value, error_message(exc), code)
            sys.exit(code)
        except Exception as exc:
            if not _is_database_error(exc):
                raise
            message = f"database: {exc.__class__.__name__}: {exc.args[0] if exc.args else exc}"
            report_error(ctx, "database", message, EXIT_ERROR)
            sys.exit(EXIT_ERROR)


def progress_bar(enabled: bool) -> Progress:
    """The commands' progress bar, drawn on stderr only when ``enabled`` (a terminal, no JSON)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress(
        *Progress.get_default_columns()[:1],
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=True,
    )


def emit_json(data: Any) -> None:
    """Write ``data`` as JSON on stdout (the ``--json`` output of every command)."""
    import json

    click.echo(json.dumps(data, indent=2, default=str))


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    obj = ctx.find_object(CliContext)
    if obj is not None and value:
        obj.as_json = True
    return value


def json_option(command: F) -> F:
    """``--json``: print JSON, errors included. Eager, so that it is known before the other
    options are checked and a usage error is reported as JSON too."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        is_eager=True,
        callback=_remember_json,
        help='Print JSON (errors too, as {"error": {...}}).',
    )(command)


pass_ctx = click.make_pass_decorator(CliContext)


@click.group(cls=LedgerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="taskledger")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """taskledger: the durable record of AI-agent orchestration.

    Configuration comes from TASKLEDGER_* environment variables (see docs/configuration.md).
    """
    context = CliContext()
    ctx.obj = context
    ctx.call_on_close(context.close)
