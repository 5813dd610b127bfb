//! The PyO3 layer of creds_core: Python classes, the Python-provider adapter, errors and the
//! threading rules (never wait holding the GIL; Python providers only on Python worker threads).

use pyo3::prelude::*;

mod aio;
mod cache;
mod chain;
mod clock;
mod convert;
mod credentials;
mod errors;
mod limiter;
mod provider;
mod ready;
mod runtime;
mod shutdown;
mod workers;

const MAX_WORKER_THREADS: usize = 1024;
const MAX_BLOCKING_THREADS: usize = 1 << 20;

/// Size the shared runtime's pools. Takes effect for work started afterwards.
#[pyfunction]
#[pyo3(signature = (*, worker_threads=None, max_blocking_threads=None))]
fn configure_runtime(
    worker_threads: Option<convert::Count>,
    max_blocking_threads: Option<convert::Count>,
) -> PyResult<()> {
    let current = creds_core::runtime::config();
    // A negative count is 0 here, refused below with the others.
    let size = |n: Option<convert::Count>, default: usize| {
        n.map_or(default, |n| usize::try_from(n.0).unwrap_or(0))
    };
    let config = creds_core::runtime::RuntimeConfig {
        worker_threads: size(worker_threads, current.worker_threads),
        max_blocking_threads: size(max_blocking_threads, current.max_blocking_threads),
    };
    // Worker threads are all started at once: a huge number fails to start (a panic in the
    // runtime's builder), so it is refused here. Blocking threads start on demand.
    if !(1..=MAX_WORKER_THREADS).contains(&config.worker_threads)
        || !(1..=MAX_BLOCKING_THREADS).contains(&config.max_blocking_threads)
    {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "pool sizes must be at least 1, worker_threads at most {MAX_WORKER_THREADS} and \
             max_blocking_threads at most {MAX_BLOCKING_THREADS}; got {} and {}",
            config.worker_threads, config.max_blocking_threads
        )));
    }
    creds_core::runtime::configure(config);
    workers::retire();
    Ok(())
}

/// The shared runtime's pool sizes.
#[pyfunction]
fn runtime_config() -> (usize, usize) {
    let c = creds_core::runtime::config();
    (c.worker_threads, c.max_blocking_threads)
}

/// Registered with `os.register_at_fork(after_in_child=...)`: the parent's runtime threads do
/// not exist in the child, so a new runtime is built there on first use.
#[pyfunction]
fn _after_fork_in_child() {
    creds_core::runtime::after_fork_in_child();
    workers::after_fork_in_child();
    aio::after_fork_in_child();
    shutdown::after_fork_in_child();
}

/// The provider call running on this thread saw a throttled answer that its SDK client retries
/// itself: tell the refresh's `Limiter` now (it counts it and slows down). False when there is
/// no such refresh or it has no limiter.
#[pyfunction]
fn _note_throttled() -> bool {
    creds_core::flight::current().is_some_and(|ctx| ctx.note_throttled())
}

/// The flight whose provider work this thread runs (None outside of one): an awaitable that a
/// wrapper (the shared tier) runs on creds_core's loop for it stays part of that refresh.
#[pyfunction]
fn _current_flight(py: Python<'_>) -> PyResult<Option<Py<aio::PyFlight>>> {
    aio::flight_handle(py, creds_core::flight::current().as_ref())
}

/// An expiry by the one rule of `Credentials` (botocore's formats, years 1 to 9999 UTC), as an
/// aware UTC datetime or None: the providers written in Python read expiries with it.
/// `field` names the value in the `ValueError`.
#[pyfunction]
#[pyo3(signature = (value, field = "expiry"))]
fn _parse_expiry<'py>(
    value: &Bound<'py, PyAny>,
    field: &str,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    convert::expiry(value, field)
        .map_err(pyo3::exceptions::PyValueError::new_err)?
        .map(|t| convert::datetime(value.py(), t))
        .transpose()
}

// Safe without the GIL (frozen values, Rust locks and atomics, Python code only on threads
// that attach for it): PyO3's default, stated because it is a promise to free-threaded CPython
// (docs/free_threading.md).
#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Rust log records go to Python's `logging` (loggers `creds_core.cache`, `creds_core.limiter`,
    // ...). Levels are asked of Python on each record, so `logging` configuration made later
    // applies. Records enter Python only inside a counted stretch (see `shutdown`). Another
    // extension may have installed a `log` backend already: then keep it.
    let logger =
        pyo3_log::Logger::new(m.py(), pyo3_log::Caching::Loggers)?.filter(log::LevelFilter::Debug);
    if log::set_boxed_logger(Box::new(shutdown::GuardedLogger(logger))).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
    errors::register(m)?;
    m.add(
        "THROTTLING_CODES",
        creds_core::limiter::THROTTLING_CODES.to_vec(),
    )?;
    m.add_class::<credentials::PyCredentials>()?;
    m.add_class::<chain::PyProviderChain>()?;
    m.add_class::<cache::PyCredentialCache>()?;
    m.add_class::<clock::PyManualClock>()?;
    m.add_class::<limiter::PyLimiter>()?;
    m.add_class::<workers::PyWorkerPool>()?;
    m.add_class::<workers::PyTask>()?;
    m.add_class::<aio::PyFlight>()?;
    m.add_class::<aio::PyAsyncTask>()?;
    m.add_function(wrap_pyfunction!(configure_runtime, m)?)?;
    m.add_function(wrap_pyfunction!(runtime_config, m)?)?;
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(_note_throttled, m)?)?;
    m.add_function(wrap_pyfunction!(_current_flight, m)?)?;
    m.add_function(wrap_pyfunction!(_parse_expiry, m)?)?;
    m.add_function(wrap_pyfunction!(shutdown::_shutdown, m)?)?;
    Ok(())
}
