//! The threading rules that make deadlock impossible.
//!
//! A *flight* is one refresh of one cache. Providers that block run their blocking work through
//! [`dispatch`] on an [`Executor`] ([`run_blocking`] on the [`ThreadExecutor`]: the runtime's
//! blocking pool and plain threads; the Python layer has one of Python threads):
//!
//! * For a flight that only top-level callers wait on, the work goes to the executor's bounded
//!   pool.
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
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use tokio::sync::oneshot;

use crate::limiter::Limiter;
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
    /// Queued blocking work, with how to move it to a thread of its own.
    pending: Mutex<Vec<Pending>>,
    waiting_on: Mutex<Option<Weak<FlightCtx>>>,
    /// The limiter its source calls go through, if any.
    limiter: OnceLock<Arc<Limiter>>,
    /// Throttled answers the provider reported itself during its current call.
    noted_throttles: AtomicU32,
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
            limiter: OnceLock::new(),
            noted_throttles: AtomicU32::new(0),
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
            for pending in queued {
                (pending.promote)();
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

    /// This flight's source calls go through `limiter`.
    pub fn set_limiter(&self, limiter: &Arc<Limiter>) {
        let _ = self.limiter.set(Arc::clone(limiter));
    }

    /// The provider saw a throttled answer that it retries itself (an SDK client's own retry):
    /// tell the flight's limiter now, so that it slows down without waiting for the call to
    /// end. False when the flight has no limiter.
    pub fn note_throttled(&self) -> bool {
        let Some(limiter) = self.limiter.get() else {
            return false;
        };
        limiter.note_throttled();
        self.noted_throttles.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// How many throttled answers were noted since the last call of this method.
    pub fn take_noted_throttles(&self) -> u32 {
        self.noted_throttles.swap(0, Ordering::SeqCst)
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

/// Queued blocking work of a flight, and how to move it to a thread of its own.
struct Pending {
    id: usize,
    promote: Box<dyn FnOnce() + Send>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("id", &self.id).finish()
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

/// Work that exactly one thread runs: the pool thread that dequeues it, or a thread of its own
/// if its flight became nested first. `W` is what an [`Executor`] knows how to run.
pub struct Job<W> {
    work: Mutex<Option<W>>,
    ctx: Option<Arc<FlightCtx>>,
    /// For executors that count pool slots: the job holds one (see [`Job::hold_slot`]).
    slot: AtomicU8,
}

const NO_SLOT: u8 = 0;
const HOLDS_SLOT: u8 = 1;
const SLOT_GIVEN_BACK: u8 = 2;

impl<W> std::fmt::Debug for Job<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl<W> Job<W> {
    /// The work, to the first thread that asks; `None` to every later one.
    pub fn take(&self) -> Option<W> {
        lock(&self.work).take()
    }

    /// A pool thread runs this job and holds a pool slot for it.
    pub fn hold_slot(&self) {
        self.slot.store(HOLDS_SLOT, Ordering::SeqCst);
    }

    /// Its flight became nested (a caller timed out on it, or a provider thread waits on it)
    /// while a pool thread runs it: the pool may stop counting that thread, so that a hung
    /// call does not keep a slot from other work. True the first time only, and only if the
    /// job held a slot.
    pub fn give_back_slot(&self) -> bool {
        self.slot
            .compare_exchange(
                HOLDS_SLOT,
                SLOT_GIVEN_BACK,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    }

    /// The pool thread is done with this job: it stops holding its slot. False when the slot
    /// was given back meanwhile (the thread no longer counts in the pool).
    pub fn release_slot(&self) -> bool {
        self.slot
            .compare_exchange(HOLDS_SLOT, NO_SLOT, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// The flight this work belongs to: the thread that runs it makes it current (see
    /// [`set_current`]) while it runs, so that lookups it makes are known to be nested.
    #[must_use]
    pub fn ctx(&self) -> Option<Arc<FlightCtx>> {
        self.ctx.clone()
    }
}

/// Make `ctx` the flight of this thread's blocking work; returns the previous one, to be put
/// back when the work is done.
pub fn set_current(ctx: Option<Arc<FlightCtx>>) -> Option<Arc<FlightCtx>> {
    CURRENT.with(|c| c.replace(ctx))
}

/// Where blocking work runs. Both calls return at once.
pub trait Executor: Send + Sync + 'static {
    /// What a [`Job`] carries for this executor.
    type Work: Send + 'static;
    /// Run `job` on the bounded pool, after the work queued before it.
    fn pool(&self, job: Arc<Job<Self::Work>>);
    /// Run `job` on a thread of its own, now; it must never wait for a pool thread. Also called
    /// for a job a pool thread already runs (its flight became nested meanwhile): then there is
    /// nothing to run, but a pool that counts slots may give that job's slot back.
    fn own_thread(&self, job: Arc<Job<Self::Work>>);
}

fn job_id<W>(job: &Arc<Job<W>>) -> usize {
    Arc::as_ptr(job) as *const () as usize
}

/// Hand `work` of the current flight to `executor`: to its pool, or to a thread of its own
/// when a provider thread already waits on the flight (and later, if one starts waiting while
/// the work is still queued). Completes when the job has left the queue one way or the other;
/// the work itself reports its result through its own channel.
pub fn dispatch<E: Executor>(executor: &Arc<E>, work: E::Work) -> Dispatched {
    let ctx = FLIGHT.try_with(Arc::clone).ok();
    let job = Arc::new(Job {
        work: Mutex::new(Some(work)),
        ctx: ctx.clone(),
        slot: AtomicU8::new(NO_SLOT),
    });
    let id = job_id(&job);
    match &ctx {
        Some(ctx) if ctx.nested.load(Ordering::SeqCst) => executor.own_thread(job),
        _ => {
            if let Some(ctx) = &ctx {
                let promote = {
                    let executor = Arc::clone(executor);
                    let job = Arc::clone(&job);
                    Box::new(move || executor.own_thread(job))
                };
                lock(&ctx.pending).push(Pending { id, promote });
                // Became nested between the check and the push: promote it ourselves.
                if ctx.nested.load(Ordering::SeqCst) {
                    let mine = {
                        let mut pending = lock(&ctx.pending);
                        pending
                            .iter()
                            .position(|p| p.id == id)
                            .map(|at| pending.remove(at))
                    };
                    if let Some(pending) = mine {
                        (pending.promote)();
                    }
                }
            }
            executor.pool(job);
        }
    }
    Dispatched { ctx, id }
}

/// A dispatched job; dropping it (once the work has reported) forgets the job's place in its
/// flight's promotion list.
#[derive(Debug)]
pub struct Dispatched {
    ctx: Option<Arc<FlightCtx>>,
    id: usize,
}

impl Drop for Dispatched {
    fn drop(&mut self) {
        if let Some(ctx) = &self.ctx {
            lock(&ctx.pending).retain(|p| p.id != self.id);
        }
    }
}

/// The executor of [`run_blocking`]: the runtime's bounded blocking pool, and plain threads.
#[derive(Debug, Default)]
pub struct ThreadExecutor;

type BoxedWork = Box<dyn FnOnce() + Send>;

fn run_job(job: &Job<BoxedWork>) {
    if let Some(work) = job.take() {
        let previous = set_current(job.ctx());
        work();
        set_current(previous);
    }
}

impl Executor for ThreadExecutor {
    type Work = BoxedWork;

    fn pool(&self, job: Arc<Job<BoxedWork>>) {
        runtime::current_or_shared().spawn_blocking(move || run_job(&job));
    }

    fn own_thread(&self, job: Arc<Job<BoxedWork>>) {
        let spawned = std::thread::Builder::new()
            .name("creds-core-nested".into())
            .spawn({
                let job = Arc::clone(&job);
                move || run_job(&job)
            });
        if spawned.is_err() {
            // Out of threads: the pool copy of the job (if any) still runs it later.
            log::warn!(
                "creds_core: could not start a thread for a nested refresh; it waits for the pool"
            );
        }
    }
}

/// Run blocking provider work `f` for the current flight on a [`ThreadExecutor`] and await its
/// result; `None` when the work was dropped without running (the runtime shut down, or no
/// thread could be had).
///
/// # Panics
/// Re-raises a panic of `f` in the awaiting task.
pub async fn run_blocking<T, F>(f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    static EXECUTOR: std::sync::OnceLock<Arc<ThreadExecutor>> = std::sync::OnceLock::new();
    let executor = EXECUTOR.get_or_init(|| Arc::new(ThreadExecutor));
    let (tx, rx) = oneshot::channel();
    let work: BoxedWork = Box::new(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(result);
    });
    let dispatched = dispatch(executor, work);
    let result = rx.await;
    drop(dispatched);
    match result {
        Ok(Ok(value)) => Some(value),
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => None,
    }
}
