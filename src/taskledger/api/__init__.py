"""The HTTP API: ``create_app(settings)`` builds a FastAPI app with its own engine and metrics."""

from taskledger.api.app import create_app

__all__ = ["create_app"]
