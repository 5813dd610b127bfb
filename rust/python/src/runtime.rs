//! How Python waits: every blocking call detaches from the interpreter and blocks on the
//! shared runtime in short slices, checking for signals between them so that Ctrl-C reaches
//! a waiting thread (the async door is in `aio`).

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use pyo3::prelude::*;

use crate::shutdown::{self, Entered};

/// How often a waiting thread looks for a pending signal (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// The Python thread id of the main thread, the only one Python delivers signals to, and the
/// process it was looked up in: a forked child looks it up again (its main thread is the one
/// that forked).
static MAIN_THREAD: AtomicU64 = AtomicU64::new(0);
static MAIN_THREAD_PID: AtomicU32 = AtomicU32::new(0);

fn on_main_thread(py: Python<'_>) -> bool {
    let pid = std::process::id();
    let main = if MAIN_THREAD_PID.load(Ordering::SeqCst) == pid {
        MAIN_THREAD.load(Ordering::SeqCst)
    } else {
        let looked_up = py
            .import("threading")
            .and_then(|t| t.call_method0("main_thread"))
            .and_then(|m| m.getattr("ident"))
            .and_then(|i| i.extract::<u64>());
        let Ok(main) = looked_up else {
            // Unknown: wait in slices and check for signals (harmless off the main thread),
            // rather than lose Ctrl-C; look it up again next time.
            return true;
        };
        MAIN_THREAD.store(main, Ordering::SeqCst);
        MAIN_THREAD_PID.store(pid, Ordering::SeqCst);
        main
    };
    // SAFETY: a plain C call without arguments; it reads the calling thread's identity.
    let current = unsafe { pyo3::ffi::PyThread_get_thread_ident() };
    current as u64 == main
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
