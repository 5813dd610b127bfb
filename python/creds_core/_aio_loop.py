"""creds_core's one event loop, on a thread of its own, where coroutine providers run.

A provider whose ``provide()`` is a coroutine runs here, never on a new loop per call and never
on the caller's loop: clients it creates and keeps (an aiohttp session, an aiobotocore client)
stay usable across refreshes. The loop is started on first use and again in a forked child
(the parent's thread does not exist there).

The context variable :data:`current_flight` holds, inside a provider's task, the refresh it
serves: a lookup the provider makes (``await cache.get_async()``) is nested in that refresh.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import os
import threading
from collections.abc import Awaitable
from typing import Any

from creds_core._core import _AsyncTask, _Flight

#: The refresh the running coroutine provider serves (None outside of one).
current_flight: contextvars.ContextVar[_Flight | None] = contextvars.ContextVar(
    "creds_core_current_flight", default=None
)

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid = 0


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a parent thread may have held it at fork time


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_loop() -> asyncio.AbstractEventLoop:
    """creds_core's loop, started on first use (and again after a fork)."""
    global _loop, _pid
    loop = _loop
    if loop is not None and _pid == os.getpid():
        return loop
    with _lock:
        if _loop is None or _pid != os.getpid():
            ready = threading.Event()
            new_loop = asyncio.new_event_loop()
            threading.Thread(
                target=_run_forever, args=(new_loop, ready), name="creds-core-loop", daemon=True
            ).start()
            ready.wait()
            _loop, _pid = new_loop, os.getpid()
        return _loop


def _run_forever(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


def on_loop_thread() -> bool:
    """Whether the calling thread is the one running creds_core's loop."""
    loop = _loop
    return loop is not None and _pid == os.getpid() and _running_loop() is loop


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def submit(task: _AsyncTask) -> None:
    """Run one call of a coroutine provider on the loop (called by the core; returns at once)."""
    get_loop().call_soon_threadsafe(_start, task)


def _start(task: _AsyncTask) -> None:
    if not task.wanted:
        return
    context = contextvars.copy_context()
    context.run(current_flight.set, task.flight)
    context.run(asyncio.ensure_future, _drive(task))


async def _drive(task: _AsyncTask) -> None:
    try:
        answer = task.provider()
        if inspect.isawaitable(answer):
            answer = await answer
    except BaseException as exc:  # every failure is the provider's answer, reported to its cache
        task.fail(exc)
    else:
        task.finish(answer)


def run(awaitable: Awaitable[Any], flight: _Flight | None) -> Any:
    """Run an awaitable a provider returned (on a worker thread) to completion on the loop.

    On the loop's own thread (a coroutine provider calling a blocking lookup) the loop cannot
    serve it: it runs on a loop of its own instead, as before.
    """
    if on_loop_thread():
        return asyncio.run(_await(awaitable))
    context = contextvars.copy_context()
    context.run(current_flight.set, flight)
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def start() -> None:
        task = context.run(asyncio.ensure_future, _await(awaitable))
        task.add_done_callback(lambda t: _copy_outcome(t, future))

    get_loop().call_soon_threadsafe(start)
    return future.result()


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _copy_outcome(task: asyncio.Future[Any], future: concurrent.futures.Future[Any]) -> None:
    if task.cancelled():
        future.cancel()
    elif (exc := task.exception()) is not None:
        future.set_exception(exc)
    else:
        future.set_result(task.result())
