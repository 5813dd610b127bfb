"""The threads that Python providers run on.

They are Python threads on purpose: a provider's code runs here under Python frames only (the
worker asks the core for a task, calls the provider itself and hands the answer back), so that
at interpreter exit CPython can end a thread still running a provider like any daemon thread.
One spawner thread starts them all; the core decides how many (see ``_core._WorkerPool``).
"""

from __future__ import annotations

import inspect
import itertools
import threading

from creds_core import _aio_loop
from creds_core._core import _Task, _WorkerPool

_numbers = itertools.count(1)


def start_spawner(pool: _WorkerPool) -> None:
    """Start the thread that starts the pool's threads (called by the core, once per process)."""
    threading.Thread(target=_spawn, args=(pool,), name="creds-core-spawner", daemon=True).start()


def _spawn(pool: _WorkerPool) -> None:
    while (spawn := pool.next_spawn()) is not None:
        kind, task = spawn
        number = next(_numbers)
        try:
            if kind == "worker":
                thread = threading.Thread(
                    target=_pool_worker,
                    args=(pool,),
                    name=f"creds-core-provider-{number}",
                    daemon=True,
                )
            else:
                thread = threading.Thread(
                    target=_run, args=(task,), name=f"creds-core-nested-{number}", daemon=True
                )
            thread.start()
        except Exception as exc:  # RuntimeError: can't start new thread
            if task is None:
                pool.worker_not_started()
            else:
                task.not_started(type(exc).__name__)


def _pool_worker(pool: _WorkerPool) -> None:
    task = None
    while (task := pool.next_task(task)) is not None:
        _run(task)


def _run(task: _Task) -> None:
    provide = task.begin()
    try:
        answer = provide()
        if inspect.isawaitable(answer):
            answer = _aio_loop.run(answer, task.flight)
    except BaseException as exc:  # every failure is the provider's answer, reported to its cache
        task.fail(exc)
    else:
        task.finish(answer)
