//! The process-wide tokio runtime, built lazily, rebuilt after `fork()`, and a `block_on` that is
//! safe from any thread (plain, blocking-pool, or runtime worker).

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::process_local::ProcessLocal;
use tokio::runtime::{Builder, Handle, Runtime, RuntimeFlavor};

/// Sizes of the shared runtime's thread pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Async worker threads (flights, timers). They never run provider code.
    pub worker_threads: usize,
    /// Upper bound of the blocking pool on which top-level provider calls run.
    pub max_blocking_threads: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            worker_threads: 2,
            max_blocking_threads: 64,
        }
    }
}

// No mutex guards the runtime: a mutex held by another thread at `fork()` time would stay
// locked forever in the child. The runtime is an atomic pointer and the sizes are atomics.
static RUNTIME: ProcessLocal<Runtime> = ProcessLocal::new();
static WORKER_THREADS: AtomicUsize = AtomicUsize::new(2);
static MAX_BLOCKING_THREADS: AtomicUsize = AtomicUsize::new(64);
/// Runtimes replaced by `configure` whose retiring thread could not be started: kept alive
/// so that work already on them finishes.
static RETIRED: Mutex<Vec<Arc<Runtime>>> = Mutex::new(Vec::new());
/// How often a retiring runtime is checked for work still on it.
const RETIRE_CHECK: Duration = Duration::from_millis(20);
/// How long a retired runtime's shutdown waits for its threads.
const RETIRE_SHUTDOWN: Duration = Duration::from_secs(5);

/// Bumped in a forked child: refreshes started by the parent never finish in the child.
static GENERATION: AtomicU64 = AtomicU64::new(0);

fn build(config: RuntimeConfig) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(config.worker_threads.max(1))
        .max_blocking_threads(config.max_blocking_threads.max(1))
        .thread_name("creds-core")
        .enable_time()
        .build()
        .expect("creds_core: cannot start the tokio runtime (out of threads?)")
}

/// The shared runtime's handle, starting it on first use.
#[must_use]
pub fn handle() -> Handle {
    shared().handle().clone()
}

/// The shared runtime, starting it on first use. Holding it keeps a replaced runtime from
/// retiring (see [`configure`]).
fn shared() -> Arc<Runtime> {
    // Of two runtimes built at once, the loser has run nothing: shut down without waiting
    // (dropping it could block, and must not inside another runtime).
    RUNTIME.get_or_init(|| build(config()), Runtime::shutdown_background)
}

/// The runtime context to spawn on: the caller's own tokio runtime if it has one (as in
/// `#[tokio::test]`), otherwise the shared runtime.
#[must_use]
pub fn current_or_shared() -> Handle {
    Handle::try_current().unwrap_or_else(|_| handle())
}

/// Replace the shared runtime's pool sizes. Work already running finishes on the old runtime,
/// which then shuts down: its threads end.
pub fn configure(config: RuntimeConfig) {
    WORKER_THREADS.store(config.worker_threads, Ordering::SeqCst);
    MAX_BLOCKING_THREADS.store(config.max_blocking_threads, Ordering::SeqCst);
    if let Some(old) = RUNTIME.take() {
        retire(old);
    }
}

/// Shut `old` down once nothing uses it: no task alive on it and no thread blocked on it (a
/// blocked thread holds it, see [`blocking`]). A thread of its own waits for that, so that
/// `configure` returns at once.
fn retire(old: Arc<Runtime>) {
    let keep = Arc::clone(&old);
    let retiring = std::thread::Builder::new()
        .name("creds-core-retire".into())
        .spawn(move || {
            while Arc::strong_count(&old) > 1 || old.metrics().num_alive_tasks() > 0 {
                std::thread::sleep(RETIRE_CHECK);
            }
            if let Ok(runtime) = Arc::try_unwrap(old) {
                runtime.shutdown_timeout(RETIRE_SHUTDOWN);
            }
        });
    match retiring {
        Ok(_) => drop(keep),
        // No thread to retire it with: keep it for the life of the process.
        Err(_) => RETIRED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(keep),
    }
}

/// The current pool sizes.
#[must_use]
pub fn config() -> RuntimeConfig {
    RuntimeConfig {
        worker_threads: WORKER_THREADS.load(Ordering::SeqCst),
        max_blocking_threads: MAX_BLOCKING_THREADS.load(Ordering::SeqCst),
    }
}

/// Call in a forked child before anything else: the parent's runtime threads do not exist
/// there, so its runtime is forgotten (never dropped: dropping would wait for them) and a new
/// one is built on next use.
pub fn after_fork_in_child() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
    RUNTIME.forget();
    // The retired list's lock may have been held by a parent thread at fork time; its
    // runtimes are then simply never dropped.
    if let Ok(mut retired) = RETIRED.try_lock() {
        for old in retired.drain(..) {
            std::mem::forget(old);
        }
    }
}

/// The fork generation of this process.
#[must_use]
pub fn generation() -> u64 {
    GENERATION.load(Ordering::SeqCst)
}

/// Run `fut` to completion on the calling thread, whatever thread it is. It never panics for
/// being inside a runtime: timers register with the runtime's driver, and on a runtime worker
/// the worker's other tasks are handed off first (`block_in_place`). On a current-thread
/// runtime's thread (which this call blocks) the work is spawned on the shared runtime instead,
/// or the refresh and its load timeout would wait for the blocked thread forever.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    blocking(|| futures::executor::block_on(fut))
}

/// Run `wait`, which blocks the calling thread until futures it polls complete (an executor's
/// `block_on`), in the runtime context that [`block_on`] describes.
pub fn blocking<R>(wait: impl FnOnce() -> R) -> R {
    let current = Handle::try_current().ok();
    let on_multi_thread = current
        .as_ref()
        .is_some_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    // On the shared runtime, hold it while blocked on it: a replaced runtime retires only
    // once no thread waits on it.
    let (handle, _holding) = match current {
        Some(h) if h.runtime_flavor() != RuntimeFlavor::CurrentThread => (h, None),
        _ => {
            let runtime = shared();
            (runtime.handle().clone(), Some(runtime))
        }
    };
    let _entered = handle.enter();
    if on_multi_thread {
        tokio::task::block_in_place(wait)
    } else {
        wait()
    }
}
