"""The web UI, served by the same server at ``/``: server-rendered pages (Jinja2) with htmx.

:func:`install_web` adds its routes, its static files and its error pages to an app built by
:func:`taskledger.api.create_app`. Views are thin: they call the services the API calls.
"""

from taskledger.web.app import install_web

__all__ = ["install_web"]
