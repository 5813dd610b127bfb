//! `creds_core.CredentialCache`: the core cache with a blocking door (`get`) and an async door
//! (`get_async`), one shape each.

use std::sync::Arc;

use creds_core::{
    AdvisoryRefresh, CredentialCache, Credentials, Entry, ProvideCredentials, ProvideFuture,
    RefreshPolicy, SharedClock, SharedProvider,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::aio::{self, Waiters};
use crate::convert::Num;
use crate::credentials::PyCredentials;
use crate::limiter::PyLimiter;
use crate::{convert, errors, provider, runtime, workers};

/// A credential cache with single-flight refresh and the AWS refresh policy.
#[pyclass(frozen, weakref, module = "creds_core", name = "CredentialCache")]
pub struct PyCredentialCache {
    cache: CredentialCache,
    provider: Py<PyAny>,
    limiter: Option<Py<PyAny>>,
    /// Coroutines waiting in `get_async()`, one batch per event loop.
    waiters: Arc<Waiters>,
}

/// The pre-built Python object for a cache entry, made once per entry.
pub(crate) fn credentials_object(py: Python<'_>, entry: &Entry) -> PyResult<Py<PyCredentials>> {
    if let Some(obj) = entry.attachment::<Py<PyCredentials>>() {
        return Ok(obj.clone_ref(py));
    }
    let made = Py::new(py, PyCredentials::wrap(entry.credentials().clone()))?;
    let kept = entry.attachment_or_init(|| made.clone_ref(py));
    Ok(kept.map_or(made, |obj| obj.clone_ref(py)))
}

/// A cache used as a provider (inside a chain or another cache) answers through its cache.
struct CacheProvider(CredentialCache);

impl ProvideCredentials for CacheProvider {
    fn provide(&self) -> ProvideFuture<'_> {
        Box::pin(async move { self.0.get().await.map(|e| e.credentials().clone()) })
    }
    fn fallback_on_interrupt(&self) -> Option<Credentials> {
        self.0.last_good().map(|e| e.credentials().clone())
    }
    fn name(&self) -> &str {
        self.0.name()
    }
}

impl PyCredentialCache {
    pub fn as_provider(&self) -> SharedProvider {
        Arc::new(CacheProvider(self.cache.clone()))
    }
}

fn opt_time(
    py: Python<'_>,
    t: Option<std::time::SystemTime>,
) -> PyResult<Option<Bound<'_, PyAny>>> {
    t.map(|t| convert::datetime(py, t)).transpose()
}

#[pymethods]
impl PyCredentialCache {
    #[new]
    #[pyo3(signature = (
        provider, *, load_timeout=Num(5.0), advisory_window=None, mandatory_window=Num(60.0),
        refresh_backoff=None, error_cache=None, advisory_refresh="background",
        limiter=None, clock=None, name=None
    ),
    // The defaults as Python writes them (PyO3 shows `...` for the `Num` wrappers).
    text_signature = "(provider, *, load_timeout=5.0, advisory_window=None, \
        mandatory_window=60.0, refresh_backoff=None, error_cache=None, \
        advisory_refresh='background', limiter=None, clock=None, name=None)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        provider: &Bound<'_, PyAny>,
        load_timeout: Num,
        advisory_window: Option<Num>,
        mandatory_window: Num,
        refresh_backoff: Option<&Bound<'_, PyAny>>,
        error_cache: Option<&Bound<'_, PyAny>>,
        advisory_refresh: &str,
        limiter: Option<&Bound<'_, PyAny>>,
        clock: Option<&Bound<'_, PyAny>>,
        name: Option<String>,
    ) -> PyResult<Self> {
        let defaults = RefreshPolicy::default();
        let load_timeout = convert::seconds("load_timeout", load_timeout.0)?;
        if load_timeout.is_zero() {
            return Err(PyValueError::new_err("load_timeout must be greater than 0"));
        }
        let advisory_window = advisory_window
            .map(|w| convert::seconds("advisory_window", w.0))
            .transpose()?;
        if advisory_window.is_some_and(|w| w.is_zero()) {
            return Err(PyValueError::new_err(
                "advisory_window must be greater than 0 (or None for the table)",
            ));
        }
        let policy = RefreshPolicy {
            advisory_window,
            mandatory_window: convert::seconds("mandatory_window", mandatory_window.0)?,
            refresh_backoff: match refresh_backoff {
                Some(v) => convert::range("refresh_backoff", v)?,
                None => defaults.refresh_backoff,
            },
            error_cache: match error_cache {
                Some(v) => convert::range("error_cache", v)?,
                None => defaults.error_cache,
            },
            advisory_refresh: advisory_refresh
                .parse::<AdvisoryRefresh>()
                .map_err(PyValueError::new_err)?,
            load_timeout,
            ..defaults
        };
        let clock: Option<SharedClock> = crate::limiter::clock_option(clock)?;
        let limiter = match limiter {
            Some(l) if !l.is_none() => match l.cast::<PyLimiter>() {
                Ok(pl) => Some((Arc::clone(&pl.get().limiter), l.clone().unbind())),
                Err(_) => {
                    return Err(PyTypeError::new_err(format!(
                        "limiter must be a creds_core.Limiter or None, got {}",
                        l.get_type().qualname()?
                    )))
                }
            },
            _ => None,
        };
        let shared = provider::from_python(provider)?;
        let cache =
            CredentialCache::new(shared, policy, clock, name).map_err(PyValueError::new_err)?;
        let limiter = limiter.map(|(core, obj)| {
            cache.set_limiter(core);
            obj
        });
        Ok(Self {
            cache,
            provider: provider.clone().unbind(),
            limiter,
            waiters: Arc::default(),
        })
    }

    /// Credentials, by the refresh policy. Fresh credentials cost one atomic load and one clock
    /// read; otherwise the thread waits without holding the GIL, at most `load_timeout`.
    fn get(&self, py: Python<'_>) -> PyResult<Py<PyCredentials>> {
        if let Some(obj) = self.cache.with_fresh(|entry| credentials_object(py, entry)) {
            return obj;
        }
        workers::ensure_started(py)?;
        let cache = self.cache.clone();
        let (outcome, _entered) = runtime::wait(py, async move { cache.get_slow().await })?;
        match outcome {
            Ok(entry) => credentials_object(py, &entry),
            Err(e) => Err(errors::to_pyerr(py, &e)),
        }
    }

    /// `get().to_botocore()`: botocore's `ReadOnlyCredentials`, the same object for every call
    /// served by one cache entry (what a botocore signer asks for on every request).
    fn get_frozen(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let credentials = self.get(py)?;
        credentials.get().frozen(py).map(|f| f.clone_ref(py))
    }

    /// `get()` as an awaitable. Fresh credentials: an awaitable that is already done (nothing
    /// is scheduled on the loop). Otherwise a future of the running loop; the coroutines of one
    /// loop waiting at the same time share one wait, and hold no thread.
    fn get_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(obj) = self.cache.with_fresh(|entry| credentials_object(py, entry)) {
            return crate::ready::ready(py, obj?.into_any());
        }
        workers::ensure_started(py)?;
        aio::wait(py, &self.cache, &self.waiters, false)
    }

    /// `get_frozen()` as an awaitable, in the shape of `get_async()`: fresh credentials give an
    /// awaitable already done with their `ReadOnlyCredentials` (the one object of the entry);
    /// otherwise a future of the running loop, waiting with the `get_async()` callers.
    fn get_frozen_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(obj) = self.cache.with_fresh(|entry| credentials_object(py, entry)) {
            let frozen = obj?.get().frozen(py)?.clone_ref(py);
            return crate::ready::ready(py, frozen);
        }
        workers::ensure_started(py)?;
        aio::wait(py, &self.cache, &self.waiters, true)
    }

    /// The credentials the cache holds, fresh or not (None: it holds none), without a refresh or
    /// a wait: for readers that must never wait (aiobotocore reads `method` on its event loop).
    #[pyo3(name = "_last_good")]
    fn last_good(&self, py: Python<'_>) -> PyResult<Option<Py<PyCredentials>>> {
        self.cache
            .last_good()
            .map(|entry| credentials_object(py, &entry))
            .transpose()
    }

    /// Send the next call down the mandatory path if `access_key_id` (or, with None, any key)
    /// matches the cached credentials. Returns whether it matched.
    #[pyo3(signature = (access_key_id=None))]
    fn invalidate(&self, access_key_id: Option<&str>) -> bool {
        self.cache.invalidate(access_key_id)
    }

    /// Counters: source_calls, rate_limited, timeouts, fallbacks, static_stability, ...
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.cache.stats().snapshot() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// The state for humans and tests: expiry, windows (seconds), next refresh allowed, ...
    /// Never a secret.
    fn inspect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let i = self.cache.inspect();
        let d = PyDict::new(py);
        d.set_item("name", &i.name)?;
        d.set_item("provider", &i.provider)?;
        d.set_item("state", i.state)?;
        d.set_item("access_key_id", &i.access_key_id)?;
        d.set_item("expiry", opt_time(py, i.expiry)?)?;
        d.set_item(
            "advisory_window",
            i.advisory_window.map(|w| w.as_secs_f64()),
        )?;
        d.set_item(
            "mandatory_window",
            i.mandatory_window.map(|w| w.as_secs_f64()),
        )?;
        d.set_item("refresh_at", opt_time(py, i.refresh_at)?)?;
        d.set_item("mandatory_at", opt_time(py, i.mandatory_at)?)?;
        d.set_item(
            "next_refresh_allowed_at",
            opt_time(py, i.next_refresh_allowed_at)?,
        )?;
        d.set_item("error_cached_until", opt_time(py, i.error_cached_until)?)?;
        d.set_item("last_error", &i.last_error)?;
        d.set_item("refreshing", i.refreshing)?;
        d.set_item("invalidated", i.invalidated)?;
        d.set_item(
            "load_timeout",
            self.cache.policy().load_timeout.as_secs_f64(),
        )?;
        Ok(d)
    }

    #[getter]
    fn name(&self) -> &str {
        self.cache.name()
    }

    #[getter]
    fn provider(&self, py: Python<'_>) -> Py<PyAny> {
        self.provider.clone_ref(py)
    }

    #[getter]
    fn limiter(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.limiter.as_ref().map(|l| l.clone_ref(py))
    }

    fn __repr__(&self) -> String {
        let i = self.cache.inspect();
        format!("CredentialCache(name={:?}, state={:?})", i.name, i.state)
    }
}
