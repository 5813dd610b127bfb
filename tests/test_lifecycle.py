"""Process life cycle: fork() (a cache used before it, a fork during a refresh), Ctrl-C
reaching waiting threads, and interpreter exit with refreshes in flight.

Sources are real where they can be (``AssumeRoleProvider`` and ``creds_core.boto3.assume_role``
against the project's StsServer), and subprocesses for what only a whole interpreter shows
(signals, exit).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import creds_core.boto3 as cb
from creds_core import (
    CredentialCache,
    Credentials,
)
from helpers import (
    CTRL_C_RAISES,
    NO_RETRY,
    assume_role_provider,
    creds,
    posix_signals,
    static_source,
    timed,
    unique_role_arn,
    wait_until,
)
from server_fixtures import StsServer

pytestmark = pytest.mark.usefixtures("isolated_aws")

ROOT = Path(__file__).resolve().parents[1]


# --- fork -----------------------------------------------------------------------------------------


def _in_child(work: Callable[[], dict[str, Any]], timeout: float = 30.0) -> dict[str, Any]:
    """Run ``work`` in a forked child; its JSON answer (or the error it raised)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        code = 1
        try:
            payload = json.dumps(work())
            code = 0
        except BaseException as exc:
            payload = json.dumps({"error": "".join(traceback.format_exception(exc))})
        finally:
            os.write(w, payload.encode())
            os._exit(code)
    os.close(w)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child did not finish in time")
        time.sleep(0.01)
    with os.fdopen(r, "rb") as pipe:
        answer: dict[str, Any] = json.loads(pipe.read() or b'{"error": "no answer"}')
    assert "error" not in answer, answer["error"]
    assert os.waitstatus_to_exitcode(status) == 0
    return answer


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_an_assume_role_cache_used_before_fork_refreshes_in_the_child(
    sts_server: StsServer,
) -> None:
    role = cb.assume_role(
        static_source("AKIAFORKSOURCE000001"),
        unique_role_arn("fork"),
        endpoint_url=sts_server.url,
        client_config=NO_RETRY,
    )
    cache = cb.get_cache(role)
    assert cache is not None
    first = cache.get().access_key_id

    def child() -> dict[str, Any]:
        cached = cache.get().access_key_id  # no STS call: still fresh
        assert cache.invalidate(cached)
        fresh = cache.get().access_key_id  # an AssumeRole call from the child's runtime
        identity = role.client("sts", endpoint_url=sts_server.url).get_caller_identity()
        return {"cached": cached, "fresh": fresh, "arn": identity["Arn"]}

    answer = _in_child(child)
    assume = [c for c in sts_server.calls if c.action == "AssumeRole"]
    assert answer["cached"] == first
    assert len(assume) == 2 and answer["fresh"] == assume[1].issued_access_key_id != first
    assert assume[1].signer_access_key_id == "AKIAFORKSOURCE000001"
    assert ":assumed-role/" in answer["arn"]
    assert sts_server.calls[-1].signer_access_key_id == answer["fresh"]
    assert cache.get().access_key_id == first  # the parent is untouched


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_during_a_refresh_the_child_refreshes_on_its_own() -> None:
    parent = os.getpid()
    calls: list[int] = []
    released = threading.Event()

    def provider() -> Credentials:
        calls.append(os.getpid())
        if os.getpid() == parent:  # the parent's refresh is in flight during the fork
            released.wait(30)
            return creds("PARENT", lifetime=3600)
        return creds("CHILD", lifetime=3600)

    cache = CredentialCache(provider, load_timeout=30)
    waiter = threading.Thread(target=cache.get, daemon=True)
    waiter.start()
    wait_until(lambda: bool(calls), "the parent's refresh in its source", 30)
    assert cache.inspect()["refreshing"]

    def child() -> dict[str, Any]:
        # The parent's flight will never finish here: the child must not wait on it.
        got, took = timed(cache.get)
        return {"key": got.access_key_id, "took": took}

    try:
        answer = _in_child(child)
    finally:
        released.set()
    waiter.join(10)
    assert answer["key"] == "CHILD" and answer["took"] < 2
    assert cache.get().access_key_id == "PARENT"


# --- Ctrl-C ---------------------------------------------------------------------------------------


@posix_signals
@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_interrupts_a_main_thread_waiting_on_a_hung_sts_call(sts_server: StsServer) -> None:
    sts_server.mode = "hang"  # the AssumeRole request is never answered
    cache = CredentialCache(assume_role_provider(sts_server.url), load_timeout=30)
    main = threading.main_thread()
    assert threading.current_thread() is main
    interrupted_at: list[float] = []

    def interrupt_once_hung() -> None:
        # Ctrl-C once the AssumeRole request hangs at the server, not before it was sent (a
        # cold botocore can take longer than a fixed delay to build its STS client).
        give_up = time.monotonic() + 20
        while sts_server.counts["hung"] < 1 and time.monotonic() < give_up:
            time.sleep(0.01)
        interrupted_at.append(time.monotonic())
        signal.pthread_kill(main.ident or 0, signal.SIGINT)

    sender = threading.Thread(target=interrupt_once_hung, daemon=True)
    sender.start()
    with pytest.raises(KeyboardInterrupt):
        cache.get()
    returned = time.monotonic()
    sender.join(5)
    assert sts_server.counts["hung"] == 1
    assert returned - interrupted_at[0] < 10  # at once, not after the 30 s load timeout
    sts_server.mode = "ok"


def _script(*parts: str) -> str:
    head = """
import asyncio, os, sys, threading, time
from creds_core import CredentialCache, Credentials
from helpers import creds
"""
    return CTRL_C_RAISES + head + "".join(textwrap.dedent(part) for part in parts)


def _run(
    code: str,
    *,
    interrupt_when_ready: bool = False,
    timeout: float = 20.0,
) -> tuple[int, str, str, float]:
    """Run ``code`` in a fresh interpreter (faulthandler on); optionally send SIGINT once it
    printed "ready" (see ``_READY_WHEN_WAITING``).  Returns (exit code, stdout, stderr,
    seconds from signal or start to exit)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), str(ROOT / "tests")])
    env["PYTHONFAULTHANDLER"] = "1"
    env["RUST_BACKTRACE"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(ROOT),
    )
    started = time.monotonic()
    first = ""
    try:
        if interrupt_when_ready:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            if first.strip() == "ready":
                started = time.monotonic()
                proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the interpreter did not exit within {timeout}s\n{out}\n{err}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if interrupt_when_ready:
        assert first.strip() == "ready", f"{first}{out}\n{err}"
    return proc.returncode, out, err, time.monotonic() - started


def _assert_clean(stderr: str) -> None:
    for bad in ("Traceback", "panicked", "Fatal Python error", "Segmentation fault"):
        assert bad not in stderr, stderr


_HUNG = """
release = threading.Event()

def hung():
    release.wait()
    return creds("LATE", lifetime=3600)
"""

# "ready" once each of the caches has a caller waiting for its refresh (counted in its stats):
# the test sends Ctrl-C then, not after a guessed delay.
_READY_WHEN_WAITING = """
from helpers import wait_until

def ready_when_waiting(*caches):
    def watch():
        try:
            wait_until(lambda: all(c.stats()["waits"] >= 1 for c in caches), "callers waiting", 30)
        except AssertionError as exc:
            print(exc, flush=True)
            os._exit(3)
        print("ready", flush=True)

    threading.Thread(target=watch, daemon=True).start()
"""


@posix_signals
def test_ctrl_c_reaches_a_waiting_main_thread_and_a_waiting_daemon_thread_holds_no_exit() -> None:
    code = _script(
        _HUNG,
        _READY_WHEN_WAITING,
        """
        other = CredentialCache(hung, load_timeout=60, name="daemon-waiter")
        threading.Thread(target=other.get, daemon=True).start()
        main = CredentialCache(hung, load_timeout=60, name="main-waiter")
        ready_when_waiting(other, main)
        try:
            main.get()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(0)
        """,
    )
    rc, out, err, took = _run(code, interrupt_when_ready=True)
    assert rc == 0, err
    assert "interrupted" in out
    assert took < 3.0  # the load timeout is 60 s: neither waiter held the exit up
    _assert_clean(err)


@posix_signals
def test_after_ctrl_c_a_waiting_non_daemon_thread_holds_exit_no_longer_than_load_timeout() -> None:
    code = _script(
        _HUNG,
        _READY_WHEN_WAITING,
        """
        other = CredentialCache(hung, load_timeout=1.5, name="worker-waiter")

        def work():
            try:
                other.get()
            except Exception as exc:  # ProviderTimedOut: nothing to fall back on
                print(type(exc).__name__, flush=True)

        threading.Thread(target=work).start()
        main = CredentialCache(hung, load_timeout=60, name="main-waiter")
        ready_when_waiting(other, main)
        try:
            main.get()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """,
    )
    rc, out, err, took = _run(code, interrupt_when_ready=True)
    assert rc == 0, err
    assert out.split() == ["interrupted", "ProviderTimedOut"]
    assert took < 1.5 + 1.5
    _assert_clean(err)


# --- interpreter exit with refreshes in flight ----------------------------------------------------

_IN_FLIGHT = """
from creds_core.providers import AssumeRoleProvider, StaticProvider
from creds_core.testing import ManualClock
from server_fixtures import StsServer

def slow():
    time.sleep(SLOW)
    return creds("SLOW", lifetime=3600)

# Blocking callers on daemon threads, each waiting for a slow refresh.
for i in range(4):
    cache = CredentialCache(slow, load_timeout=60, name=f"thread-{i}")
    threading.Thread(target=cache.get, daemon=True).start()

# get_async: one awaited past a timeout, and one never awaited at all.
async def main():
    try:
        await asyncio.wait_for(CredentialCache(slow, name="async-1").get_async(), 0.05)
    except asyncio.TimeoutError:
        pass
    CredentialCache(slow, name="async-2").get_async()

asyncio.run(main())

# A background (advisory) refresh in flight.
clock = ManualClock()
calls = []

def advisory():
    calls.append(1)
    if len(calls) > 1:
        time.sleep(SLOW)
    return creds("ADVISORY", lifetime=3600, now=clock.now())

background = CredentialCache(advisory, clock=clock, name="background")
background.get()
clock.advance(3000)
background.get()  # starts the background refresh

# An AssumeRole request in flight against a slow STS (its client built beforehand, so that
# the provider thread is waiting for the answer, not running Python, when the program ends).
sts = StsServer(mode="slow", latency=SLOW).start()
provider = AssumeRoleProvider(
    StaticProvider("AKIAEXITSOURCE000001", "secret"),
    "arn:aws:iam::123456789012:role/exit",
    endpoint_url=sts.url, region="us-east-1",
)
provider.client
role = CredentialCache(provider, load_timeout=0.05, name="assume-role")
try:
    role.get()
except Exception:
    pass
deadline = time.monotonic() + 5
while sts.counts["AssumeRole"] < 1:
    if time.monotonic() > deadline:
        sys.exit("the AssumeRole request never reached the STS server")
    time.sleep(0.01)
print("exiting", flush=True)
"""


def test_interpreter_exit_with_refreshes_in_flight_is_clean() -> None:
    rc, out, err, took = _run(_script("SLOW = 2.0\n", _IN_FLIGHT))
    assert rc == 0, err
    assert out.strip() == "exiting"
    assert took < 10
    _assert_clean(err)


_FINISHING = {
    # Slow refreshes whose provider calls return while the interpreter finalizes.
    "returning": """
        import atexit
        release = threading.Event()

        def provider():
            release.wait()
            return creds("LATE", lifetime=3600)

        atexit.register(release.set)  # runs before finalization; the calls end during it
        """,
    # Refreshes whose provider calls are still running Python code when the program ends,
    # long after creds_core's exit hook has given up waiting for them.
    "running": """
        def provider():
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                pass
            return creds("BUSY", lifetime=3600)
        """,
    # Providers waiting on a source cache (a nested lookup) whose provider returns during
    # finalization, so that the waiting provider thread wakes up inside creds_core then.
    "nested": """
        import atexit
        release = threading.Event()

        def source_provider():
            release.wait()
            return creds("SOURCE", lifetime=3600)

        source = CredentialCache(source_provider, load_timeout=60, name="source")

        def provider():
            source.get()
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                pass
            return creds("ROLE", lifetime=3600)

        atexit.register(release.set)
        """,
}


@pytest.mark.parametrize("logs", ["quiet", "debug-logging"])
@pytest.mark.parametrize("refresh", sorted(_FINISHING))
def test_interpreter_exit_while_refreshes_run_python_is_clean(refresh: str, logs: str) -> None:
    code = _script(
        "import logging\n",
        "logging.basicConfig(level=logging.DEBUG)\n" if logs == "debug-logging" else "",
        _FINISHING[refresh],
        """
        def get(cache):
            try:
                cache.get()
            except Exception:
                pass

        for i in range(4):
            cache = CredentialCache(provider, load_timeout=0.05, name=f"in-flight-{i}")
            get(cache)
        # A daemon thread waiting for one of them, too.
        waiter = CredentialCache(provider, load_timeout=60, name="daemon-waiter")
        threading.Thread(target=get, args=(waiter,), daemon=True).start()
        print("exiting", flush=True)
        """,
    )
    rc, out, err, took = _run(code)
    assert out.strip() == "exiting"
    assert rc == 0, f"exit code {rc}\n{err[-2000:]}"
    assert took < 10  # nothing waited for the 5 s providers
    _assert_clean(err)
    if logs == "debug-logging":
        assert "creds_core" in err  # records were flowing while the program ended
