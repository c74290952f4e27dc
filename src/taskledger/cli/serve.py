"""``taskledger serve``: migrate (unless told not to), then serve the API and UI with uvicorn."""

from __future__ import annotations

import click

from taskledger.cli.base import CliContext, json_option, pass_ctx


@click.command()
@click.option("--host", default=None, help="Interface to bind (default: TASKLEDGER_HOST).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port to bind.")
@click.option("--no-migrate", is_flag=True, help="Do not upgrade the schema before serving.")
@json_option
@pass_ctx
def serve(
    obj: CliContext, host: str | None, port: int | None, no_migrate: bool, as_json: bool
) -> None:
    """Run the taskledger server."""
    import uvicorn

    from taskledger.api import create_app
    from taskledger.logs import configure_logging
    from taskledger.services.bootstrap import check_initial_password_file
    from taskledger.store import migrate
    from taskledger.store.engine import make_session_factory

    settings = obj.settings
    configure_logging(settings.server.log_format, settings.server.log_level)
    if not no_migrate:
        migrate.upgrade(obj.engine)
    if migrate.current_revision(obj.engine) == migrate.head_revision():
        # What start-up would refuse, said here in one line rather than in uvicorn's traceback.
        check_initial_password_file(make_session_factory(obj.engine, read_only=True), settings)
    app = create_app(settings, engine=obj.engine)
    uvicorn.run(
        app,
        host=host or settings.server.host,
        port=port or settings.server.port,
        log_config=None,
        proxy_headers=True,
    )
