"""Runtime settings, read from ``TASKLEDGER_*`` environment variables (and ``.env``).

Every field carries a description; ``docs/configuration.md`` documents each one and a test keeps
the two in step. Build a :class:`Settings` once at the edge (CLI, server start, test fixture) and
pass it down: nothing in taskledger reads the environment on its own.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from croniter import croniter
from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The gzip level of archive parts unless ``TASKLEDGER_ARCHIVE_GZIP_LEVEL`` says otherwise.
DEFAULT_GZIP_LEVEL = 6
#: Password checks one process runs at once, and how long one waits for its turn, by default.
DEFAULT_PASSWORD_CHECK_CONCURRENCY = 2
DEFAULT_PASSWORD_CHECK_WAIT_SECONDS = 5.0
#: How long a retention plan can be executed after its preview (seconds) unless configured.
DEFAULT_PLAN_TTL = 3600
#: The database URL schemes taskledger runs on, and the driver each one means.
DATABASE_SCHEMES = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}
#: The two names of the admin key, in the order they win when both are set.
ADMIN_KEY_VARIABLES = ("TASKLEDGER_ADMIN_API_KEY", "ADMIN_API_KEY")


class _Section(BaseSettings):
    """A group of settings read from the environment under their documented flat names."""

    model_config = SettingsConfigDict(
        env_prefix="TASKLEDGER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        # A value in error may be a secret (a database URL with its password, a key).
        hide_input_in_errors=True,
    )


class ServerSettings(_Section):
    """`taskledger serve`: where it listens, and its logs."""

    host: str = Field(default="127.0.0.1", description="Interface `taskledger serve` binds to.")
    port: int = Field(
        default=8000, ge=1, le=65535, description="TCP port `taskledger serve` binds to."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log line format: `text` for people, `json` for log pipelines."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Minimum level of log records that are written."
    )


class AuthSettings(_Section):
    """Identity and access: tokens, the admin key, login throttling, password checks."""

    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "JWT signing secret. Unset means one is generated on first start and kept in "
            "`<data_dir>/secret_key` (mode 0600). Set it explicitly when replicas run on "
            "several machines, so that they all accept each other's tokens."
        ),
    )
    admin_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("TASKLEDGER_ADMIN_API_KEY", "ADMIN_API_KEY", "admin_api_key"),
        description=(
            "Key accepted in the `X-Admin-Key` header for admin routes. Also read from "
            "`ADMIN_API_KEY`; when both are set, this one wins (and a warning is logged at "
            "start if they differ). Unset means every admin-key request is refused with 403."
        ),
    )
    jwt_expire_minutes: int = Field(
        default=60,
        ge=1,
        le=60 * 24 * 30,
        description="Lifetime of the tokens issued by `POST /api/v1/auth/token`, in minutes.",
    )
    web_session_minutes: int = Field(
        default=720,
        ge=5,
        le=60 * 24 * 30,
        description=(
            "Lifetime of a web UI login, in minutes: the session cookie and its server-side "
            "record expire together, and logging out ends the session at once."
        ),
    )
    login_max_failures_per_account: int = Field(
        default=5,
        ge=1,
        le=1000,
        description=(
            "Failed logins allowed for one account (the email as typed, known or not) within "
            "the login window, across all replicas; the next attempt gets 429 with Retry-After "
            "and no password check."
        ),
    )
    login_max_failures_per_address: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description=(
            "Failed logins allowed from one client address within the login window, across "
            "all replicas and accounts; the next attempt gets 429 with Retry-After."
        ),
    )
    login_window_seconds: int = Field(
        default=900,
        ge=1,
        le=86_400,
        description="Length of the login throttle's sliding window, in seconds.",
    )
    password_check_concurrency: int = Field(
        default=DEFAULT_PASSWORD_CHECK_CONCURRENCY,
        ge=1,
        le=64,
        description=(
            "Password hashes and verifications (argon2id, 64 MiB each) that may run at once in "
            "one process; the rest wait for a slot."
        ),
    )
    password_check_wait_seconds: float = Field(
        default=DEFAULT_PASSWORD_CHECK_WAIT_SECONDS,
        gt=0,
        le=60,
        description=(
            "How long a login (or password change) waits for a password-check slot before it "
            "gets 503 with Retry-After."
        ),
    )


class RetentionSettings(_Section):
    """The retention engine: the policy in force and its safeguards."""

    model_config = SettingsConfigDict(env_prefix="TASKLEDGER_RETENTION_")

    policy: str = Field(
        default="default",
        min_length=1,
        description=(
            "The policy in force: a preset name (`default`, `development`, `scientific`, `ops`) "
            "or the path of a TOML policy file."
        ),
    )
    dry_run_only: bool = Field(
        default=False,
        description=(
            "Turn every retention execution into a preview (still audited): a safe mode for "
            "trying a policy on a live system."
        ),
    )
    plan_ttl: int = Field(
        default=DEFAULT_PLAN_TTL,
        ge=60,
        le=7 * 86_400,
        description=(
            "How long a retention preview's `plan_id` can be executed, in seconds (60 to "
            "604800; default one hour). A plan is also single-use: reuse or expiry is a 409."
        ),
    )
    spike_max_rows: int = Field(
        validation_alias=AliasChoices("TASKLEDGER_SPIKE_MAX_ROWS", "spike_max_rows"),
        default=1000,
        ge=1,
        description=(
            "Deletions outside retention runs (API record deletes) allowed within one window, "
            "across all replicas; more get 429. Seed-endpoint prunes count toward the window "
            "and raise the spike alert when they take it over, but are never refused by it."
        ),
    )
    spike_window_seconds: int = Field(
        validation_alias=AliasChoices("TASKLEDGER_SPIKE_WINDOW_SECONDS", "spike_window_seconds"),
        default=60,
        ge=1,
        le=86_400,
        description="Length of the spike guard's sliding window.",
    )
    alert_webhook_url: str | None = Field(
        validation_alias=AliasChoices("TASKLEDGER_ALERT_WEBHOOK_URL", "alert_webhook_url"),
        default=None,
        description="Where spike alerts are POSTed as JSON (off the request path, with retries).",
    )


class ArchiveSettings(_Section):
    """Where retention archives go, and how they are compressed."""

    model_config = SettingsConfigDict(env_prefix="TASKLEDGER_ARCHIVE_")

    url: str | None = Field(
        default=None,
        description=(
            "Where retention archives go: a directory, or `s3://bucket/prefix`. Unset means "
            "`<data_dir>/archives`."
        ),
    )
    s3_endpoint_url: str | None = Field(
        validation_alias=AliasChoices("TASKLEDGER_S3_ENDPOINT_URL", "s3_endpoint_url"),
        default=None,
        description="Endpoint of an S3-compatible store (MinIO, Ceph, ...); unset means AWS.",
    )
    gzip_level: int = Field(
        default=DEFAULT_GZIP_LEVEL,
        ge=1,
        le=9,
        description=(
            "gzip level of archive parts, 1 (fastest) to 9 (smallest). 6 is most of 9's ratio "
            "at a fraction of its time; 1 compresses about 2.5 times as fast, and its parts are "
            "about a quarter bigger."
        ),
    )


class SchedulerSettings(_Section):
    """The in-process retention schedule of `taskledger serve`."""

    model_config = SettingsConfigDict(env_prefix="TASKLEDGER_RETENTION_")

    schedule: str | None = Field(
        default=None,
        description=(
            "Cron expression (UTC) on which `taskledger serve` runs the policy in force, e.g. "
            "`15 3 * * 1`. Unset means no in-process schedule."
        ),
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(
                "not a cron expression: five fields (minute hour day month weekday), or six "
                "with seconds last"
            )
        return value


class Settings(BaseSettings):
    """All of taskledger's configuration: the store at the top, a section per subsystem."""

    model_config = _Section.model_config

    data_dir: Path = Field(
        default=Path(".taskledger"),
        description=(
            "Directory for the SQLite database, the generated JWT secret, the initial admin "
            "password file and local archives. Created on first use."
        ),
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy database URL. Unset means the SQLite file `taskledger.db` in the data "
            "directory; `postgresql+psycopg://user@host:5432/db` (or `postgresql://...`) selects "
            "PostgreSQL. Any other scheme is refused."
        ),
    )
    sqlite_busy_timeout_ms: int = Field(
        default=5000,
        ge=0,
        description=(
            "How long a SQLite write transaction waits for its turn among its process's "
            "writers, and then as long again for the database's write lock, before failing, "
            "in ms."
        ),
    )

    runs_partition: Literal["day", "week", "month"] = Field(
        default="month",
        description=(
            "PostgreSQL: the period of a partition of `runs` (range-partitioned on "
            "`started_at`, in UTC; weeks begin on Monday). New partitions are created with "
            "this period, ahead of time; existing ones keep theirs. Retention drops a whole "
            "partition once a rule selects every row of it. Ignored on SQLite."
        ),
    )

    server: ServerSettings = Field(
        default_factory=ServerSettings,
        description="`taskledger serve`: where it listens, and its logs.",
    )
    auth: AuthSettings = Field(
        default_factory=AuthSettings,
        description="Identity and access: tokens, the admin key, logins and password checks.",
    )
    retention: RetentionSettings = Field(
        default_factory=RetentionSettings,
        description="The retention engine: the policy in force and its safeguards.",
    )
    archive: ArchiveSettings = Field(
        default_factory=ArchiveSettings,
        description="Where retention archives go, and how they are compressed.",
    )
    scheduler: SchedulerSettings = Field(
        default_factory=SchedulerSettings,
        description="The in-process retention schedule of `taskledger serve`.",
    )

    def __init__(self, **values: Any) -> None:
        """Read the sections too, from the same ``.env`` file (``_env_file`` included)."""
        source = {key: values[key] for key in ("_env_file",) if key in values}
        for name, section in SECTIONS.items():
            if name not in values:
                values[name] = section(**source)
        super().__init__(**values)

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        scheme, separator, rest = value.strip().partition("://")
        driver = DATABASE_SCHEMES.get(scheme.lower()) if separator else None
        if driver is None:
            # The URL itself is not repeated: it may hold a password.
            found = f"scheme {scheme!r}" if separator else "no scheme"
            raise ValueError(
                f"unsupported database URL ({found}); use sqlite:///PATH or "
                "postgresql+psycopg://USER@HOST:PORT/DB (postgresql:// means the same)"
            )
        return f"{driver}://{rest}"

    def admin_key_conflict(self) -> str | None:
        """A warning when ``TASKLEDGER_ADMIN_API_KEY`` and ``ADMIN_API_KEY`` are both set, to
        different keys (in the environment or the ``.env`` file): only one of them is accepted,
        and a caller holding the other gets 403 with no hint why. ``None`` otherwise."""
        environment = {name.upper(): value for name, value in os.environ.items()}
        env_file = self.model_config.get("env_file")
        from_file: dict[str, str | None] = {}
        if isinstance(env_file, str | Path) and Path(env_file).is_file():
            from_file = {k.upper(): v for k, v in dotenv_values(env_file).items()}
        values = [environment.get(name) or from_file.get(name) for name in ADMIN_KEY_VARIABLES]
        if not all(values) or values[0] == values[1]:
            return None
        current = self.auth.admin_api_key.get_secret_value() if self.auth.admin_api_key else None
        winner, loser = ADMIN_KEY_VARIABLES if current != values[1] else ADMIN_KEY_VARIABLES[::-1]
        return (
            f"{winner} and {loser} are both set, to different keys: only {winner} is "
            f"accepted in X-Admin-Key, a key matching {loser} gets 403; unset one of them"
        )

    @property
    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one, or the SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'taskledger.db').resolve()}"

    @property
    def resolved_archive_url(self) -> str:
        """The archive root in force: the configured one, or ``<data_dir>/archives``."""
        if self.archive.url:
            return self.archive.url
        return str((self.data_dir / "archives").resolve())

    def ensure_data_dir(self) -> Path:
        """Create the data directory if it is missing (mode 0700: it holds the database, the
        JWT secret and the initial password) and return it. An existing directory that others
        can read is left as it is, with a warning."""
        if not self.data_dir.exists():
            self.data_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
            self.data_dir.chmod(0o700)  # mkdir's mode is narrowed by the umask, never widened
        elif self.data_dir.stat().st_mode & 0o077:
            logging.getLogger(__name__).warning(
                "the data directory %s can be read by other users; `chmod 700` it", self.data_dir
            )
        return self.data_dir


#: The sections of :class:`Settings`, by attribute name.
SECTIONS: dict[str, type[_Section]] = {
    "server": ServerSettings,
    "auth": AuthSettings,
    "retention": RetentionSettings,
    "archive": ArchiveSettings,
    "scheduler": SchedulerSettings,
}


def env_name(model: type[BaseSettings], field: str) -> str:
    """The environment variable that sets ``field`` of ``model`` (a section or the top level)."""
    alias = model.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return f"{model.model_config.get('env_prefix', '')}{field}".upper()


def describe_errors(error: ValidationError) -> str:
    """The problems of invalid settings on one line, each naming its environment variable."""
    candidates: list[type[BaseSettings]] = [Settings, *SECTIONS.values()]
    models = {m.__name__: m for m in candidates}
    model = models.get(error.title, Settings)
    by_alias = {env_name(model, field).lower(): field for field in model.model_fields}
    problems = []
    for item in error.errors():
        loc = [str(part) for part in item.get("loc", ())]
        name = loc[0] if loc else ""
        field = name if name in model.model_fields else by_alias.get(name.lower())
        if field is not None and field not in SECTIONS:
            name = env_name(model, field)
        message = str(item.get("msg", "")).removeprefix("Value error, ")
        problems.append(f"{name}: {message}" if name else message)
    return "; ".join(problems)
