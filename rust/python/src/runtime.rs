//! How Python waits: every blocking call detaches from the interpreter and blocks on the
//! shared runtime in short slices, checking for signals between them so that Ctrl-C reaches
//! a waiting thread; every async call is `future_into_py` on the same runtime.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use creds_core::runtime as core_runtime;
use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{ContextExt, Runtime};
use pyo3_async_runtimes::TaskLocals;

use crate::shutdown::{self, Entered};

/// How often a waiting thread looks for a pending signal (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// The Python thread id of the main thread, the only one Python delivers signals to.
static MAIN_THREAD: std::sync::OnceLock<std::ffi::c_ulong> = std::sync::OnceLock::new();

fn on_main_thread(py: Python<'_>) -> bool {
    let main = *MAIN_THREAD.get_or_init(|| {
        py.import("threading")
            .and_then(|t| t.call_method0("main_thread"))
            .and_then(|m| m.getattr("ident"))
            .and_then(|i| i.extract())
            .unwrap_or(0)
    });
    // SAFETY: a plain C call without arguments; it reads the calling thread's identity.
    let current = unsafe { pyo3::ffi::PyThread_get_thread_ident() };
    current == main
}

/// Block until `fut` completes, without holding the GIL. On the main thread the wait is cut
/// into short slices with a signal check between them, so that Ctrl-C reaches it; other
/// threads (which Python never delivers signals to) wait in one piece, so a thousand waiters
/// do not compete for the GIL with the provider they wait for.
///
/// Attaching again is counted (see `shutdown`): hold the returned guard until the result has
/// been turned into Python objects.
pub fn wait<T, F>(py: Python<'_>, fut: F) -> PyResult<(T, Entered)>
where
    T: Send,
    F: Future<Output = T> + Send,
{
    if !on_main_thread(py) {
        return Ok(shutdown::detach_until(py, fut));
    }
    let mut fut = Box::pin(fut);
    loop {
        let (slice, entered) = shutdown::detach_until(py, async {
            tokio::time::timeout(SIGNAL_CHECK, &mut fut).await.ok()
        });
        if let Some(value) = slice {
            return Ok((value, entered));
        }
        // Raises KeyboardInterrupt (and drops the wait; the refresh itself goes on).
        py.check_signals()?;
    }
}

/// The shared, fork-safe runtime as a `pyo3-async-runtimes` runtime.
pub struct SharedRuntime;

tokio::task_local! {
    static TASK_LOCALS: std::cell::OnceCell<TaskLocals>;
}

impl Runtime for SharedRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        core_runtime::handle().spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        // Completions enter Python: not once the interpreter is exiting.
        core_runtime::handle().spawn_blocking(move || {
            if let Some(_entered) = shutdown::enter() {
                f();
            }
        })
    }
}

impl ContextExt for SharedRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = std::cell::OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// An awaitable for `fut`, resolved on the shared runtime. If the awaiting event loop was
/// closed meanwhile (`asyncio.run` ended), the result is dropped quietly instead of reporting
/// "Event loop is closed".
pub fn future_into_py<F, T>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    let locals = pyo3_async_runtimes::generic::get_current_locals::<SharedRuntime>(py)?;
    let event_loop = locals.event_loop(py).unbind();
    pyo3_async_runtimes::generic::future_into_py_with_locals::<SharedRuntime, _, T>(
        py,
        locals,
        async move {
            let result = fut.await;
            let closed = shutdown::attach(|py| {
                event_loop
                    .bind(py)
                    .call_method0("is_closed")
                    .and_then(|c| c.extract::<bool>())
                    .unwrap_or(true)
            })
            .unwrap_or(true);
            if closed {
                // Nobody can receive it: never complete (the task ends with the runtime).
                std::future::pending::<()>().await;
            }
            result
        },
    )
}
