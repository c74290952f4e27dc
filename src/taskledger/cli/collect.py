"""``taskledger collect celery``: a long-running collector of Celery task events into runs.

Celery, kombu and the client are imported when the command runs, never by ``taskledger --help``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from taskledger.cli.base import CliContext, json_option, pass_ctx

if TYPE_CHECKING:
    from taskledger.client import Ledger

log = logging.getLogger("taskledger.collect.celery")


@click.group()
def collect() -> None:
    """Collect task history from other systems into runs."""


@collect.command("celery")
@click.option("--broker", required=True, help="The Celery broker URL (amqp://..., redis://...).")
@click.option("--project", required=True, help="The project the runs go to (its id or name).")
@click.option(
    "--url", envvar="TASKLEDGER_URL", required=True, help="The server (default TASKLEDGER_URL)."
)
@click.option(
    "--api-key",
    envvar="TASKLEDGER_API_KEY",
    required=True,
    help="A project API key with the write scope, or a user's token (default TASKLEDGER_API_KEY).",
)
@click.option(
    "--enable-events",
    is_flag=True,
    help="Send enable_events to the workers on start, and to any found sending no task events.",
)
@click.option(
    "--queue-expires",
    type=click.FloatRange(min=1),
    default=86400.0,
    show_default=True,
    help="Seconds the AMQP events queue outlives its last consumer (a restart within it loses "
    "nothing).",
)
@click.option(
    "--queue-name",
    default="taskledger-celery-events",
    show_default=True,
    help="The AMQP events queue; collectors sharing one name share its events.",
)
@click.option(
    "--exchange",
    default="celeryev",
    show_default=True,
    help="The events exchange (the workers' event_exchange setting).",
)
@click.option(
    "--redact",
    multiple=True,
    help="A field of the tasks' kwargs to leave out of inputs (repeatable, or comma-separated).",
)
@click.option(
    "--max-input-chars",
    type=click.IntRange(min=0),
    default=4096,
    show_default=True,
    help="The most characters of args and of kwargs kept in inputs.",
)
@click.option(
    "--result-backend",
    help="Celery's result backend URL: on start, runs still queued or running get the final "
    "state found there (what a Redis broker did not keep).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    help="Serve the counters on this port at /metrics.",
)
@click.option(
    "--spool-dir",
    type=click.Path(file_okay=False),
    help="Keep runs the server cannot take now in this directory, and send them later "
    "[default: $XDG_STATE_HOME/taskledger/celery/<project id>, ~/.local/state when unset].",
)
@click.option(
    "--no-spool",
    is_flag=True,
    help="Keep unsent runs in memory only (lost if the collector dies while the server is "
    "unreachable; on RabbitMQ their events are delivered again).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="The least important log records written.",
)
@json_option
@pass_ctx
def celery_cmd(
    obj: CliContext,
    broker: str,
    project: str,
    url: str,
    api_key: str,
    enable_events: bool,
    queue_expires: float,
    queue_name: str,
    exchange: str,
    redact: tuple[str, ...],
    max_input_chars: int,
    result_backend: str | None,
    metrics_port: int | None,
    spool_dir: str | None,
    no_spool: bool,
    log_level: str,
    as_json: bool,
) -> None:
    """Record Celery task events as runs and workers as agents, until SIGTERM or SIGINT.

    Logs go to standard error (JSON lines with --json); the counters are written on standard
    output when it ends.
    """
    from taskledger.client import Ledger
    from taskledger.logs import configure_logging

    # The collector needs none of the server's settings, but, like every command, it stops on
    # settings that cannot be used rather than run beside a misconfigured environment.
    obj.settings  # noqa: B018
    configure_logging("json" if as_json else "text", log_level.upper())
    try:
        from taskledger.integrations.celery.collector import (
            Collector,
            CollectorConfig,
            collector_ledger,
        )
        from taskledger.integrations.celery.mapping import MappingOptions
        from taskledger.integrations.celery.metrics import Counters, serve_metrics
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise click.ClickException(
            f"the Celery collector needs the celery extra: pip install 'taskledger[celery]' ({exc})"
        ) from None

    if no_spool and spool_dir:
        raise click.UsageError("--no-spool and --spool-dir exclude each other", None)
    project_id = _resolve_project(Ledger(url, api_key), project)
    names = frozenset(n.strip() for item in redact for n in item.split(",") if n.strip())
    config = CollectorConfig(
        broker=broker,
        queue_name=queue_name,
        queue_expires=queue_expires,
        exchange=exchange,
        enable_events=enable_events,
        result_backend=result_backend,
        options=MappingOptions(redact=names, max_input_chars=max_input_chars),
    )
    counters = Counters()
    spool = None if no_spool else (spool_dir or default_spool_dir(project_id))
    connect = collector_ledger(url, api_key, project_id, spool, config.interval, config.batch)
    try:
        collector = Collector(config, connect, counters)
    except OSError as exc:
        raise click.ClickException(f"cannot use the spool directory {spool}: {exc}") from None
    ledger = collector.ledger
    log.info("spooling unsent runs in %s", spool or "memory only", extra={"event": "spool"})
    metrics = serve_metrics(counters, metrics_port) if metrics_port is not None else None

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("stopping on %s", signal.Signals(signum).name, extra={"event": "stopping"})
        collector.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        collector.run(
            on_ready=lambda: log.info("collector ready", extra={"event": "ready"}),
        )
    finally:
        ledger.close()
        if metrics is not None:
            metrics.shutdown()
        snapshot = counters.snapshot()
        log.info("collector stopped", extra={"event": "stopped", "counters": snapshot})
        if as_json:
            click.echo(json.dumps({"counters": snapshot}))
        else:
            sys.stdout.write(counters.exposition())
            sys.stdout.flush()


def default_spool_dir(project_id: str) -> str:
    """Where the collector spools by default: a directory per project under the user's state
    directory (``$XDG_STATE_HOME``, else ``~/.local/state``)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local/state")
    return os.path.join(base, "taskledger", "celery", project_id)


def _resolve_project(ledger: Ledger, project: str) -> str:
    """The id of ``project`` (an id or a name), checked against the credentials."""
    from taskledger.client.errors import LedgerError

    try:
        with ledger:
            me = ledger.me()
            if me.key is not None:
                own = str(me.key.project_id)
                if project != own and ledger.projects.get(own).name != project:
                    raise click.UsageError(
                        f"the API key belongs to project {own}, not {project!r}", None
                    )
                return own
            for found in ledger.projects.iter():
                if project in (str(found.id), found.name):
                    return str(found.id)
    except LedgerError as exc:
        raise click.ClickException(f"taskledger at {ledger.url}: {exc}") from None
    raise click.UsageError(f"no project {project!r} for these credentials", None)
