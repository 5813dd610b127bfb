//! Interpreter exit. While the interpreter finalizes, CPython ends any other thread that tries
//! to take the GIL (3.13 and older; 3.14 hangs it instead). How it ends depends on the
//! platform: `pthread_exit` is a forced unwind on glibc, which cannot pass Rust frames (the
//! process aborts); with musl, on macOS and on Windows (`_endthreadex`) the thread just stops,
//! without unwinding, and whatever its Rust frames held (a lock, a counted stretch) stays
//! held. Either way a thread with Rust frames must never reach that point, on any platform. So:
//!
//! * Python providers run on threads that Python created, with no Rust frame below their code
//!   (see `workers`): CPython can end them like any daemon thread.
//! * Every stretch of Rust code that takes the GIL, or holds it with Rust frames below Python
//!   code, is counted ([`enter`]). The `atexit` hook [`_shutdown`] (which runs before
//!   finalization) stops new provider calls and log records, gives counted stretches a bounded
//!   time to end, then closes: a counted stretch is refused from then on, and a thread whose
//!   wait ends after that never takes the GIL again ([`detach`] parks it until the process
//!   ends, as Python 3.14 itself does with daemon threads).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{Thread, ThreadId};
use std::time::{Duration, Instant};

use creds_core::process_local::ProcessLocal;
use creds_core::runtime as core_runtime;

use pyo3::prelude::*;

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
pub fn is_exiting() -> bool {
    PHASE.load(Ordering::SeqCst) != RUNNING
}

/// Threads coming back from a wait pass here one at a time to take the GIL: the holder of the
/// baton takes the GIL, then hands the baton to the next thread in line. A thread woken while
/// it waits (its refresh finished, a timer fired) does not run at once: it is queued for the
/// baton, and only the baton's holder polls its wait. So a thousand waiters woken by one
/// refresh are woken one after the other, each by the one before (like botocore's callers
/// queued on its lock), instead of a thousand runnable threads fighting for a lock and the
/// GIL at once.
#[derive(Default)]
struct Entrance {
    line: Mutex<Line>,
}

#[derive(Default)]
struct Line {
    busy: bool,
    queue: VecDeque<Arc<Place>>,
}

/// A waiting thread's place at the [`Entrance`]; it is also the waker of that thread's wait.
struct Place {
    entrance: Arc<Entrance>,
    thread: Thread,
    /// Set when the baton is handed to this thread.
    given: AtomicBool,
    state: AtomicU8,
}

/// Not queued, not polling.
const IDLE: u8 = 0;
/// Queued for the baton (or given it, not yet polling).
const QUEUED: u8 = 1;
/// Polling its wait.
const POLLING: u8 = 2;
/// Polling, and woken meanwhile: it polls again.
const POLLING_WOKEN: u8 = 3;

impl Entrance {
    /// Give the baton to `place` now if nobody holds it, or queue it.
    fn request(&self, place: &Arc<Place>) {
        let mut line = self.line.lock().unwrap_or_else(PoisonError::into_inner);
        if line.busy {
            line.queue.push_back(Arc::clone(place));
        } else {
            line.busy = true;
            drop(line);
            place.give();
        }
    }

    /// The holder is done with the baton: to the next in line, if any.
    fn pass(&self) {
        let mut line = self.line.lock().unwrap_or_else(PoisonError::into_inner);
        match line.queue.pop_front() {
            Some(next) => {
                drop(line);
                next.give();
            }
            None => line.busy = false,
        }
    }
}

impl Place {
    fn new(entrance: Arc<Entrance>) -> Arc<Self> {
        Arc::new(Self {
            entrance,
            thread: std::thread::current(),
            given: AtomicBool::new(false),
            state: AtomicU8::new(POLLING),
        })
    }

    fn give(&self) {
        self.given.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }

    /// Park until the baton is handed to this thread; it then holds it.
    fn wait_for_baton(self: &Arc<Self>) -> Baton {
        while !self.given.swap(false, Ordering::SeqCst) {
            std::thread::park();
        }
        Baton(Arc::clone(&self.entrance))
    }
}

impl Wake for Place {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut state = self.state.load(Ordering::SeqCst);
        loop {
            let next = match state {
                IDLE => QUEUED,
                POLLING => POLLING_WOKEN,
                _ => return,
            };
            match self
                .state
                .compare_exchange(state, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) if next == QUEUED => return self.entrance.request(self),
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
    }
}

/// The baton of the [`Entrance`], handed on when dropped.
struct Baton(Arc<Entrance>);

impl Drop for Baton {
    fn drop(&mut self) {
        self.0.pass();
    }
}

/// Wait for `fut` on this thread, polling it only while holding the baton (after the first
/// poll); returns its output with the baton still held.
fn wait_in_line<F: Future>(entrance: &Arc<Entrance>, fut: F) -> (F::Output, Baton) {
    let place = Place::new(Arc::clone(entrance));
    let waker = Waker::from(Arc::clone(&place));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let mut baton = None;
    loop {
        if let Poll::Ready(value) = fut.as_mut().poll(&mut cx) {
            // Any later wake of this place is stale.
            place.state.store(QUEUED, Ordering::SeqCst);
            let baton = match baton {
                Some(baton) => baton,
                None => {
                    place.entrance.request(&place);
                    place.wait_for_baton()
                }
            };
            return (value, baton);
        }
        if place
            .state
            .compare_exchange(POLLING, IDLE, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // Woken while polling: poll again.
            place.state.store(POLLING, Ordering::SeqCst);
            continue;
        }
        // Hand the baton on (if held) and wait until a wake brings it back.
        drop(baton.take());
        baton = Some(place.wait_for_baton());
        place.state.store(POLLING, Ordering::SeqCst);
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
    let (value, entered, _baton) = py.detach(|| {
        let value = f();
        let (entered, baton) = through_entrance(&entrance, None);
        (value, entered, baton)
    });
    (value, entered)
}

/// Wait for `fut` detached from the interpreter (polled in line at the [`Entrance`]), then
/// attach again, counted, as [`detach`] does.
pub fn detach_until<F>(py: Python<'_>, fut: F) -> (F::Output, Entered)
where
    F: Future + Send,
    F::Output: Send,
{
    let entrance = ENTRANCE.get();
    let (value, entered, _baton) = py.detach(|| {
        if on_exit_thread() {
            let value = core_runtime::block_on(fut);
            let (entered, baton) = through_entrance(&entrance, None);
            return (value, entered, baton);
        }
        let (value, baton) = core_runtime::blocking(|| wait_in_line(&entrance, fut));
        let (entered, baton) = through_entrance(&entrance, Some(baton));
        (value, entered, baton)
    });
    (value, entered)
}

/// The way back into Python after a wait: counted, the baton held (taken now unless `baton`),
/// or parked for good if the interpreter may be finalizing.
fn through_entrance(entrance: &Arc<Entrance>, baton: Option<Baton>) -> (Entered, Option<Baton>) {
    let Some(entered) = enter() else {
        drop(baton);
        park_forever()
    };
    if on_exit_thread() {
        return (entered, None);
    }
    let baton = baton.unwrap_or_else(|| {
        let place = Place::new(Arc::clone(entrance));
        place.state.store(QUEUED, Ordering::SeqCst);
        entrance.request(&place);
        place.wait_for_baton()
    });
    if PHASE.load(Ordering::SeqCst) == FINAL {
        // Queued past the exit hook's patience: finalization may be under way.
        drop(baton);
        park_forever();
    }
    (entered, Some(baton))
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
    // NaN (or anything odd) means no wait; the clamp keeps the sum in range.
    let wait = Duration::try_from_secs_f64(timeout.clamp(0.0, 60.0)).unwrap_or(Duration::ZERO);
    let deadline = Instant::now()
        .checked_add(wait)
        .unwrap_or_else(Instant::now);
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
