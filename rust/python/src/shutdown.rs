//! Interpreter exit. CPython ends a thread that tries to take the GIL while the interpreter
//! finalizes, and that forced unwind cannot pass the Rust frames of a provider thread: the
//! process would abort. So an `atexit` hook (run before finalization) closes the door: no new
//! provider call and no log record enters Python any more, and calls already in Python get a
//! bounded time to return.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);
static IN_PYTHON: AtomicUsize = AtomicUsize::new(0);

/// Counts a provider thread's stay in Python.
pub struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        IN_PYTHON.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Permission for a provider thread to enter Python; `None` once the interpreter is exiting.
pub fn enter() -> Option<Entered> {
    IN_PYTHON.fetch_add(1, Ordering::SeqCst);
    let entered = Entered(());
    if SHUTTING_DOWN.load(Ordering::SeqCst) {
        return None;
    }
    Some(entered)
}

/// Registered with `atexit`: stop entering Python and wait up to `timeout` seconds for provider
/// calls already in Python to return.
#[pyfunction]
#[pyo3(signature = (timeout=1.0))]
pub fn _shutdown(py: Python<'_>, timeout: f64) {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
    log::set_max_level(log::LevelFilter::Off);
    let deadline = Instant::now() + Duration::from_secs_f64(timeout.clamp(0.0, 60.0));
    py.detach(|| {
        while IN_PYTHON.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    });
}
