//! The threads Python providers run on. They are Python threads (started by `threading`, in
//! `creds_core._workers`), and a provider's code runs there under Python frames only: the
//! worker asks Rust for a task, calls the provider itself, and hands the answer back. So
//! CPython can end such a thread at interpreter exit like any daemon thread; a Rust thread
//! running Python code would abort the process instead (see `shutdown`).
//!
//! The threading rules of `creds_core::flight` hold unchanged: top-level work queues for a
//! bounded pool (`max_blocking_threads` workers), nested work gets a thread of its own. Threads
//! are started by one *spawner* thread, a Python thread that does nothing else, so that a
//! thread of its own can be had while every pool worker is busy.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use creds_core::flight::{self, Executor, FlightCtx, Job};
use creds_core::process_local::ProcessLocal;
use creds_core::{Credentials, CredentialsError as CoreError};
use pyo3::exceptions::PyBaseException;
use pyo3::prelude::*;
use tokio::sync::oneshot;

use crate::{convert, errors, shutdown};

/// How long an idle pool worker waits for work before its thread ends.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// What a provider call reports.
pub type Answer = Result<Credentials, CoreError>;

/// One call of a Python provider.
pub struct PyWork {
    pub call: Arc<Py<PyAny>>,
    pub tx: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Queues {
    tasks: VecDeque<Arc<Job<PyWork>>>,
    /// Pool workers waiting for a task.
    idle: usize,
    /// Pool workers alive, or asked of the spawner.
    live: usize,
    /// Threads the spawner is to start: a pool worker (`None`) or one for a single job.
    spawns: VecDeque<Option<Arc<Job<PyWork>>>>,
}

/// The pool of Python threads for one process (a forked child gets a new one).
#[derive(Default)]
pub struct Pool {
    queues: Mutex<Queues>,
    task_ready: Condvar,
    spawn_ready: Condvar,
    spawner_started: AtomicBool,
    /// Replaced by `configure_runtime`: its threads end once their work is done.
    retired: AtomicBool,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn request_spawn(&self, q: &mut Queues, job: Option<Arc<Job<PyWork>>>) {
        q.spawns.push_back(job);
        self.spawn_ready.notify_one();
    }

    /// Ask for one more pool worker if queued tasks outnumber idle workers and the pool has
    /// room.
    fn grow_if_needed(&self, q: &mut Queues) {
        if q.tasks.len() > q.idle && q.live < max_workers() {
            q.live += 1;
            self.request_spawn(q, None);
        }
    }
}

/// The pool's size: `max_blocking_threads` of the runtime configuration.
fn max_workers() -> usize {
    creds_core::runtime::config().max_blocking_threads.max(1)
}

impl Executor for Pool {
    type Work = PyWork;

    fn pool(&self, job: Arc<Job<PyWork>>) {
        let mut q = self.lock();
        q.tasks.push_back(job);
        self.grow_if_needed(&mut q);
        self.task_ready.notify_one();
    }

    fn own_thread(&self, job: Arc<Job<PyWork>>) {
        let mut q = self.lock();
        if job.give_back_slot() {
            // A pool worker runs it (maybe hung): that worker no longer counts, so queued work
            // gets a worker of its own instead of waiting behind it.
            q.live = q.live.saturating_sub(1);
            self.grow_if_needed(&mut q);
            return;
        }
        self.request_spawn(&mut q, Some(job));
    }
}

static POOL: ProcessLocal<Pool> = ProcessLocal::new();

/// This process's pool.
pub fn pool() -> Arc<Pool> {
    POOL.get()
}

/// Start the spawner thread of this process's pool, if it is not running yet. Called with the
/// GIL wherever a Python provider may be about to be called.
pub fn ensure_started(py: Python<'_>) -> PyResult<()> {
    let pool = pool();
    if pool.spawner_started.load(Ordering::Acquire) {
        return Ok(());
    }
    if pool.spawner_started.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    let handle = Py::new(
        py,
        PyWorkerPool {
            pool: Arc::clone(&pool),
        },
    )?;
    let started = py
        .import("creds_core._workers")
        .and_then(|m| m.call_method1("start_spawner", (handle,)));
    if let Err(e) = started {
        pool.spawner_started.store(false, Ordering::Release);
        return Err(e);
    }
    Ok(())
}

/// Pool sizes changed (`configure_runtime`): later work goes to a new pool; this one's threads
/// end once the work already given to it is done.
pub fn retire() {
    if let Some(old) = POOL.take() {
        old.retired.store(true, Ordering::SeqCst);
        let _q = old.lock();
        old.task_ready.notify_all();
        old.spawn_ready.notify_all();
    }
}

/// Called in a forked child: the parent's worker threads do not exist there.
pub fn after_fork_in_child() {
    POOL.forget();
}

/// Hand a provider call to the pool (or a thread of its own) and await its answer; `None` if
/// it was dropped without an answer.
pub async fn call(work_call: Arc<Py<PyAny>>) -> Option<Answer> {
    let (tx, rx) = oneshot::channel();
    let dispatched = flight::dispatch(
        &pool(),
        PyWork {
            call: work_call,
            tx,
        },
    );
    let answer = rx.await.ok();
    drop(dispatched);
    answer
}

/// The pool, as the spawner and the workers see it.
#[pyclass(name = "_WorkerPool", module = "creds_core._core", frozen)]
pub struct PyWorkerPool {
    pool: Arc<Pool>,
}

#[pymethods]
impl PyWorkerPool {
    /// For the spawner: wait for the next thread to start: `("worker", None)` for a pool
    /// worker, `("task", task)` for a thread that runs only `task`; `None` once the pool is
    /// retired and the spawner should end.
    fn next_spawn(&self, py: Python<'_>) -> Option<(&'static str, Option<PyTask>)> {
        let pool = Arc::clone(&self.pool);
        let (next, _entered) = shutdown::detach(py, move || {
            let mut q = pool.lock();
            loop {
                match q.spawns.pop_front() {
                    Some(None) => return Some(("worker", None)),
                    Some(Some(job)) => {
                        if let Some(task) = PyTask::claim(&job) {
                            return Some(("task", Some(task)));
                        }
                    }
                    None if pool.retired.load(Ordering::SeqCst) => return None,
                    None => {
                        q = pool
                            .spawn_ready
                            .wait(q)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                }
            }
        });
        next
    }

    /// For a pool worker, after `done` (its previous task, if any): the next task, or `None`
    /// when the thread should end (idle long enough, or no longer counted in a full pool).
    #[pyo3(signature = (done=None))]
    fn next_task(&self, py: Python<'_>, done: Option<&PyTask>) -> Option<PyTask> {
        let pool = Arc::clone(&self.pool);
        let done = done.and_then(|t| t.job.clone());
        let (task, _entered) = shutdown::detach(py, move || {
            let mut q = pool.lock();
            // Under the pool's lock, like `own_thread`'s `give_back_slot`: one of the two wins.
            if done.is_some_and(|job| !job.release_slot()) {
                // This thread stopped counting while it ran its last task: it may count again.
                if q.live >= max_workers() || pool.retired.load(Ordering::SeqCst) {
                    return None;
                }
                q.live += 1;
            }
            loop {
                while let Some(job) = q.tasks.pop_front() {
                    if let Some(mut task) = PyTask::claim(&job) {
                        job.hold_slot();
                        task.job = Some(job);
                        return Some(task);
                    }
                }
                if pool.retired.load(Ordering::SeqCst) {
                    q.live = q.live.saturating_sub(1);
                    return None;
                }
                q.idle += 1;
                let (guard, timeout) = pool
                    .task_ready
                    .wait_timeout(q, KEEP_ALIVE)
                    .unwrap_or_else(PoisonError::into_inner);
                q = guard;
                q.idle -= 1;
                if timeout.timed_out() && q.tasks.is_empty() {
                    q.live = q.live.saturating_sub(1);
                    return None;
                }
            }
        });
        task
    }

    /// For the spawner: a pool worker could not be started.
    fn worker_not_started(&self) {
        let mut q = self.pool.lock();
        q.live = q.live.saturating_sub(1);
    }
}

/// One provider call, claimed by the thread that runs it.
#[pyclass(name = "_Task", module = "creds_core._core", frozen)]
pub struct PyTask {
    /// Set for a task a pool worker runs.
    job: Option<Arc<Job<PyWork>>>,
    call: Arc<Py<PyAny>>,
    ctx: Option<Arc<FlightCtx>>,
    tx: Mutex<Option<oneshot::Sender<Answer>>>,
    previous: Mutex<Option<Option<Arc<FlightCtx>>>>,
}

impl PyTask {
    /// The job's work, unless another thread has it or nobody awaits its answer any more.
    fn claim(job: &Job<PyWork>) -> Option<Self> {
        let work = job.take()?;
        if work.tx.is_closed() {
            return None;
        }
        Some(Self {
            job: None,
            call: work.call,
            ctx: job.ctx(),
            tx: Mutex::new(Some(work.tx)),
            previous: Mutex::new(None),
        })
    }

    fn report(&self, answer: Answer) {
        if let Some(previous) = lock(&self.previous).take() {
            flight::set_current(previous);
        }
        if let Some(tx) = lock(&self.tx).take() {
            let _ = tx.send(answer);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[pymethods]
impl PyTask {
    /// Make the task's flight this thread's (so that lookups the provider makes are nested)
    /// and return the provider to call.
    fn begin(&self, py: Python<'_>) -> Py<PyAny> {
        let previous = flight::set_current(self.ctx.clone());
        *lock(&self.previous) = Some(previous);
        self.call.clone_ref(py)
    }

    /// The flight this call serves, for an awaitable the provider returned (it runs on
    /// creds_core's loop, nested lookups included).
    #[getter]
    fn flight(&self, py: Python<'_>) -> PyResult<Option<Py<crate::aio::PyFlight>>> {
        crate::aio::flight_handle(py, self.ctx.as_ref())
    }

    /// The provider answered.
    fn finish(&self, answer: &Bound<'_, PyAny>) {
        let Some(_entered) = shutdown::enter() else {
            return self.report(Err(errors::interpreter_exiting()));
        };
        self.report(convert::provider_answer(answer));
    }

    /// The provider raised.
    fn fail(&self, error: &Bound<'_, PyBaseException>) {
        let Some(_entered) = shutdown::enter() else {
            return self.report(Err(errors::interpreter_exiting()));
        };
        let py = error.py();
        self.report(Err(errors::from_pyerr(
            py,
            PyErr::from_value(error.clone().into_any()),
        )));
    }

    /// The thread for this task could not be started.
    fn not_started(&self, reason: &str) {
        self.report(Err(CoreError::recoverable(format!(
            "no thread could be started for the provider call: {reason}"
        ))));
    }
}
