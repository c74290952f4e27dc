"""The pages, one module per page; :data:`MODULES` is what :func:`taskledger.web.install_web`
includes, in this order."""

from taskledger.web.views import agents, auth, keys, retention, rooms, runs, tasks, users

MODULES = (auth, runs, tasks, rooms, agents, retention, keys, users)
