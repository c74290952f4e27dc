"""The error tree: drawn once, in the ``taskledger.errors`` docstring, and mapped once per face.

Every subclass of ``TaskledgerError`` anywhere in the package must appear in the drawing under
its first base, with its kind and its module, and every kind must have an HTTP status and an
exit code; so a new error class, or one that moves, cannot leave the drawing behind.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass

import pytest

import taskledger
from taskledger import errors
from taskledger.api.errors import HTTP_STATUS
from taskledger.cli.base import EXIT_CODES, EXIT_ERROR, EXIT_REFUSED
from taskledger.errors import ErrorKind, TaskledgerError

_ROW = re.compile(
    r"^(?P<prefix>[ │├└─]*)(?P<name>\w+)\s+(?P<kind>[A-Z_]+)\s+(?P<module>[\w.]+)\s+(?P<what>.+)$"
)


@dataclass(frozen=True)
class Drawn:
    name: str
    parent: str | None
    kind: str
    module: str
    what: str


def _import_everything() -> None:
    for module in pkgutil.walk_packages(taskledger.__path__, prefix="taskledger."):
        if module.name.startswith("taskledger.store.migrations"):
            continue  # Alembic's scripts run only inside a migration
        importlib.import_module(module.name)


def _subclasses(cls: type[TaskledgerError]) -> set[type[TaskledgerError]]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _drawing() -> dict[str, Drawn]:
    """The tree in the module docstring, by class name."""
    doc = errors.__doc__ or ""
    block = doc.split("::\n", 1)[1]
    lines = [line[4:] for line in block.splitlines()[1:]]
    lines = lines[1 : lines.index("")]  # after the column headings, up to the blank line
    drawn: dict[str, Drawn] = {}
    parents: list[str] = []
    for line in lines:
        row = _ROW.match(line)
        assert row, f"cannot read this line of the tree: {line!r}"
        depth = len(row["prefix"]) // 4
        parents[depth:] = [row["name"]]
        drawn[row["name"]] = Drawn(
            name=row["name"],
            parent=parents[depth - 1] if depth else None,
            kind=row["kind"],
            module=row["module"],
            what=row["what"],
        )
    return drawn


def test_the_tree_draws_every_error_class_where_it_is():
    _import_everything()
    drawn = _drawing()
    classes = {TaskledgerError, *_subclasses(TaskledgerError)}
    ours = {cls for cls in classes if cls.__module__.startswith("taskledger.")}
    assert {cls.__name__ for cls in ours} == set(drawn)
    for cls in ours:
        row = drawn[cls.__name__]
        assert row.module == cls.__module__.removeprefix("taskledger."), cls
        assert row.kind == cls.kind.name, cls
        first, *others = cls.__bases__
        assert row.parent == (None if cls is TaskledgerError else first.__name__), cls
        for other in others:
            assert f"also a {other.__name__}" in row.what, cls


def test_every_kind_has_a_status_and_an_exit_code():
    assert set(HTTP_STATUS) == set(ErrorKind)
    assert set(EXIT_CODES) == set(ErrorKind)


@pytest.mark.parametrize(
    ("kind", "status", "exit_code"),
    [
        (ErrorKind.INTERNAL, 500, EXIT_ERROR),
        (ErrorKind.NOT_FOUND, 404, EXIT_ERROR),
        (ErrorKind.CONFLICT, 409, EXIT_ERROR),
        (ErrorKind.INVALID, 422, EXIT_ERROR),
        (ErrorKind.BAD_REQUEST, 400, EXIT_ERROR),
        (ErrorKind.UNAUTHENTICATED, 401, EXIT_ERROR),
        (ErrorKind.FORBIDDEN, 403, EXIT_ERROR),
        (ErrorKind.REFUSED, 409, EXIT_REFUSED),
        (ErrorKind.THROTTLED, 429, EXIT_REFUSED),
        (ErrorKind.UNAVAILABLE, 503, EXIT_ERROR),
    ],
)
def test_each_kind_maps_to_its_documented_status_and_exit_code(kind, status, exit_code):
    # SPEC's statuses and docs/cli.md's exit codes; a refusal by a safeguard exits 3.
    assert HTTP_STATUS[kind] == status
    assert EXIT_CODES[kind] == exit_code


def test_the_cli_docs_name_every_kind_a_json_error_can_have():
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    listed = text[text.index("`kind` is one of") :].split("\n\n")[0]
    assert [kind.value for kind in ErrorKind if f"`{kind.value}`" not in listed] == []
