//! The threading rules that make deadlock impossible.
//!
//! A *flight* is one refresh of one cache. Providers that block (a Python provider) run their
//! blocking work through [`run_blocking`]:
//!
//! * For a flight that only top-level callers wait on, the work goes to the runtime's bounded
//!   blocking pool.
//! * A flight that a provider thread waits on (a nested lookup: an assume-role provider asking
//!   its source cache) is marked *nested*: its blocking work runs on a thread of its own, and
//!   work it already queued on the pool is taken out of the queue and run on a thread of its
//!   own too. A thread that holds a pool slot therefore never waits for another pool slot, so
//!   N distinct nested lookups complete for any N, whatever the pool size.
//!
//! Cycles are found instead of waited on: each flight knows the caches its callers are
//! refreshing (`lineage`) and which flight it is itself waiting on (`waiting_on`), so a
//! lookup that would wait, directly or through other flights, on its own refresh fails at once.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::oneshot;

use crate::runtime;

/// The context of one flight.
#[derive(Debug)]
pub struct FlightCtx {
    /// Ids of the caches being refreshed by this flight and by the flights waiting on it
    /// from provider threads (its ancestors), this flight's cache last.
    lineage: Vec<u64>,
    nested: AtomicBool,
    /// Mirrors `nested` for waiters: a flight queued for a limiter slot stops waiting for it
    /// once a provider thread (which may hold a slot) depends on it.
    nested_signal: tokio::sync::watch::Sender<bool>,
    pending: Mutex<Vec<Arc<Job>>>,
    waiting_on: Mutex<Option<Weak<FlightCtx>>>,
}

impl FlightCtx {
    /// The context of a flight for cache `cache_id`, started by a caller running inside
    /// `parent` (a provider thread) or by a top-level caller (`None`).
    #[must_use]
    pub fn new(cache_id: u64, parent: Option<&Arc<FlightCtx>>) -> Arc<Self> {
        let mut lineage = parent.map(|p| p.lineage.clone()).unwrap_or_default();
        lineage.push(cache_id);
        Arc::new(Self {
            lineage,
            nested: AtomicBool::new(parent.is_some()),
            nested_signal: tokio::sync::watch::channel(parent.is_some()).0,
            pending: Mutex::new(Vec::new()),
            waiting_on: Mutex::new(None),
        })
    }

    /// Whether cache `cache_id` is being refreshed by this flight or one waiting on it.
    #[must_use]
    pub fn refreshes(&self, cache_id: u64) -> bool {
        self.lineage.contains(&cache_id)
    }

    /// A provider thread waits on this flight: from now on none of its blocking work waits
    /// for a pool slot.
    pub fn mark_nested(&self) {
        if !self.nested.swap(true, Ordering::SeqCst) {
            self.nested_signal.send_replace(true);
            let queued = std::mem::take(&mut *lock(&self.pending));
            for job in queued {
                spawn_own_thread(job);
            }
        }
    }

    /// Whether a provider thread depends on this flight.
    #[must_use]
    pub fn is_nested(&self) -> bool {
        self.nested.load(Ordering::SeqCst)
    }

    /// Completes once a provider thread depends on this flight.
    pub async fn became_nested(&self) {
        let mut rx = self.nested_signal.subscribe();
        let _ = rx.wait_for(|nested| *nested).await;
    }

    /// Record that this flight now waits on `other`; false when that wait would close a cycle.
    #[must_use]
    pub fn begin_wait(self: &Arc<Self>, other: &Arc<FlightCtx>) -> bool {
        *lock(&self.waiting_on) = Some(Arc::downgrade(other));
        let mut cursor = Some(Arc::clone(other));
        // Wait chains are as long as credential chains: a handful of links.
        for _ in 0..256 {
            let Some(ctx) = cursor else { return true };
            if Arc::ptr_eq(&ctx, self) {
                self.end_wait();
                return false;
            }
            cursor = lock(&ctx.waiting_on).as_ref().and_then(Weak::upgrade);
        }
        true
    }

    /// The wait recorded by [`FlightCtx::begin_wait`] is over.
    pub fn end_wait(&self) {
        *lock(&self.waiting_on) = None;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

tokio::task_local! {
    static FLIGHT: Arc<FlightCtx>;
}

thread_local! {
    /// Set while this thread runs blocking provider work for a flight.
    static CURRENT: RefCell<Option<Arc<FlightCtx>>> = const { RefCell::new(None) };
}

/// The flight whose blocking provider work this thread is running, or else the flight whose
/// provider future this task is running (an async provider awaiting another cache), if any.
#[must_use]
pub fn current() -> Option<Arc<FlightCtx>> {
    CURRENT
        .with(|c| c.borrow().clone())
        .or_else(|| FLIGHT.try_with(Arc::clone).ok())
}

/// Run `fut` (a provider's `provide`) as part of flight `ctx`.
pub async fn scope<F: std::future::Future>(ctx: Arc<FlightCtx>, fut: F) -> F::Output {
    FLIGHT.scope(ctx, fut).await
}

/// Blocking work that exactly one thread runs: the pool thread that dequeues it, or a thread
/// of its own if its flight became nested first.
struct Job {
    work: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Job {
    fn run(&self) {
        let work = lock(&self.work).take();
        if let Some(work) = work {
            work();
        }
    }
}

fn spawn_own_thread(job: Arc<Job>) {
    let spawned = std::thread::Builder::new()
        .name("creds-core-nested".into())
        .spawn({
            let job = Arc::clone(&job);
            move || job.run()
        });
    if spawned.is_err() {
        // Out of threads: the pool copy of the job (if any) still runs it later.
        log::warn!(
            "creds_core: could not start a thread for a nested refresh; it waits for the pool"
        );
    }
}

/// Run blocking provider work `f` for the current flight and await its result; `None` when
/// the work was dropped without running (the runtime shut down, or no thread could be had).
///
/// # Panics
/// Re-raises a panic of `f` in the awaiting task.
pub async fn run_blocking<T, F>(f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let ctx = FLIGHT.try_with(Arc::clone).ok();
    let (tx, rx) = oneshot::channel();
    let job_ctx = ctx.clone();
    let job = Arc::new(Job {
        work: Mutex::new(Some(Box::new(move || {
            let previous = CURRENT.with(|c| c.replace(job_ctx));
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            CURRENT.with(|c| *c.borrow_mut() = previous);
            let _ = tx.send(result);
        }))),
    });
    match &ctx {
        Some(ctx) if ctx.nested.load(Ordering::SeqCst) => spawn_own_thread(Arc::clone(&job)),
        _ => {
            if let Some(ctx) = &ctx {
                lock(&ctx.pending).push(Arc::clone(&job));
                // Became nested between the check and the push: promote it ourselves.
                if ctx.nested.load(Ordering::SeqCst) {
                    lock(&ctx.pending).retain(|j| !Arc::ptr_eq(j, &job));
                    spawn_own_thread(Arc::clone(&job));
                }
            }
            let pooled = Arc::clone(&job);
            runtime::current_or_shared().spawn_blocking(move || pooled.run());
        }
    }
    let result = rx.await;
    if let Some(ctx) = &ctx {
        lock(&ctx.pending).retain(|j| !Arc::ptr_eq(j, &job));
    }
    match result {
        Ok(Ok(value)) => Some(value),
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => None,
    }
}
