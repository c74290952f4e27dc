"""The pages, one module per page; :data:`MODULES` is what :func:`taskledger.web.install_web`
includes, in this order."""

from taskledger.web.views import (
    agents,
    auth,
    keys,
    retention,
    retention_archives,
    retention_audit,
    retention_holds,
    rooms,
    runs,
    tasks,
    users,
)

#: The retention console's sub-pages: its audit log, holds and archives.
RETENTION_PAGES = (retention_audit, retention_holds, retention_archives)
MODULES = (auth, runs, tasks, rooms, agents, retention, *RETENTION_PAGES, keys, users)
