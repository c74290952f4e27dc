"""Login throttling and bounded password checks (SPEC section 3), on every backend.

Time is simulated by backdating rows of ``login_failures``, never by sleeping. Password checks
are counted by a wrapper around the real argon2id hasher; it can also hold every check at a gate,
so that the bound on concurrent checks is observed while it is being pushed against.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, insert, select, update

from taskledger.api import create_app
from taskledger.services import passwords
from taskledger.services.login_throttle import PRUNE_BATCH
from taskledger.settings import Settings
from taskledger.store import make_engine
from taskledger.store.models import LoginFailure, User
from taskledger.store.types import utcnow
from tests.cli.test_serve import free_port, wait_for
from tests.helpers import PASSWORD, bearer, changed, login, make_user, transaction
from tests.serving import DEADLINE

TOKEN_URL = "/api/v1/auth/token"
WRONG = "not the password"


class CountingHasher:
    """The real hasher, counting verifications and the most that ran at once.

    While ``gate`` is clear, every verification waits at it (inside its password-check slot).
    """

    def __init__(self, real: PasswordHasher) -> None:
        self.real = real
        self.lock = threading.Lock()
        self.verifications = 0
        self.running = 0
        self.peak = 0
        self.gate = threading.Event()
        self.gate.set()

    def hash(self, password: str) -> str:
        return self.real.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        with self.lock:
            self.verifications += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            assert self.gate.wait(120), "the gate was never opened"
            return self.real.verify(password_hash, password)
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def hasher() -> Iterator[CountingHasher]:
    original = passwords._hasher
    counting = CountingHasher(original)
    passwords._hasher = counting  # type: ignore[assignment]
    try:
        yield counting
    finally:
        counting.gate.set()
        passwords._hasher = original


@pytest.fixture
def restore_slots() -> Iterator[None]:
    """Put the process-wide password-check slots back as the settings' defaults have them."""
    yield
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    passwords.slots.configure(
        limit=defaults.auth.password_check_concurrency,
        wait_seconds=defaults.auth.password_check_wait_seconds,
    )


def attempt(client: TestClient, email: str, password: str = WRONG) -> httpx.Response:
    return client.post(TOKEN_URL, data={"username": email, "password": password})


def retry_after(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    value = int(response.headers["Retry-After"])
    assert value >= 1
    return value


def rows(app: FastAPI, *where: object) -> int:
    with transaction(app) as session:
        return int(
            session.scalar(select(func.count()).select_from(LoginFailure).where(*where))  # type: ignore[arg-type]
        )


def wait_until(
    condition: Callable[[], bool], what: Callable[[], str], timeout: float = DEADLINE
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what()}"
        time.sleep(0.01)


def test_five_wrong_passwords_then_even_the_right_one_is_429_unchecked(
    app: FastAPI, client: TestClient, hasher: CountingHasher
) -> None:
    make_user(app, "ada@example.com")
    for _ in range(5):
        assert attempt(client, "ada@example.com").status_code == 401
    assert hasher.verifications == 5
    refused = attempt(client, "ada@example.com", PASSWORD)
    assert 1 <= retry_after(refused) <= 900
    assert "for this account" in refused.json()["detail"]
    assert "limit 5" in refused.json()["detail"]
    assert hasher.verifications == 5  # the right password was not even checked
    assert rows(app) == 5  # and the refusal recorded nothing
    # Another account from the same address is not affected by this account's limit.
    make_user(app, "bob@example.com")
    assert attempt(client, "bob@example.com", PASSWORD).status_code == 200


def test_unknown_emails_are_throttled_the_same_under_one_key(
    client: TestClient, hasher: CountingHasher
) -> None:
    typed = [
        "nobody@example.com",
        " Nobody@Example.com",
        "NOBODY@EXAMPLE.COM ",
        "nobody@example.com",
        "\tnobody@example.COM",
    ]
    for email in typed:
        response = attempt(client, email)
        assert response.status_code == 401
        assert response.json()["detail"] == "Incorrect email or password."
    refused = attempt(client, "nobody@example.com")
    assert "for this account" in refused.json()["detail"]
    retry_after(refused)
    assert hasher.verifications == 5


def test_the_address_limit_spans_accounts(app: FastAPI, client: TestClient) -> None:
    make_user(app, "ada@example.com")
    for i in range(20):  # four accounts, each under its own limit of 5
        assert attempt(client, f"user-{i % 4}@example.com").status_code == 401
    refused = attempt(client, "ada@example.com", PASSWORD)
    assert "from this address" in refused.json()["detail"]
    assert 1 <= retry_after(refused) <= 900
    with TestClient(app, client=("198.51.100.7", 50000)) as elsewhere:
        assert attempt(elsewhere, "ada@example.com", PASSWORD).status_code == 200


def test_a_success_clears_the_accounts_failures(app: FastAPI, client: TestClient) -> None:
    make_user(app, "ada@example.com")
    for _ in range(4):
        assert attempt(client, "ada@example.com").status_code == 401
    assert attempt(client, "ada@example.com", PASSWORD).status_code == 200
    assert rows(app, LoginFailure.account == "ada@example.com") == 0
    for _ in range(5):  # a fresh allowance
        assert attempt(client, "ada@example.com").status_code == 401
    retry_after(attempt(client, "ada@example.com", PASSWORD))


def test_a_success_leaves_the_addresss_failures(app: FastAPI, client: TestClient) -> None:
    make_user(app, "ada@example.com")
    for _ in range(4):
        assert attempt(client, "ada@example.com").status_code == 401
    assert attempt(client, "ada@example.com", PASSWORD).status_code == 200
    assert rows(app, LoginFailure.address == "testclient") == 4  # the success itself is no row
    for i in range(16):  # 4 + 16 = the address's 20
        assert attempt(client, f"user-{i % 4}@example.com").status_code == 401
    refused = attempt(client, "someone-else@example.com")
    assert "from this address" in refused.json()["detail"]


def test_the_window_slides(app: FastAPI, client: TestClient) -> None:
    make_user(app, "ada@example.com")
    for _ in range(5):
        assert attempt(client, "ada@example.com").status_code == 401
    now = utcnow()
    with transaction(app) as session:
        ids = session.scalars(select(LoginFailure.id).order_by(LoginFailure.id)).all()
        # The oldest failure is 10 minutes old: the window frees up in about 5 minutes, not 15.
        session.execute(
            update(LoginFailure)
            .where(LoginFailure.id == ids[0])
            .values(occurred_at=now - timedelta(minutes=10))
        )
    assert retry_after(attempt(client, "ada@example.com", PASSWORD)) <= 300
    with transaction(app) as session:
        session.execute(
            update(LoginFailure)
            .where(LoginFailure.id == ids[0])
            .values(occurred_at=now - timedelta(seconds=901))
        )
    # One failure left the window: one more attempt is allowed, and the expired row is gone
    # (the four others stay, for the address only, after the success).
    assert attempt(client, "ada@example.com", PASSWORD).status_code == 200
    assert rows(app) == 4
    assert rows(app, LoginFailure.id == ids[0]) == 0


def test_expired_rows_are_deleted_a_bounded_batch_per_attempt(
    app: FastAPI, client: TestClient
) -> None:
    old = utcnow() - timedelta(hours=1)
    with transaction(app) as session:
        session.execute(
            insert(LoginFailure),
            [
                {"account": f"a{i}@example.com", "address": "192.0.2.1", "occurred_at": old}
                for i in range(PRUNE_BATCH * 2 + 50)
            ],
        )
    assert attempt(client, "ada@example.com").status_code == 401
    expired = LoginFailure.occurred_at < utcnow() - timedelta(seconds=900)
    assert rows(app, expired) == PRUNE_BATCH + 50
    assert attempt(client, "ada@example.com").status_code == 401
    assert attempt(client, "ada@example.com").status_code == 401
    assert rows(app, expired) == 0
    assert rows(app) == 3


def test_attempts_still_being_checked_count_and_say_so(app: FastAPI, client: TestClient) -> None:
    # Five attempts at one account in flight on other replicas: a sixth waits for them.
    with transaction(app) as session:
        session.execute(
            insert(LoginFailure),
            [
                {
                    "account": "ada@example.com",
                    "address": f"192.0.2.{i}",
                    "occurred_at": utcnow(),
                    "pending": True,
                }
                for i in range(5)
            ],
        )
    make_user(app, "ada@example.com")
    refused = attempt(client, "ada@example.com", PASSWORD)
    assert retry_after(refused) == 1
    assert "in progress" in refused.json()["detail"]
    # A check never lasts minutes: pending rows that old were left by a process that died, and
    # count as the failures they may have been.
    with transaction(app) as session:
        session.execute(update(LoginFailure).values(occurred_at=utcnow() - timedelta(minutes=3)))
    stale = attempt(client, "ada@example.com", PASSWORD)
    assert retry_after(stale) > 60
    assert "Too many failed logins for this account" in stale.json()["detail"]


def test_two_apps_on_one_database_share_the_window(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    make_user(app, "ada@example.com")
    other_engine = make_engine(settings.resolved_database_url)
    try:
        with TestClient(create_app(settings, engine=other_engine)) as replica:
            for i in range(5):
                assert attempt(client if i % 2 else replica, "ada@example.com").status_code == 401
            retry_after(attempt(client, "ada@example.com", PASSWORD))
            retry_after(attempt(replica, "ada@example.com", PASSWORD))
    finally:
        other_engine.dispose()


def test_concurrent_attempts_on_two_replicas_cannot_pass_the_limit(
    app: FastAPI, client: TestClient, settings: Settings, hasher: CountingHasher
) -> None:
    make_user(app, "ada@example.com")
    other_engine = make_engine(settings.resolved_database_url)
    try:
        with TestClient(create_app(settings, engine=other_engine)) as replica:
            start = threading.Barrier(16)

            def one(i: int) -> int:
                start.wait(timeout=60)
                return attempt(client if i % 2 else replica, "ada@example.com").status_code

            with ThreadPoolExecutor(16) as pool:
                statuses = Counter(pool.map(one, range(16)))
    finally:
        other_engine.dispose()
    assert statuses == {401: 5, 429: 11}
    assert hasher.verifications == 5
    assert rows(app) == 5


def test_password_checks_run_a_bounded_number_at_a_time(
    settings: Settings, engine: Engine, hasher: CountingHasher, restore_slots: None
) -> None:
    bounded = changed(
        settings, auth__password_check_concurrency=3, auth__password_check_wait_seconds=60
    )
    app = create_app(bounded, engine=engine)
    emails = [make_user(app, f"user-{i}@example.com").email for i in range(12)]
    with TestClient(app) as client:
        hasher.gate.clear()
        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(attempt, client, email, PASSWORD) for email in emails]
            try:
                # Three checks in their slots, the nine others queued for one: the bound holds
                # while every login pushes against it.
                wait_until(
                    lambda: hasher.running == 3 and passwords.slots.waiting == 9,
                    lambda: (
                        f"3 running checks and 9 queued ones (peak {hasher.peak}, "
                        f"{hasher.running} running, {passwords.slots.waiting} queued)"
                    ),
                )
                assert hasher.peak == 3
            finally:
                hasher.gate.set()
            statuses = [future.result().status_code for future in futures]
    assert statuses == [200] * 12
    assert hasher.peak == 3
    assert hasher.verifications == 12


def test_no_free_slot_is_503_with_retry_after_and_no_failure(
    settings: Settings, engine: Engine, hasher: CountingHasher, restore_slots: None
) -> None:
    busy = changed(
        settings, auth__password_check_concurrency=1, auth__password_check_wait_seconds=0.05
    )
    app = create_app(busy, engine=engine)
    make_user(app, "ada@example.com")
    with TestClient(app) as client:
        with passwords.slots.hold():  # every slot taken, as by a long check elsewhere
            response = attempt(client, "ada@example.com", PASSWORD)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert "busy" in response.json()["detail"]
        assert hasher.verifications == 0
        assert rows(app) == 0  # the attempt that could not be checked is not a failure
        assert attempt(client, "ada@example.com", PASSWORD).status_code == 200


def test_creating_a_user_without_a_free_slot_is_503_and_writes_nothing(
    settings: Settings, engine: Engine, restore_slots: None
) -> None:
    busy = changed(
        settings, auth__password_check_concurrency=1, auth__password_check_wait_seconds=0.05
    )
    app = create_app(busy, engine=engine)
    root = make_user(app, "root@example.com", superuser=True)
    with TestClient(app) as client:
        token = login(client, root.email)
        with passwords.slots.hold():
            response = client.post(
                "/api/v1/users",
                json={"email": "new@example.com", "password": "a long enough password"},
                headers=bearer(token),
            )
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
    with transaction(app) as session:
        assert session.scalar(select(User).where(User.email == "new@example.com")) is None


def test_login_declares_429_and_503_with_their_bodies(client: TestClient) -> None:
    responses = client.get("/openapi.json").json()["paths"][TOKEN_URL]["post"]["responses"]
    for status in ("401", "429", "503"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorMessage"}
    for status in ("429", "503"):
        assert "Retry-After" in responses[status]["headers"]
    components = client.get("/openapi.json").json()["components"]["schemas"]
    assert components["ErrorMessage"]["required"] == ["detail"]
    assert components["ErrorMessage"]["properties"]["detail"]["type"] == "string"


def test_serve_keys_the_address_by_forwarded_for_only_from_loopback(
    database_url: str, tmp_path: Path
) -> None:
    """``taskledger serve`` trusts X-Forwarded-For from 127.0.0.1 (uvicorn's default), as the
    docs say: a local proxy's clients each get their own address."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")}
    env.pop("FORWARDED_ALLOW_IPS", None)
    env.update(
        {
            "TASKLEDGER_DATABASE_URL": database_url,
            "TASKLEDGER_DATA_DIR": str(tmp_path / "data"),
            "TASKLEDGER_LOGIN_MAX_FAILURES_PER_ADDRESS": "3",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "taskledger", "serve", "--no-migrate", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/healthz", process)

        def post(email: str, forwarded: str | None) -> httpx.Response:
            headers = {"X-Forwarded-For": forwarded} if forwarded else {}
            return httpx.post(
                f"{base}{TOKEN_URL}",
                data={"username": email, "password": WRONG},
                headers=headers,
                timeout=60,
            )

        for i in range(3):
            assert post(f"user-{i}@example.com", "203.0.113.9").status_code == 401
        refused = post("user-9@example.com", "203.0.113.9")
        assert refused.status_code == 429
        assert "from this address" in refused.json()["detail"]
        assert post("user-9@example.com", "203.0.113.10").status_code == 401
        assert post("user-9@example.com", None).status_code == 401  # 127.0.0.1 itself
    finally:
        process.terminate()
        process.communicate(timeout=DEADLINE)
