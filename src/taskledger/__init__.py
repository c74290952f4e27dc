"""taskledger: the durable record of AI-agent orchestration and the governor of its lifecycle.

The public names below are the supported Python surface; everything else is internal.
``Settings`` is imported on first use (PEP 562), so that ``import taskledger`` (and with it the
command line's ``--version`` and ``--help``) does not load pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskledger.errors import TaskledgerError

if TYPE_CHECKING:
    from taskledger.settings import Settings

__version__ = "0.1.0"

__all__ = ["Settings", "TaskledgerError", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Settings":
        from taskledger.settings import Settings

        return Settings
    raise AttributeError(f"module 'taskledger' has no attribute {name!r}")
