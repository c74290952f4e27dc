"""taskledger: the durable record of AI-agent orchestration and the governor of its lifecycle.

The public names below are the supported Python surface; everything else is internal.
"""

from taskledger.errors import TaskledgerError
from taskledger.settings import Settings

__version__ = "0.1.0"

__all__ = ["Settings", "TaskledgerError", "__version__"]
