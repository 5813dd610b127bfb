"""Small providers for tests: counted, scripted, blocking on an event; and ``wait_until``."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.config import Config

from creds_core import Credentials, Provider
from creds_core.providers import AssumeRoleProvider, StaticProvider
from creds_core.providers._config import new_session

# The first line of a script that a test interrupts with Ctrl-C: Python's own handler, even
# when the test run itself was started with SIGINT ignored (see conftest's ``ctrl_c_raises``).
CTRL_C_RAISES = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"

#: For tests that send POSIX signals (pthread_kill, SIGINT/SIGTERM to a process, SIGSTOP,
#: SIGKILL): Windows has none of them (send_signal there only knows CTRL_C_EVENT, CTRL_BREAK_EVENT
#: and SIGTERM, which terminates).
posix_signals = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")

SECRET = "SECRET-SENTINEL-wJalrXUtnFEMI"
TOKEN = "TOKEN-SENTINEL-FwoGZXIvYXdzE"


def creds(
    key: str,
    expiry: datetime | None = None,
    *,
    lifetime: float | None = None,
    now: datetime | None = None,
) -> Credentials:
    """Credentials with sentinel secrets, expiring at `expiry` or `lifetime` seconds from `now`."""
    if expiry is None and lifetime is not None:
        expiry = (now or datetime.now(timezone.utc)) + timedelta(seconds=lifetime)
    return Credentials(key, SECRET, TOKEN, expiry)


class Scripted(Provider):
    """Answers with `answer(call_number)`, counting calls; optionally blocks on `gate` first."""

    def __init__(self, answer: Callable[[int], Any], *, name: str = "scripted") -> None:
        self.answer = answer
        self.calls = 0
        self.name = name
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fallback: Credentials | None = None
        self._lock = threading.Lock()

    def provide(self) -> Any:
        with self._lock:
            self.calls += 1
            n = self.calls
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        return self.answer(n)

    def fallback_on_interrupt(self) -> Credentials | None:
        return self.fallback


REGION = "us-east-1"
#: One AssumeRole request per refresh (no botocore retry, no retry sleep); short timeouts.
NO_RETRY = Config(
    retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=5
)


def unique_role_arn(name: str) -> str:
    return f"arn:aws:iam::123456789012:role/{name}-{uuid.uuid4().hex[:10]}"


def static_source(key: str = "AKIAFAULTSSOURCE0001") -> boto3.Session:
    return boto3.Session(region_name=REGION, aws_access_key_id=key, aws_secret_access_key=SECRET)


def assume_role_provider(url: str, role_arn: str | None = None) -> AssumeRoleProvider:
    """A real assume-role provider (its own botocore session, no retries) against ``url``."""
    return AssumeRoleProvider(
        StaticProvider("AKIAFAULTSSOURCE0001", SECRET),
        role_arn or unique_role_arn("faults"),
        endpoint_url=url,
        region=REGION,
        client_config=NO_RETRY,
        session=new_session(),
    )


def timed(fn: Callable[[], Credentials]) -> tuple[Credentials, float]:
    started = time.perf_counter()
    got = fn()
    return got, time.perf_counter() - started


def wait_until(
    predicate: Callable[[], object], what: str = "the condition", timeout: float = 10.0
) -> None:
    """Poll ``predicate`` until it is true: the way a test waits for another thread or process
    to get somewhere (a sleep of a guessed length is not). Fails naming ``what`` after
    ``timeout`` seconds, generous for a loaded machine."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:g} s")
        time.sleep(0.005)


async def wait_until_async(
    predicate: Callable[[], object], what: str = "the condition", timeout: float = 10.0
) -> None:
    """``wait_until`` for a coroutine: polls without blocking its event loop."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:g} s")
        await asyncio.sleep(0.005)


def serve_variables(proc: subprocess.Popen[str]) -> dict[str, str]:
    """The two ``export NAME=value`` lines that ``creds-core serve`` prints first, read from
    its stdout (fails if it exits before)."""
    assert proc.stdout is not None
    variables: dict[str, str] = {}
    while len(variables) < 2:
        line = proc.stdout.readline()
        assert line, f"serve exited early: {proc.communicate(timeout=10)}"
        if line.startswith("export "):
            name, _, value = line[len("export ") :].strip().partition("=")
            variables[name] = shlex.split(value)[0]
    return variables
