"""``taskledger serve``: migrate (unless told not to), then serve the API and UI with uvicorn."""

from __future__ import annotations

import click
import uvicorn

from taskledger.api import create_app
from taskledger.cli.base import CliContext, pass_ctx
from taskledger.logs import configure_logging
from taskledger.store import migrate


@click.command()
@click.option("--host", default=None, help="Interface to bind (default: TASKLEDGER_HOST).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port to bind.")
@click.option("--no-migrate", is_flag=True, help="Do not upgrade the schema before serving.")
@pass_ctx
def serve(obj: CliContext, host: str | None, port: int | None, no_migrate: bool) -> None:
    """Run the taskledger server."""
    settings = obj.settings
    configure_logging(settings.log_format, settings.log_level)
    if not no_migrate:
        migrate.upgrade(obj.engine)
    app = create_app(settings, engine=obj.engine)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        proxy_headers=True,
    )
