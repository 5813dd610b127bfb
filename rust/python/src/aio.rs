//! The async door of `CredentialCache`, and coroutine providers.
//!
//! * Fresh credentials: `get_async()` returns an awaitable that is already done (`ready`).
//!   Awaiting it schedules nothing on the event loop; it costs about what `get()` costs.
//! * Otherwise the coroutines of one event loop that wait at the same time share one wait on
//!   the runtime (a [`Batch`]): they hold no thread, and their results reach the loop through
//!   one `call_soon_threadsafe`, handed out in chunks ([`Deliver`]) so that the loop keeps
//!   ticking while ten thousand waiters wake up.
//! * A coroutine provider (`async def provide()`) runs on creds_core's one event loop (a Python
//!   thread of its own, `creds_core._aio_loop`), never on a new loop per call, so clients it
//!   keeps stay usable across refreshes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use creds_core::flight::{self, FlightCtx};
use creds_core::process_local::ProcessLocal;
use creds_core::{CredentialCache, CredentialsError as CoreError, Entry};
use pyo3::exceptions::PyBaseException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;
use tokio::sync::oneshot;

use crate::credentials::PyCredentials;
use crate::workers::Answer;
use crate::{convert, errors, shutdown};

/// Results handed to waiting futures per turn of the event loop.
const DELIVER_CHUNK: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Work for Python, handed over by runtime threads (a provider call to start, results to
/// deliver).
type PythonJob = Box<dyn FnOnce(Python<'_>) + Send>;

#[derive(Default)]
struct PythonJobs {
    jobs: Vec<PythonJob>,
    draining: bool,
}

// A forked child starts with an empty queue (a parent thread may have held its lock).
static PYTHON_JOBS: ProcessLocal<Mutex<PythonJobs>> = ProcessLocal::new();

/// Run `job` with the GIL, soon, on a blocking thread. Jobs queued meanwhile run under the
/// same GIL hold: three hundred refreshes finishing together take the GIL once or a few times,
/// not three hundred threads queueing for it (which starves the caller's event loop).
fn with_gil_soon(job: PythonJob) {
    let jobs = PYTHON_JOBS.get();
    let mut queue = lock(&jobs);
    queue.jobs.push(job);
    if queue.draining {
        return;
    }
    queue.draining = true;
    drop(queue);
    creds_core::runtime::handle().spawn_blocking(move || loop {
        let taken = {
            let mut queue = lock(&jobs);
            if queue.jobs.is_empty() {
                queue.draining = false;
                return;
            }
            std::mem::take(&mut queue.jobs)
        };
        let ran = shutdown::attach(|py| {
            for job in taken {
                job(py);
            }
        });
        if ran.is_none() {
            // The interpreter is exiting: nobody can receive them.
            let mut queue = lock(&jobs);
            queue.jobs.clear();
            queue.draining = false;
            return;
        }
    });
}

/// Called in a forked child: the parent's queue and its drainer do not exist there.
pub fn after_fork_in_child() {
    PYTHON_JOBS.forget();
}

/// The waiting futures of one event loop, served by one wait on the runtime.
struct Batch {
    id: u64,
    generation: u64,
    /// False for a lookup nested in a provider's refresh: its outcome (a cycle error, say) is
    /// that lookup's own, so nobody else joins it.
    shared: bool,
    event_loop: Py<PyAny>,
    futures: Vec<Waiting>,
}

/// A waiting future, and whether it wants botocore's `ReadOnlyCredentials` (`get_frozen_async`)
/// rather than the `Credentials` (`get_async`).
struct Waiting {
    future: Py<PyAny>,
    frozen: bool,
}

static NEXT_BATCH: AtomicU64 = AtomicU64::new(1);

/// The batches of one cache, one per event loop that has coroutines waiting.
#[derive(Default)]
pub struct Waiters {
    batches: Mutex<Vec<Batch>>,
}

impl Waiters {
    fn take(&self, id: u64) -> Option<Batch> {
        let mut batches = lock(&self.batches);
        let at = batches.iter().position(|b| b.id == id)?;
        Some(batches.swap_remove(at))
    }
}

struct Interned {
    get_running_loop: Py<PyAny>,
    current_flight: Py<PyAny>,
}

static INTERNED: PyOnceLock<Interned> = PyOnceLock::new();

fn interned(py: Python<'_>) -> PyResult<&Interned> {
    INTERNED.get_or_try_init(py, || {
        let asyncio = py.import("asyncio")?;
        let aio_loop = py.import("creds_core._aio_loop")?;
        Ok(Interned {
            get_running_loop: asyncio.getattr("get_running_loop")?.unbind(),
            current_flight: aio_loop.getattr("current_flight")?.unbind(),
        })
    })
}

/// The flight of the coroutine provider running in this task (on creds_core's loop), if any:
/// a lookup it makes is nested in that flight.
fn current_flight(py: Python<'_>) -> PyResult<Option<Arc<FlightCtx>>> {
    let value = interned(py)?.current_flight.bind(py).call_method0("get")?;
    Ok(value
        .cast::<PyFlight>()
        .ok()
        .map(|f| Arc::clone(&f.get().ctx)))
}

/// `get_async()` (or, with `frozen`, `get_frozen_async()`) when the credentials are not fresh:
/// a future of the running loop, completed by the batch of that loop (or, for a lookup nested
/// in a provider's flight, a wait of its own).
pub fn wait<'py>(
    py: Python<'py>,
    cache: &CredentialCache,
    waiters: &Arc<Waiters>,
    frozen: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let names = interned(py)?;
    let event_loop = names.get_running_loop.bind(py).call0()?;
    let future = event_loop.call_method0("create_future")?;
    let parent = current_flight(py)?;
    let generation = creds_core::runtime::generation();
    let id = NEXT_BATCH.fetch_add(1, Ordering::Relaxed);
    {
        let mut batches = lock(&waiters.batches);
        if parent.is_none() {
            if let Some(batch) = batches.iter_mut().find(|b| {
                b.shared && b.generation == generation && b.event_loop.bind(py).is(&event_loop)
            }) {
                batch.futures.push(Waiting {
                    future: future.clone().unbind(),
                    frozen,
                });
                return Ok(future);
            }
        }
        batches.push(Batch {
            id,
            generation,
            shared: parent.is_none(),
            event_loop: event_loop.unbind(),
            futures: vec![Waiting {
                future: future.clone().unbind(),
                frozen,
            }],
        });
    }
    let cache = cache.clone();
    let waiters = Arc::clone(waiters);
    creds_core::runtime::handle().spawn(async move {
        let outcome = match parent {
            Some(ctx) => flight::scope(ctx, cache.get_slow()).await,
            None => cache.get_slow().await,
        };
        // Taken off the list first: a coroutine that starts waiting from now on starts a new
        // batch instead of joining one that is already answered.
        let Some(batch) = waiters.take(id) else {
            return;
        };
        with_gil_soon(Box::new(move |py| deliver(py, batch, outcome)));
    });
    Ok(future)
}

/// Hand a batch its outcome: one `call_soon_threadsafe` for the whole batch.
fn deliver(py: Python<'_>, batch: Batch, outcome: Result<Arc<Entry>, CoreError>) {
    let Batch {
        event_loop,
        futures,
        ..
    } = batch;
    let result = match outcome {
        Ok(entry) => crate::cache::credentials_object(py, &entry).map(Ok),
        Err(e) => Ok(Err(e)),
    };
    let result = match result {
        Ok(r) => r,
        Err(e) => Err(errors::from_pyerr(py, e)),
    };
    let deliver = Deliver {
        event_loop: event_loop.clone_ref(py),
        futures: Mutex::new(futures.into()),
        result,
    };
    let scheduled = Py::new(py, deliver).and_then(|d| {
        event_loop
            .bind(py)
            .call_method1("call_soon_threadsafe", (d,))
            .map(drop)
    });
    // A closed loop: nobody can receive it.
    drop(scheduled);
}

/// The results of one batch, set on its futures a chunk per turn of the loop.
#[pyclass(frozen, module = "creds_core._core", name = "_Deliver")]
struct Deliver {
    event_loop: Py<PyAny>,
    futures: Mutex<VecDeque<Waiting>>,
    result: Result<Py<PyCredentials>, CoreError>,
}

#[pymethods]
impl Deliver {
    fn __call__(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let chunk: Vec<Waiting> = {
            let mut futures = lock(&this.futures);
            let n = futures.len().min(DELIVER_CHUNK);
            futures.drain(..n).collect()
        };
        for Waiting { future, frozen } in chunk {
            let future = future.bind(py);
            // One future's trouble (cancelled meanwhile: done) never keeps the others waiting.
            if future
                .call_method0("done")
                .and_then(|d| d.is_truthy())
                .unwrap_or(true)
            {
                continue;
            }
            let _ = match &this.result {
                // botocore's namedtuple, built once for the batch (a failure to build it is
                // this future's answer: it never stays pending).
                Ok(credentials) if frozen => match credentials.get().frozen(py) {
                    Ok(f) => future.call_method1("set_result", (f,)),
                    Err(e) => future.call_method1("set_exception", (e.into_value(py),)),
                },
                Ok(credentials) => future.call_method1("set_result", (credentials,)),
                Err(e) => {
                    future.call_method1("set_exception", (errors::to_pyerr(py, e).into_value(py),))
                }
            };
        }
        if !lock(&this.futures).is_empty() {
            this.event_loop.bind(py).call_method1("call_soon", (slf,))?;
        }
        Ok(())
    }
}

/// A flight, as the coroutine provider running for it sees it (in a context variable).
#[pyclass(frozen, module = "creds_core._core", name = "_Flight")]
pub struct PyFlight {
    ctx: Arc<FlightCtx>,
}

#[pymethods]
impl PyFlight {
    /// The provider saw a throttled answer that its client retries itself: tell the refresh's
    /// `Limiter` now. False when the refresh has no limiter.
    fn note_throttled(&self) -> bool {
        self.ctx.note_throttled()
    }
}

/// `ctx` as a Python object.
pub fn flight_handle(
    py: Python<'_>,
    ctx: Option<&Arc<FlightCtx>>,
) -> PyResult<Option<Py<PyFlight>>> {
    ctx.map(|ctx| {
        Py::new(
            py,
            PyFlight {
                ctx: Arc::clone(ctx),
            },
        )
    })
    .transpose()
}

/// One call of a coroutine provider on creds_core's loop.
#[pyclass(frozen, module = "creds_core._core", name = "_AsyncTask")]
pub struct PyAsyncTask {
    call: Arc<Py<PyAny>>,
    ctx: Option<Arc<FlightCtx>>,
    tx: Mutex<Option<oneshot::Sender<Answer>>>,
}

impl PyAsyncTask {
    fn report(&self, answer: Answer) {
        if let Some(tx) = lock(&self.tx).take() {
            let _ = tx.send(answer);
        }
    }
}

#[pymethods]
impl PyAsyncTask {
    /// The provider to call.
    #[getter]
    fn provider(&self, py: Python<'_>) -> Py<PyAny> {
        self.call.clone_ref(py)
    }

    /// The flight this call serves (for the context of the provider's task).
    #[getter]
    fn flight(&self, py: Python<'_>) -> PyResult<Option<Py<PyFlight>>> {
        flight_handle(py, self.ctx.as_ref())
    }

    /// Whether anyone still awaits the answer.
    #[getter]
    fn wanted(&self) -> bool {
        lock(&self.tx).as_ref().is_some_and(|tx| !tx.is_closed())
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
}

/// Run one call of a coroutine provider on creds_core's loop and await its answer; `None` if
/// it was dropped without one.
pub async fn call(call: Arc<Py<PyAny>>) -> Option<Answer> {
    let (tx, rx) = oneshot::channel();
    let task = PyAsyncTask {
        call,
        ctx: flight::current(),
        tx: Mutex::new(Some(tx)),
    };
    let (submitted_tx, submitted_rx) = oneshot::channel::<Option<CoreError>>();
    with_gil_soon(Box::new(move |py| {
        let submitted = Py::new(py, task).and_then(|task| {
            py.import("creds_core._aio_loop")?
                .call_method1("submit", PyTuple::new(py, [task])?)
                .map(drop)
        });
        let _ = submitted_tx.send(submitted.err().map(|e| errors::from_pyerr(py, e)));
    }));
    match submitted_rx.await {
        Ok(None) => rx.await.ok(),
        Ok(Some(error)) => Some(Err(error)),
        // Dropped unsubmitted: the interpreter is exiting.
        Err(_) => Some(Err(errors::interpreter_exiting())),
    }
}
