//! Interpreter exit. While the interpreter finalizes, CPython ends any other thread that tries
//! to take the GIL (with `pthread_exit`), and that forced unwind cannot pass Rust frames: the
//! process would abort. So:
//!
//! * Python providers run on threads that Python created, with no Rust frame below their code
//!   (see `workers`): CPython can end them like any daemon thread.
//! * Every stretch of Rust code that takes the GIL, or holds it with Rust frames below Python
//!   code, is counted ([`enter`]). The `atexit` hook [`_shutdown`] (which runs before
//!   finalization) stops new provider calls and log records, gives counted stretches a bounded
//!   time to end, then closes: a counted stretch is refused from then on, and a thread whose
//!   wait ends after that never takes the GIL again ([`detach`] parks it until the process
//!   ends, as Python 3.14 itself does with daemon threads).

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::process_local::ProcessLocal;

const RUNNING: u8 = 0;
/// The exit hook runs: no new provider calls; counted stretches still enter.
const EXITING: u8 = 1;
/// Finalization may start at any moment: nothing enters any more.
const CLOSED: u8 = 2;
/// The exit hook has returned (it stops waiting after its timeout): a thread still queued to
/// take the GIL back must not take it any more.
const FINAL: u8 = 3;

static PHASE: AtomicU8 = AtomicU8::new(RUNNING);
static IN_PYTHON: AtomicUsize = AtomicUsize::new(0);
/// The thread that runs the exit hook (and then finalizes): the one thread CPython never ends.
static EXIT_THREAD: OnceLock<ThreadId> = OnceLock::new();

/// One counted stretch of Rust code in (or entering) Python.
#[derive(Debug)]
pub struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        IN_PYTHON.fetch_sub(1, Ordering::SeqCst);
    }
}

fn count() -> Entered {
    IN_PYTHON.fetch_add(1, Ordering::SeqCst);
    Entered(())
}

fn on_exit_thread() -> bool {
    EXIT_THREAD.get() == Some(&std::thread::current().id())
}

/// Permission to take the GIL (or keep running Python with Rust frames below it) for a short
/// stretch; `None` once the interpreter may be finalizing. Hold it until that stretch is over.
pub fn enter() -> Option<Entered> {
    let entered = count();
    if PHASE.load(Ordering::SeqCst) >= CLOSED && !on_exit_thread() {
        return None;
    }
    Some(entered)
}

/// Whether the interpreter is exiting: no new provider call starts.
pub fn exiting() -> bool {
    PHASE.load(Ordering::SeqCst) != RUNNING
}

/// Threads coming back from a wait pass here one at a time to take the GIL: a thousand waiters
/// woken by one refresh then queue on a condition variable, instead of a thousand runnable
/// threads fighting for the GIL (a convoy that made them wait several times longer than
/// botocore's callers queued on its lock).
#[derive(Default)]
struct Entrance {
    busy: Mutex<bool>,
    free: Condvar,
}

/// A thread's turn at the [`Entrance`], released on drop.
struct Turn(Arc<Entrance>);

impl Entrance {
    fn turn(self: Arc<Self>) -> Turn {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        while *busy {
            busy = self.free.wait(busy).unwrap_or_else(PoisonError::into_inner);
        }
        *busy = true;
        drop(busy);
        Turn(self)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(PoisonError::into_inner) = false;
        self.0.free.notify_one();
    }
}

// Replaced in a forked child: a parent thread may have held it at fork time.
static ENTRANCE: ProcessLocal<Entrance> = ProcessLocal::new();

/// Called in a forked child.
pub fn after_fork_in_child() {
    ENTRANCE.forget();
}

/// Run `f` detached from the interpreter, then attach again, counted: hold the returned
/// [`Entered`] until control is back in Python. A thread whose `f` ends after the exit hook has
/// closed never attaches again: it is parked until the process ends.
pub fn detach<T, F>(py: Python<'_>, f: F) -> (T, Entered)
where
    T: Send,
    F: Send + FnOnce() -> T,
{
    let entrance = ENTRANCE.get();
    let (value, entered, _turn) = py.detach(|| {
        let value = f();
        let Some(entered) = enter() else {
            park_forever()
        };
        if on_exit_thread() {
            return (value, entered, None);
        }
        let turn = entrance.turn();
        if PHASE.load(Ordering::SeqCst) == FINAL {
            // Queued past the exit hook's patience: finalization may be under way.
            drop(turn);
            park_forever();
        }
        (value, entered, Some(turn))
    });
    (value, entered)
}

/// Take the GIL for `f` from a thread that does not hold it (a runtime thread, or a Python
/// thread inside a detached wait), counted; `None` once the interpreter may be finalizing.
pub fn attach<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    let _entered = enter()?;
    Some(Python::attach(f))
}

fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

fn drain(deadline: Instant) {
    while IN_PYTHON.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Registered with `atexit`: stop new provider calls and log records, wait up to `timeout`
/// seconds for counted stretches to end, then close.
#[pyfunction]
#[pyo3(signature = (timeout=1.0))]
pub fn _shutdown(py: Python<'_>, timeout: f64) {
    let _ = EXIT_THREAD.set(std::thread::current().id());
    PHASE.store(EXITING, Ordering::SeqCst);
    log::set_max_level(log::LevelFilter::Off);
    let deadline = Instant::now() + Duration::from_secs_f64(timeout.clamp(0.0, 60.0));
    py.detach(|| {
        drain(deadline);
        PHASE.store(CLOSED, Ordering::SeqCst);
        // A stretch counted just before the close saw the old phase: let it end too.
        drain(deadline);
        PHASE.store(FINAL, Ordering::SeqCst);
    });
}

/// A `log` backend that forwards to Python's `logging` only inside a counted stretch.
pub struct GuardedLogger<L>(pub L);

impl<L: log::Log> log::Log for GuardedLogger<L> {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        enter().is_some_and(|_entered| self.0.enabled(metadata))
    }

    fn log(&self, record: &log::Record<'_>) {
        if let Some(_entered) = enter() {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        if let Some(_entered) = enter() {
            self.0.flush();
        }
    }
}
