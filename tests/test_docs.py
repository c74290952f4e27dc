"""The documentation keeps up with the code.

Every setting, CLI command and option, HTTP route and retention preset is documented where a
reader looks for it; nothing in ``docs/`` (or the README) names a module, a route, a setting, a
command or an option that does not exist; code blocks are closed; links between the pages lead
somewhere. Each test names what is missing or stale, so that fixing the docs is the whole fix.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from taskledger.cli import cli
from taskledger.retention.policy.rules import format_budget
from taskledger.settings import Settings
from taskledger.web.pages import PageRoute

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
#: Every page a reader gets: the docs and the README.
ALL_PAGES = [*PAGES, ROOT / "README.md"]
#: Environment variables the docs may name that are not settings of the product.
#: (The Python client reads TASKLEDGER_URL and TASKLEDGER_API_KEY; the server does not.)
OTHER_VARIABLES = {"TASKLEDGER_TEST_DATABASE_URL", "TASKLEDGER_URL", "TASKLEDGER_API_KEY"}


# --- reading Markdown -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeBlock:
    info: str
    text: str
    line: int


@dataclass(frozen=True)
class Page:
    path: Path
    prose: str  # the page with every fenced block blanked out, line numbers kept
    blocks: tuple[CodeBlock, ...]
    fence_problems: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    def code_spans(self) -> list[str]:
        """Inline code of the prose (a span may wrap onto the next line)."""
        return [" ".join(s.split()) for s in re.findall(r"(?<!`)`([^`]+)`(?!`)", self.prose)]

    def headings(self) -> list[tuple[int, str]]:
        return [
            (len(m.group(1)), m.group(2).strip())
            for m in re.finditer(r"^(#{1,6})\s+(.+)$", self.prose, re.MULTILINE)
        ]

    def sections(self, level: int = 2) -> dict[str, str]:
        """Each heading of ``level`` -> the prose under it, up to the next heading that level
        or higher."""
        lines = self.prose.splitlines()
        found: dict[str, str] = {}
        current: str | None = None
        body: list[str] = []
        for line in [*lines, "#" * level + " end"]:
            heading = re.match(r"^(#{1,6})\s+(.+)$", line)
            if heading and len(heading.group(1)) <= level:
                if current is not None:
                    found[current] = "\n".join(body)
                current = heading.group(2).strip() if len(heading.group(1)) == level else None
                body = []
            elif current is not None:
                body.append(line)
        return found


FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


@cache
def read_page(path: Path) -> Page:
    """Split a page into prose and fenced code blocks, as CommonMark does: a fence closes only
    on a line of the same fence characters, at least as many, and nothing else."""
    prose: list[str] = []
    blocks: list[CodeBlock] = []
    problems: list[str] = []
    fence: str | None = None
    info, start, body = "", 0, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence, info, start, body = match.group(1), match.group(2).strip(), number, []
                prose.append("")
            else:
                prose.append(line)
            continue
        prose.append("")
        closes = (
            match is not None
            and match.group(1)[0] == fence[0]
            and len(match.group(1)) >= len(fence)
            and not match.group(2).strip()
        )
        if closes:
            blocks.append(CodeBlock(info, "\n".join(body), start))
            fence = None
        else:
            if match and match.group(2).strip():
                problems.append(
                    f"line {number}: {line.strip()!r} opens a block inside the block of line "
                    f"{start}, which is not closed before it"
                )
            body.append(line)
    if fence is not None:
        problems.append(f"line {start}: the code block opened here is never closed")
    return Page(path, "\n".join(prose), tuple(blocks), tuple(problems))


def page(name: str) -> Page:
    return read_page(DOCS / name)


def all_pages() -> list[Page]:
    return [read_page(p) for p in ALL_PAGES]


def test_the_pages_exist() -> None:
    expected = {"api.md", "cli.md", "configuration.md", "retention.md", "migrating.md"}
    assert expected <= {p.name for p in PAGES}


@pytest.mark.parametrize("path", ALL_PAGES, ids=lambda p: p.name)
def test_code_blocks_are_closed(path: Path) -> None:
    assert read_page(path).fence_problems == ()


def test_the_fence_check_finds_an_unclosed_block(tmp_path: Path) -> None:
    broken = tmp_path / "broken.md"
    broken.write_text("# t\n\n```sh\ncurl x\n## Next\n\n```sh\ncurl y\n```\n")
    problems = read_page(broken).fence_problems
    assert len(problems) == 1 and "line 7" in problems[0] and "line 3" in problems[0]
    unclosed = tmp_path / "unclosed.md"
    unclosed.write_text("```\nx\n")
    assert read_page(unclosed).fence_problems == (
        "line 1: the code block opened here is never closed",
    )


# --- settings -------------------------------------------------------------------------------------


def _env_names(name: str, info: FieldInfo, prefix: str) -> list[str]:
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        names = [c for c in alias.choices if isinstance(c, str) and c.isupper()]
        if names:
            return names
    elif isinstance(alias, str) and alias.isupper():
        return [alias]
    return [f"{prefix}{name}".upper()]


def _settings_fields(
    model: type[BaseModel] = Settings, prefix: str = "TASKLEDGER_"
) -> Iterator[tuple[str, FieldInfo, list[str]]]:
    """Every leaf setting: its dotted name, its field and its environment names. A section (a
    subsystem's settings, read from the environment on its own) is walked with its own prefix."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            section_prefix = str(annotation.model_config.get("env_prefix", ""))
            for sub, sub_info, envs in _settings_fields(annotation, section_prefix):
                yield f"{name}.{sub}", sub_info, envs
        else:
            yield name, info, _env_names(name, info, prefix)


def _configuration_rows() -> dict[str, list[str]]:
    """The rows of configuration.md's tables, by the variable in their first cell."""
    rows = {}
    for line in page("configuration.md").prose.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        first = re.fullmatch(r"`(TASKLEDGER_\w+)`", cells[0]) if line.startswith("|") else None
        if first:
            rows[first.group(1)] = cells[1:]
    return rows


def test_every_setting_is_documented() -> None:
    text = page("configuration.md").prose
    rows = _configuration_rows()
    missing = [
        env
        for _, _, envs in _settings_fields()
        for env in envs
        if f"`{env}`" not in text or (env.startswith("TASKLEDGER_") and env not in rows)
    ]
    assert missing == [], "document these in docs/configuration.md"


def test_every_setting_has_a_description() -> None:
    assert [n for n, f, _ in _settings_fields() if not f.description] == []


def _shown(default: Any) -> str | None:
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float):
        return f"{default:g}"
    if isinstance(default, int | str):
        return str(default)
    if isinstance(default, Path):
        return default.as_posix()
    return None  # None and secrets: the page says what unset means


def test_documented_defaults_are_the_real_ones() -> None:
    rows = _configuration_rows()
    wrong = []
    for _, info, envs in _settings_fields():
        shown = _shown(info.default)
        row = rows.get(envs[0])
        if shown is not None and row is not None and shown not in row[0]:
            wrong.append(f"{envs[0]}: the page says {row[0]}, the default is {shown}")
    assert wrong == []


def test_no_page_names_a_setting_that_does_not_exist() -> None:
    real = {env for _, _, envs in _settings_fields() for env in envs} | OTHER_VARIABLES
    stale = {
        f"{p.name}: {name}"
        for p in all_pages()
        for name in re.findall(r"\bTASKLEDGER_[A-Z0-9_]*[A-Z0-9]", p.path.read_text())
        if name not in real
    }
    assert sorted(stale) == []


# --- the command line -----------------------------------------------------------------------------


def _subcommands(group: click.Group) -> dict[str, click.Command]:
    ctx = click.Context(group)
    found = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is not None and not command.hidden:
            found[name] = command
    return found


def _commands(
    group: click.Group = cli, prefix: str = "taskledger"
) -> Iterator[tuple[str, click.Command]]:
    """Every command, groups included, with its path (``taskledger retention run``)."""
    yield prefix, group
    for name, command in _subcommands(group).items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command


def _options(command: click.Command) -> list[click.Option]:
    return [
        p
        for p in command.params
        if isinstance(p, click.Option) and not p.hidden and "--help" not in p.opts
    ]


def _mentions(text: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


def _cli_sections() -> dict[str, str]:
    sections = {}
    for heading, body in page("cli.md").sections().items():
        name = re.fullmatch(r"`(taskledger[\w -]*)`", heading)
        if name:
            sections[name.group(1)] = body
    return sections


def test_every_command_is_documented() -> None:
    sections = _cli_sections()
    paths = [p for p, c in _commands() if not isinstance(c, click.Group)]
    assert "taskledger serve" in paths
    assert [p for p in paths if p not in sections] == [], "give each a `## `...`` section"


def test_every_option_is_documented() -> None:
    sections = _cli_sections()
    intro = page("cli.md").prose.split("\n## ", 1)[0]
    missing = []
    for path, command in _commands():
        text = sections.get(path, intro if path == "taskledger" else "")
        for option in _options(command):
            flags = [*option.opts, *option.secondary_opts]
            if not any(_mentions(text, flag) for flag in flags):
                missing.append(f"{path} {flags[0]}")
    assert missing == [], "document these options in their section of docs/cli.md"


def test_documented_options_exist() -> None:
    """In a command's section, an option written on its own (`--yes`, `--host HOST`) is one of
    that command's."""
    commands = dict(_commands())
    stale = []
    for path, body in _cli_sections().items():
        command = commands.get(path)
        if command is None:
            stale.append(f"a section for {path}, which is not a command")
            continue
        known = {flag for o in _options(command) for flag in (*o.opts, *o.secondary_opts)}
        for span in re.findall(r"(?<!`)`(--?[a-z][\w-]*)[^`]*`", body):
            if span not in known:
                stale.append(f"{path}: {span}")
    assert stale == []


_SHELL_BREAK = re.compile(r"^(\|\|?|&&?|;|\d?>.*|<.*|\))$")


@dataclass(frozen=True)
class Invocation:
    where: str
    words: tuple[str, ...]


def _invocations(text: str, where: str, *, usage: bool = False) -> Iterator[Invocation]:
    """Each ``taskledger ...`` (or ``.venv/bin/taskledger``, ``python -m taskledger``) in
    ``text``, with the words that follow it up to the end of the shell command. In a usage line
    (``usage``), ``|`` separates alternatives rather than commands."""
    text = re.sub(r"\\\n", " ", text)
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            words = shlex.split(line, comments=True, posix=True)
        except ValueError:
            words = line.split()
        for i, word in enumerate(words):
            if word.rsplit("/", 1)[-1] != "taskledger":
                continue
            rest: list[str] = []
            for following in words[i + 1 :]:
                if _SHELL_BREAK.match(following) and not (usage and following == "|"):
                    break
                rest.append(following)
            if rest and ("=" in rest[0] and not rest[0].startswith("-")):
                continue  # a crontab's user column, then the environment of the command
            yield Invocation(f"{where}, line {number}", tuple(rest))


def _check(invocation: Invocation) -> str | None:
    command: click.Command = cli
    path = "taskledger"
    words = list(invocation.words)
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        sub = _subcommands(command).get(words[0])
        if sub is None:
            if not re.fullmatch(r"[a-z][a-z-]*", words[0]):
                return None  # prose such as `taskledger` followed by a placeholder
            return f"{invocation.where}: `{path} {words[0]}` is not a command"
        command, path = sub, f"{path} {words.pop(0)}"
    known = {flag for o in _options(command) for flag in (*o.opts, *o.secondary_opts)}
    known |= {"--help", "-h"}
    for word in words:
        for flag in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", word.split("=", 1)[0]):
            if word.startswith(("-", "[", "(")) and flag not in known:
                return f"{invocation.where}: `{path}` has no option {flag}"
    return None


#: Code blocks whose lines may run taskledger: shell, crontabs, systemd units, CI workflows.
_SHELLISH = ([], ["sh"], ["bash"], ["shell"], ["console"], ["cron"], ["ini"], ["yaml"], ["yml"])


def _all_invocations() -> Iterator[Invocation]:
    for p in all_pages():
        for block in p.blocks:
            if block.info.split()[:1] in _SHELLISH:
                yield from _invocations(block.text, f"{p.name}, block at line {block.line}")
        for span in p.code_spans():
            if re.match(r"(\S*/)?taskledger\s+\S", span):
                yield from _invocations(span, f"{p.name}, `{span}`", usage=True)


def test_commands_in_the_docs_exist() -> None:
    invocations = list(_all_invocations())
    assert len(invocations) > 50, "the scan found too few commands: has the page format changed?"
    assert [problem for i in invocations if (problem := _check(i))] == []


def test_the_command_check_catches_mistakes() -> None:
    def check(line: str) -> str | None:
        found = list(_invocations(line, "here", usage="|" in line and ">" not in line))
        assert len(found) == 1, found
        return _check(found[0])

    assert check("taskledger retention run --preset ops --yes --json") is None
    assert check("taskledger retention run --preset ops --yse") is not None
    assert check("taskledger retension run") is not None
    assert check("printf x | .venv/bin/taskledger users create --email a --password-stdin") is None
    assert check("taskledger holds add --scope run --id 1 --reason x > out.json") is None
    assert check("taskledger keys create --project NAME|ID [--agent AGENT_ID] [--jsn]") is not None
    assert check("taskledger retention preview [--preset NAME | --polcy FILE]") is not None


# --- the HTTP API ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    from taskledger.api import create_app

    settings = Settings(data_dir=tmp_path_factory.mktemp("docs-app"))
    return create_app(settings, schedule=False)


def _normal(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def _routes(app: FastAPI, *, pages: bool = False) -> set[tuple[str, str]]:
    """The API's routes (documented in api.md), or with ``pages`` the web UI's (in ui.md)."""
    found = set()
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, PageRoute) != pages:
            continue
        for method in route.methods or ():
            if method not in ("HEAD", "OPTIONS") and route.path_format:
                found.add((method, _normal(route.path_format)))
    if pages:
        assert len(found) > 8, "no pages found: has the router API changed?"
        return found
    for path, operations in app.openapi()["paths"].items():
        found |= {(method.upper(), _normal(path)) for method in operations}
    assert len(found) > 40, "the route table looks empty: has the router API changed?"
    return found


_ROUTE_MENTION = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s?]*)(?:\?[^`]*)?`")


def test_every_route_is_documented(app: FastAPI) -> None:
    documented = {(m, _normal(p)) for m, p in _ROUTE_MENTION.findall(page("api.md").prose)}
    missing = sorted(f"{m} {p}" for m, p in _routes(app) - documented)
    assert missing == [], "document these routes in docs/api.md"


def test_every_page_is_documented(app: FastAPI) -> None:
    documented = {(m, _normal(p)) for m, p in _ROUTE_MENTION.findall(page("ui.md").prose)}
    missing = sorted(f"{m} {p}" for m, p in _routes(app, pages=True) - documented)
    assert missing == [], "document these pages in docs/ui.md"


def test_documented_routes_exist(app: FastAPI) -> None:
    routes = _routes(app) | _routes(app, pages=True)
    stale = sorted(
        {
            f"{p.name}: {method} {path}"
            for p in all_pages()
            for method, path in _ROUTE_MENTION.findall(p.prose)
            if (method, _normal(path)) not in routes
        }
    )
    assert stale == []


# --- retention presets ----------------------------------------------------------------------------


def _presets() -> dict[str, Any]:
    """The built-in policies, wherever the retention package keeps them."""
    for name in ("taskledger.retention.policy.presets", "taskledger.retention.policy"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "PRESETS"):
            return dict(module.PRESETS)
    raise AssertionError("no PRESETS in taskledger.retention.policy")


def _age(shown: str) -> timedelta | None:
    """``90 d`` or ``24 h`` as a duration."""
    match = re.fullmatch(r"(\d+) ([dh])", shown)
    if match is None:
        return None
    return timedelta(**{{"d": "days", "h": "hours"}[match.group(2)]: int(match.group(1))})


def _table(section: str, first_header: str) -> list[dict[str, str]]:
    """The Markdown table of ``section`` whose first header cell is ``first_header``."""
    tables: list[list[list[str]]] = []
    previous_was_row = False
    for line in section.splitlines():
        is_row = line.startswith("|")
        if is_row:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not previous_was_row:
                tables.append([cells])
            elif not set("".join(cells)) <= set("-: "):
                tables[-1].append(cells)
        previous_was_row = is_row
    for header, *rows in tables:
        if header[0] == first_header:
            return [dict(zip(header, row, strict=True)) for row in rows]
    raise AssertionError(f"no table headed {first_header!r}")


def test_every_preset_is_documented() -> None:
    section = page("retention.md").sections()["Presets"]
    presets = _presets()
    assert set(presets) >= {"default", "development", "scientific", "ops"}
    rules = {row["rule"].strip("`"): row for row in _table(section, "rule")}
    settings = {row["setting"].strip("`"): row for row in _table(section, "setting")}
    wrong = []
    for name, policy in presets.items():
        column = f"`{name}`"
        if column not in next(iter(rules.values())):
            wrong.append(f"no column for preset {name} in the rules table")
            continue
        if not re.search(rf"\*\*{re.escape(name)}\*\*", section):
            wrong.append(f"no note on preset {name}")
        for rule in policy.rules:
            row = rules.get(rule.name)
            if row is None:
                wrong.append(f"{name}: no row for rule {rule.name}")
                continue
            if _age(row[column]) != rule.older_than:
                wrong.append(f"{name} {rule.name}: {row[column]}, not {rule.older_than}")
            if row["table"] != rule.table or row["action"] != rule.action:
                wrong.append(f"{rule.name}: {row['table']} {row['action']}")
        in_preset = {r.name for r in policy.rules}
        for rule_name, row in rules.items():
            if rule_name not in in_preset and row[column] not in ("—", "kept"):
                wrong.append(f"{name}: {rule_name} is documented, but not in the preset")
        for key in ("batch_size", "max_rows_per_run", "max_table_fraction"):
            shown = settings[key][column].replace(",", "")
            if float(shown) != float(getattr(policy, key)):
                wrong.append(f"{name} {key}: {shown}, not {getattr(policy, key)}")
        budget = settings["batch_time_budget"][column]
        if budget != format_budget(policy.batch_time_budget):
            wrong.append(f"{name} batch_time_budget: {budget}, not {policy.batch_time_budget}")
    assert wrong == []


def test_the_preset_choices_are_the_presets() -> None:
    commands = dict(_commands())
    options = _options(commands["taskledger retention preview"])
    preset = next(o for o in options if "--preset" in o.opts)
    assert isinstance(preset.type, click.Choice)
    assert set(preset.type.choices) == set(_presets())


# --- module paths ---------------------------------------------------------------------------------

#: ``src/taskledger/x/y.py``, ``taskledger/x/``: paths in the package.
_PACKAGE_PATH = re.compile(r"(?<![\w./<>-])((?:src/)?taskledger/[\w/]*\w(?:\.py|/)?)")
#: ``retention/executor.py``, ``executor.py``, ``tests/conftest.py``: Python files.
_PY_PATH = re.compile(r"(?<![\w./<>-])([\w/]*\w\.py)\b")
#: ``taskledger.store.engine``: dotted modules (``taskledger.db``, the database file, is not one).
_DOTTED = re.compile(r"(?<![\w./-])(taskledger(?:\.[A-Za-z_]\w*)+)")
_NOT_MODULES = {"db"}
_SKIP_DIRS = {"__pycache__"}


@cache
def _tree() -> tuple[str, ...]:
    """The project's files and directories (not build output or caches), relative to the root."""
    found = [p.name + ("/" if p.is_dir() else "") for p in ROOT.iterdir()]
    for top in ("src", "tests", "bench", "docs", "scripts"):
        for path in (ROOT / top).rglob("*"):
            parts = path.relative_to(ROOT).parts
            if any(part in _SKIP_DIRS or part.endswith(".egg-info") for part in parts):
                continue
            found.append(path.relative_to(ROOT).as_posix() + ("/" if path.is_dir() else ""))
    return tuple(found)


def _exists(reference: str) -> bool:
    """A path relative to the repository, ``src/``, ``src/taskledger/``, or the end of a path
    that exists (``retention/executor.py`` in ``src/taskledger/retention/executor.py``)."""
    want = reference.rstrip("/")
    is_dir = reference.endswith("/")
    for entry in _tree():
        name = entry.rstrip("/")
        if is_dir and not entry.endswith("/"):
            continue
        if name == want or name.endswith("/" + want):
            return True
    return False


def _package_path_exists(reference: str) -> bool:
    relative = reference.removeprefix("src/")
    return (ROOT / "src" / relative).exists()


def _module_exists(dotted: str) -> bool:
    parts = dotted.split(".")
    if parts[-1] in _NOT_MODULES and len(parts) == 2:
        return True
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            continue
        value: ModuleType | Any = importlib.import_module(name)
        for attribute in parts[cut:]:
            if not hasattr(value, attribute):
                return False
            value = getattr(value, attribute)
        return True
    return False


def _stale_paths(text: str, spans: list[str]) -> list[str]:
    stale = [m for m in _PACKAGE_PATH.findall(text) if not _package_path_exists(m)]
    stale += [m for m in _PY_PATH.findall(text) if not _exists(m)]
    stale += [m for m in _DOTTED.findall(text) if not _module_exists(m)]
    # A directory in inline code: `store/`, `web/` (not a URL path such as `/docs/assets/`).
    stale += [s for s in spans if re.fullmatch(r"\w[\w/]*/", s) and not _exists(s)]
    return sorted(set(stale))


@pytest.mark.parametrize("path", ALL_PAGES, ids=lambda p: p.name)
def test_module_paths_exist(path: Path) -> None:
    p = read_page(path)
    text = "\n".join([p.prose, *(b.text for b in p.blocks)])
    assert _stale_paths(text, p.code_spans()) == []


def test_the_path_check_catches_stale_paths() -> None:
    assert _stale_paths("see `store/engine.py`, `src/taskledger/cli/base.py`", []) == []
    assert _stale_paths("tests/conftest.py and `conftest.py`", []) == []
    assert _stale_paths("`taskledger/web/views.py`", []) == ["taskledger/web/views.py"]
    assert _stale_paths("src/taskledger/nowhere.py", []) == ["src/taskledger/nowhere.py"]
    assert _stale_paths("`retention/nowhere.py`", []) == ["retention/nowhere.py"]
    assert _stale_paths("the `taskledger.nowhere` package", []) == ["taskledger.nowhere"]
    assert _stale_paths("", ["nowhere/"]) == ["nowhere/"]
    assert _stale_paths("`taskledger.store.engine.make_engine` in `store/`", ["store/"]) == []
    assert _stale_paths("`.taskledger/secret_key`, /etc/taskledger/env, taskledger.db", []) == []


# --- links between pages --------------------------------------------------------------------------


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_links_between_pages_resolve() -> None:
    broken = []
    for p in all_pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", p.prose):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            file, _, anchor = target.partition("#")
            linked = (p.path.parent / file).resolve() if file else p.path
            if not linked.exists():
                broken.append(f"{p.name}: {target}")
            elif anchor and linked.suffix == ".md":
                anchors = {_anchor(h) for _, h in read_page(linked).headings()}
                if anchor not in anchors:
                    broken.append(f"{p.name}: {target}")
    assert broken == []


# --- what the API itself tells a reader -----------------------------------------------------------


def test_the_seed_routes_401_points_to_a_page_that_says_it() -> None:
    """The 401 of /agents/tasks names a docs page, and a command, that exist; the page quotes
    the message as it is."""
    from taskledger.api.compat import KEY_GUIDANCE

    pages = re.findall(r"docs/[\w-]+\.md", KEY_GUIDANCE)
    assert pages == ["docs/migrating.md"]
    assert (ROOT / pages[0]).exists()
    invocations = list(_invocations(KEY_GUIDANCE.replace("`", "\n"), "KEY_GUIDANCE"))
    assert invocations and [p for i in invocations if (p := _check(i))] == []
    quoted = " ".join(
        " ".join(b.text.split()) for b in page("migrating.md").blocks if b.info == "json"
    )
    assert " ".join(KEY_GUIDANCE.split()) in quoted
